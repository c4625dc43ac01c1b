"""The logged-in data owner's keys at login: its key store opened (or made, on its first login, and its public
keys published on its data-owner entity; a store without a search key gets one), and the server's encryption
configuration read once.

A data owner whose entity lists keys none of which its key store holds is refused with `MissingKeysError`
saying how to get them back: a new key pair would leave everything encrypted for the published keys unreadable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medstream.crypto.blind_index import IndexedField, parse_blind_indexed
from medstream.crypto.key_store_format import Argon2Parameters, KeyStore, decode_private
from medstream.crypto.owner_keys import DataOwnerKeyPair, parse_crypto_keys
from medstream.crypto.recovery import open_recovery_blob, parse_recovery_code
from medstream.crypto.state import CryptoState
from medstream.errors import MissingKeysError, ValidationError
from medstream.model.entities import KIND_BY_NAME
from medstream.sdk.crypto_api import CryptoApi
from medstream.sdk.key_store import default_key_store_path, load_key_store, save_key_store
from medstream.sdk.transport import Transport


@dataclass(frozen=True)
class KeyStoreOptions:
    """Where the key store is (None: the default place), its passphrase, and a recovery code with its blob to
    restore the keys from when the store lacks them."""

    path: Path | None = None
    passphrase: str | None = None
    argon2: Argon2Parameters | None = None
    recovery: tuple[str, str] | None = None


@dataclass(frozen=True)
class EncryptionConfiguration:
    """The server's encryption configuration (`GET /rest/v1/crypto/configuration`): the fields that travel in
    `encryptedSelf` by kind, the blind-index fields by kind, and whether encryption is required."""

    encrypted_fields: dict[str, tuple[str, ...]]
    blind_indexed: dict[str, dict[str, IndexedField]]
    require_encryption: bool


def parse_encryption_configuration(payload: Mapping[str, Any]) -> EncryptionConfiguration:
    """The configuration from the body of `GET /rest/v1/crypto/configuration`."""
    return EncryptionConfiguration(
        {str(kind): tuple(str(name) for name in names) for kind, names in payload["encryptedFields"].items()},
        parse_blind_indexed(payload.get("blindIndexed")),
        payload.get("requireEncryption") is True,
    )


async def encryption_configuration(transport: Transport) -> EncryptionConfiguration:
    """The server's encryption configuration, read once at login."""
    return parse_encryption_configuration(await transport.request("GET", "/rest/v1/crypto/configuration"))


def _missing(owner_id: str, published: list[str], path: Path) -> MissingKeysError:
    return MissingKeysError(
        f"data owner {owner_id} has published the keys {', '.join(published)}, and the key store {path} holds none "
        f"of them: this device lacks the private keys, and a new key pair would leave everything encrypted for them "
        f"unreadable. Copy the key store file from a device that has it to {path}, or restore the keys with your "
        f"recovery code and its blob (MedTechApi.builder()...with_recovery(code, blob)), then log in again."
    )


def _load(path: Path, owner_id: str, options: KeyStoreOptions) -> KeyStore | None:
    if not path.exists():
        return None
    store = load_key_store(path, options.passphrase)
    if store.data_owner_id != owner_id:
        raise ValidationError(f"key store {path} belongs to data owner {store.data_owner_id}, not {owner_id}")
    return store


async def open_crypto(
    transport: Transport, owner_type: str, owner: dict[str, Any], options: KeyStoreOptions
) -> CryptoApi:
    """The data owner's crypto API: its key store opened or made, its public keys published if they are not."""
    owner_id = str(owner["id"])
    path = options.path or default_key_store_path(transport.urls[0], owner_id)
    published = parse_crypto_keys(owner.get("cryptoKeys") or [])
    published_ids = {record.id for record in published}
    store = await asyncio.to_thread(_load, path, owner_id, options)
    changed = False
    if options.recovery is not None and (store is None or not published_ids & {k.id for k in store.key_pairs}):
        code, blob = options.recovery
        recovered, search_key = decode_private(open_recovery_blob(parse_recovery_code(code), blob), "recovery blob")
        if search_key is None and store is not None:
            search_key = store.search_key
        store = KeyStore(owner_id, recovered, store.pins if store is not None else {}, search_key)
        changed = True
    if store is None or not store.key_pairs:
        if published:
            raise _missing(owner_id, sorted(published_ids), path)
        store = KeyStore(owner_id, [DataOwnerKeyPair.generate(int(time.time() * 1000))])
        changed = True
    elif published and not published_ids & {keys.id for keys in store.key_pairs}:
        raise _missing(owner_id, sorted(published_ids), path)
    changed = store.ensure_search_key() or changed
    if changed:  # saved before anything is published: a key is never published that no store holds
        await asyncio.to_thread(save_key_store, path, store, options.passphrase, parameters=options.argon2)
    unpublished = [keys.public.to_wire() for keys in store.active_key_pairs() if keys.id not in published_ids]
    if unpublished:
        updated = {**owner, "cryptoKeys": [*(owner.get("cryptoKeys") or []), *unpublished]}
        await transport.request("POST", f"/rest/v1/{KIND_BY_NAME[owner_type].collection}", updated)
    configuration = await encryption_configuration(transport)
    state = CryptoState(
        store, configuration.encrypted_fields, configuration.blind_indexed, configuration.require_encryption
    )
    return CryptoApi(transport, state, path, options.passphrase, options.argon2)
