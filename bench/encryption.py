"""`--encryption on`: the benchmarks' clients write and read as the SDK does when the server requires end-to-end
encryption.

- The server runs with `MEDSTREAM_REQUIRE_ENCRYPTION` (a data sample's content or comment in clear is refused),
  and the set-up checks that its configuration says so.
- The set-up gives the professional what the SDK gives a data owner at its first login and first write
  (`sdk/key_setup.py`, `sdk/crypto_api.py`): a key pair and a search key in a key store file, the public key
  published in its `cryptoKeys`, and its exchange data with itself, created and signed. The SDK subscribers open
  that key store; the REST writers load it and encrypt through `CryptoState`, the SDK's own sans-I/O state.
- Each data sample a writer sends is what `create_or_modify_data_sample_for` sends: an id of its own, a new
  entity key delegated (WRITE) to the professional through its exchange data with itself, its `blindIndex`
  (none here: the samples carry no identifiers, the kind's only blind-index field), and its content and comment
  in `encryptedSelf`. Writers make them ahead of the timed part (`SamplePool`); when the comment must carry the
  send time (latency), the `encryptedSelf` alone is sealed at send time.

Every key, wrap, token and ciphertext comes from `medstream.crypto`, as in the SDK: nothing cryptographic is
written here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.servers import Identity, create_patient
from medstream.crypto import DataOwnerKeyPair, EntityKey, ExchangeSecrets, KeyStore, create_exchange_data
from medstream.crypto.blind_index import parse_blind_indexed
from medstream.crypto.encrypted_self import encrypt_fields
from medstream.crypto.state import CryptoState
from medstream.sdk.key_store import load_key_store, save_key_store

SAMPLE = "DataSample"
PATIENT = "Patient"


def add_encryption_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--encryption",
        choices=["on", "off"],
        default="off",
        help="on: the server requires end-to-end encryption (MEDSTREAM_REQUIRE_ENCRYPTION) and every data sample "
        "is written encrypted as the SDK writes it; off (the default): samples in clear",
    )


def encryption_env(choice: str) -> dict[str, str]:
    """The server's setting for `--encryption`; nothing for off, so that a server that predates the setting
    runs as it always did."""
    return {"MEDSTREAM_REQUIRE_ENCRYPTION": "1"} if choice == "on" else {}


@contextlib.asynccontextmanager
async def keys_directory() -> AsyncIterator[Path]:
    """A temporary directory (mode 0700) for a benchmark's key store files, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="medstream-bench-keys-") as directory:
        yield Path(directory)


@dataclass(frozen=True)
class OwnerKeys:
    """What a benchmark's clients share to encrypt as one data owner: its key store file (private keys and search
    key), its exchange data with itself as the server stored it, and the server's encryption configuration."""

    key_store: str
    exchange_data: dict[str, Any]
    configuration: dict[str, Any]

    def state(self) -> CryptoState:
        """The SDK's crypto state for this data owner, its exchange data with itself opened."""
        configuration = self.configuration
        state = CryptoState(
            load_key_store(Path(self.key_store)),
            {str(kind): tuple(fields) for kind, fields in configuration["encryptedFields"].items()},
            parse_blind_indexed(configuration.get("blindIndexed")),
            configuration.get("requireEncryption") is True,
        )
        state.open(self.exchange_data)
        return state


async def set_up_owner(url: str, token: str, hcp_id: str, directory: Path) -> OwnerKeys:
    """Give the professional `hcp_id` (its user logged in with `token`) its keys as the SDK does at a first
    login: a key pair and a search key saved in a key store file in `directory`, the public key published on the
    professional, and its exchange data with itself created and signed. RuntimeError when the server does not
    require encryption."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as http:
        answer = await http.get("/rest/v1/crypto/configuration")
        if answer.status_code != 200 or answer.json().get("requireEncryption") is not True:
            raise RuntimeError(
                f"the server at {url} does not require encryption (GET /rest/v1/crypto/configuration answered "
                f"{answer.status_code} {answer.text[:200]}): --encryption on needs a server that knows "
                "MEDSTREAM_REQUIRE_ENCRYPTION"
            )
        configuration: dict[str, Any] = answer.json()
        keys = DataOwnerKeyPair.generate(int(time.time() * 1000))
        store = KeyStore(hcp_id, [keys])
        store.ensure_search_key()
        path = directory / f"{hcp_id}.json"
        save_key_store(path, store)
        hcp = await http.get(f"/rest/v1/healthcare-professionals/{hcp_id}")
        hcp.raise_for_status()
        published = {**hcp.json(), "cryptoKeys": [keys.public.to_wire()]}
        (await http.post("/rest/v1/healthcare-professionals", json=published)).raise_for_status()
        wire, _ = create_exchange_data(
            uuid.uuid4().hex, hcp_id, hcp_id, [keys], [keys.public], ExchangeSecrets.generate(store.search_key)
        )
        stored = await http.post("/rest/v1/exchange-data", json=wire)
        stored.raise_for_status()
    return OwnerKeys(str(path), stored.json(), configuration)


def encrypted_entity(state: CryptoState, entity_type: str, wire: dict[str, Any]) -> dict[str, Any]:
    """A new entity as the SDK sends its create: an id, its `blindIndex`, a new key delegated to the data owner
    itself, its encrypted fields in `encryptedSelf`."""
    key = EntityKey.generate()
    return encrypt_fields(
        state.with_own_delegation(entity_type, state.for_write(entity_type, wire), key),
        entity_type,
        state.fields_of(entity_type),
        key,
    )


class SamplePool:
    """Encrypted data samples made ahead of the timed part, each with its own id and entity key.

    With `seal_at_send` each sample is kept ready but for its `encryptedSelf`, sealed by `body` with the comment
    it is given then (the send time); otherwise it is kept as the JSON bytes sent, its comment stamped when it
    was made."""

    def __init__(self, keys: OwnerKeys, sample: Callable[[str], dict[str, Any]], *, seal_at_send: bool = False) -> None:
        self._state = keys.state()
        self._sample = sample  # a clear data sample for a comment
        self._fields = self._state.fields_of(SAMPLE)
        self.seal_at_send = seal_at_send
        self._ready: list[Any] = []
        self._tag = os.urandom(4).hex()

    def __len__(self) -> int:
        return len(self._ready)

    def fill(self, count: int) -> None:
        """Make samples until `count` are ready."""
        state = self._state
        while len(self._ready) < count:
            wire = state.for_write(SAMPLE, self._sample(f"{self._tag}:{time.time_ns()}"))
            key = EntityKey.generate()
            wire = state.with_own_delegation(SAMPLE, wire, key)
            if self.seal_at_send:
                self._ready.append((wire, key))
            else:
                self._ready.append(orjson.dumps(encrypt_fields(wire, SAMPLE, self._fields, key)))

    def take(self, count: int) -> list[Any] | None:
        """`count` samples, None when fewer are ready."""
        if len(self._ready) < count:
            return None
        taken = self._ready[-count:]
        del self._ready[-count:]
        return taken

    def body(self, taken: list[Any], comment: str) -> bytes:
        """The request body of samples from `take`: one sample, or a list of several; sealed with `comment`
        now when the pool seals at send time."""
        if self.seal_at_send:
            taken = [
                orjson.dumps(encrypt_fields({**wire, "comment": comment}, SAMPLE, self._fields, key))
                for wire, key in taken
            ]
        return taken[0] if len(taken) == 1 else b"[" + b",".join(taken) + b"]"


async def create_encrypted_patient(url: str, token: str, keys: OwnerKeys) -> str:
    """A patient created as the SDK creates it for this data owner: names in `encryptedSelf`, their blind-index
    tokens in `blindIndex`."""
    body = encrypted_entity(keys.state(), PATIENT, {"firstName": "Bench", "lastName": "Patient"})
    async with httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:
        response = await http.post("/rest/v1/patients", json=body)
        response.raise_for_status()
        patient_id: str = response.json()["id"]
        return patient_id


async def set_up(url: str, identity: Identity, choice: str, directory: Path) -> tuple[str, OwnerKeys | None]:
    """The patient the benchmark writes samples for and, with `--encryption on`, the professional's keys (its key
    store in `directory`), the patient then created encrypted."""
    if choice != "on":
        return await create_patient(url, identity.token), None
    keys = await set_up_owner(url, identity.token, identity.hcp_id, directory)
    return await create_encrypted_patient(url, identity.token, keys), keys
