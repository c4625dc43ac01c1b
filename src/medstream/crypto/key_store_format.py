"""The key store document (bytes in, bytes out): a data owner's private keys, all of them with their status,
its search key (the key of its blind-index tokens), and the public keys it has pinned for its counterparties.

    {"format": "medstream-key-store", "version": 1, "dataOwnerId": ...,
     "keys": [{"id", "suite": 1, "encryptionPrivateKey": b64, "signingPrivateKey": b64, "created", "status"}],
     "searchKey": b64 of 32 bytes,
     "pins": {dataOwnerId: {keyId: {...public record, "verified": bool}}}}

Sealed under a passphrase, "keys" and "searchKey" give way to "sealed": the private part (`{"keys": [...],
"searchKey": ...}` as canonical JSON; a store made before search keys has none)
encrypted with AES-256-GCM under a key from Argon2id (its parameters and salt stored beside it), with
aad = ctx("key-store", dataOwnerId). The pins stay in clear: they are public keys, and adding one needs no
passphrase.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from argon2.low_level import Type, hash_secret_raw

from medstream.crypto.aead import open_sealed, seal
from medstream.crypto.owner_keys import DataOwnerKeyPair, PublicKeyRecord, parse_public_record
from medstream.crypto.suite import KEY_SIZE, SUITE_1, b64decode, b64encode, ctx
from medstream.errors import DecryptionError, ValidationError

FORMAT = "medstream-key-store"
VERSION = 1
_SALT_SIZE = 16
# What a file may ask of Argon2id before it is refused (a file could otherwise ask for any time and memory).
_COST_BOUNDS = {"timeCost": 64, "memoryCost": 4 * 1024 * 1024, "parallelism": 64}


@dataclass(frozen=True)
class Argon2Parameters:
    """Argon2id's costs: `time_cost` passes over `memory_cost` KiB with `parallelism` lanes (t=3, 64 MiB, p=4)."""

    time_cost: int = 3
    memory_cost: int = 65536
    parallelism: int = 4

    def derive(self, passphrase: str, salt: bytes) -> bytes:
        return hash_secret_raw(
            passphrase.encode(), salt, self.time_cost, self.memory_cost, self.parallelism, KEY_SIZE, Type.ID
        )

    @classmethod
    def bounded(cls, costs: Mapping[str, object], what: str) -> Argon2Parameters:
        """The parameters named `timeCost`, `memoryCost` and `parallelism` in `costs` (as a stored document
        holds them), refused with ValidationError before any hashing when one is missing, out of
        `_COST_BOUNDS`, or less memory than Argon2 takes for its lanes (8 KiB each)."""
        values: list[int] = []
        for name, bound in _COST_BOUNDS.items():
            cost = costs.get(name)
            if not isinstance(cost, int) or isinstance(cost, bool) or not 0 < cost <= bound:
                raise ValidationError(f"{what}: Argon2id parameter {name} missing or out of range (1..{bound})")
            values.append(cost)
        parameters = cls(*values)
        if parameters.memory_cost < 8 * parameters.parallelism:
            raise ValidationError(f"{what}: Argon2id memoryCost below 8 KiB per lane of parallelism")
        return parameters


@dataclass(frozen=True)
class PinnedKey:
    """A counterparty's public key as this data owner knows it; `verified` once a person compared fingerprints."""

    record: PublicKeyRecord
    verified: bool = False


@dataclass
class KeyStore:
    """A data owner's key pairs, ACTIVE and RETIRED, its search key (32 random bytes: the HMAC key of its
    blind-index tokens; None in a store made before search keys), and the public keys it pinned for its
    counterparties."""

    data_owner_id: str
    key_pairs: list[DataOwnerKeyPair] = field(default_factory=list)
    pins: dict[str, dict[str, PinnedKey]] = field(default_factory=dict)
    search_key: bytes | None = field(default=None, repr=False)

    def ensure_search_key(self) -> bool:
        """Make the search key if the store has none; True when it was made (the store must be saved)."""
        if self.search_key is not None:
            return False
        self.search_key = os.urandom(KEY_SIZE)
        return True

    def active_key_pairs(self) -> list[DataOwnerKeyPair]:
        return [keys for keys in self.key_pairs if keys.status == "ACTIVE"]

    def pin(self, data_owner_id: str, record: PublicKeyRecord, *, verified: bool = False) -> None:
        """Pin `record` for `data_owner_id`; a key already pinned keeps `verified` if it was."""
        known = self.pins.setdefault(data_owner_id, {}).get(record.id)
        self.pins[data_owner_id][record.id] = PinnedKey(record, verified or (known is not None and known.verified))

    def pinned_records(self) -> dict[str, dict[str, PublicKeyRecord]]:
        """The pins as `open_exchange_data` takes them; a data owner's own public keys are always included."""
        pins = {owner: {kid: pin.record for kid, pin in keys.items()} for owner, keys in self.pins.items()}
        own = pins.setdefault(self.data_owner_id, {})
        own.update({keys.id: keys.public for keys in self.key_pairs})
        return pins


def encode_private_part(key_pairs: list[DataOwnerKeyPair], search_key: bytes | None = None) -> bytes:
    """The private keys (and the search key, when given) as canonical JSON: what a passphrase or a recovery code
    seals."""
    entries = []
    for keys in key_pairs:
        encryption, signing = keys.private_bytes()
        entries.append(
            {
                "id": keys.id,
                "suite": SUITE_1,
                "encryptionPrivateKey": b64encode(encryption),
                "signingPrivateKey": b64encode(signing),
                "created": keys.created,
                "status": keys.status,
            }
        )
    private: dict[str, Any] = {"keys": entries}
    if search_key is not None:
        private["searchKey"] = b64encode(search_key)
    return orjson.dumps(private, option=orjson.OPT_SORT_KEYS)


def _key_pair(entry: Any, what: str) -> DataOwnerKeyPair:
    if not isinstance(entry, dict) or entry.get("suite") != SUITE_1:
        raise ValidationError(f"{what}: a key entry of an unknown form or suite")
    created, status = entry.get("created"), entry.get("status")
    if not isinstance(created, int) or status not in ("ACTIVE", "RETIRED"):
        raise ValidationError(f"{what}: key {entry.get('id')!r} has no valid created time or status")
    keys = DataOwnerKeyPair.from_private_bytes(
        b64decode(entry.get("encryptionPrivateKey"), f"{what}: encryptionPrivateKey"),
        b64decode(entry.get("signingPrivateKey"), f"{what}: signingPrivateKey"),
        created,
        status,
    )
    if keys.id != entry.get("id"):
        raise ValidationError(f"{what}: key {entry.get('id')!r} does not match its private keys")
    return keys


def _key_pairs(entries: Any, what: str) -> list[DataOwnerKeyPair]:
    if not isinstance(entries, list):
        raise ValidationError(f"{what}: no key list")
    return [_key_pair(entry, what) for entry in entries]


def _search_key(value: Any, what: str) -> bytes | None:
    if value is None:
        return None
    key = b64decode(value, f"{what}: searchKey")
    if len(key) != KEY_SIZE:
        raise ValidationError(f"{what}: searchKey is {len(key)} bytes, expected {KEY_SIZE}")
    return key


def decode_private(data: bytes, what: str = "key store") -> tuple[list[DataOwnerKeyPair], bytes | None]:
    """The key pairs and the search key (None if it has none) of a private part (`encode_private_part`'s
    output, once unsealed)."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ValidationError(f"{what}: the private part is not JSON") from None
    if not isinstance(document, dict):
        raise ValidationError(f"{what}: no key list")
    return _key_pairs(document.get("keys"), what), _search_key(document.get("searchKey"), what)


def decode_private_part(data: bytes, what: str = "key store") -> list[DataOwnerKeyPair]:
    """The key pairs of a private part (`encode_private_part`'s output, once unsealed)."""
    return decode_private(data, what)[0]


def key_store_document(store: KeyStore) -> dict[str, Any]:
    """The key store as a document with its private part in clear: the file without a passphrase, and what a
    key vault seals whole."""
    document: dict[str, Any] = {"format": FORMAT, "version": VERSION, "dataOwnerId": store.data_owner_id}
    document.update(orjson.loads(encode_private_part(store.key_pairs, store.search_key)))
    document["pins"] = {
        owner: {kid: {**pin.record.to_wire(), "verified": pin.verified} for kid, pin in keys.items()}
        for owner, keys in store.pins.items()
    }
    return document


def encode_key_store(
    store: KeyStore,
    passphrase: str | None = None,
    *,
    parameters: Argon2Parameters | None = None,
    salt: bytes | None = None,
    nonce: bytes | None = None,
) -> bytes:
    """The key store as JSON bytes, its private part sealed when a passphrase is given."""
    document = key_store_document(store)
    if passphrase is not None:
        document.pop("keys")
        document.pop("searchKey", None)
        parameters = parameters or Argon2Parameters()
        salt = salt if salt is not None else os.urandom(_SALT_SIZE)
        key = parameters.derive(passphrase, salt)
        private = encode_private_part(store.key_pairs, store.search_key)
        document["sealed"] = {
            "kdf": "argon2id",
            "salt": b64encode(salt),
            "timeCost": parameters.time_cost,
            "memoryCost": parameters.memory_cost,
            "parallelism": parameters.parallelism,
            "data": b64encode(seal(key, private, ctx("key-store", store.data_owner_id), nonce=nonce)),
        }
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)


def is_sealed(data: bytes) -> bool:
    """Whether a key store document needs a passphrase to open."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(document, dict) and "sealed" in document


def _unseal(document: dict[str, Any], passphrase: str | None, what: str) -> bytes:
    sealed = document["sealed"]
    if passphrase is None:
        raise DecryptionError(f"{what}: its private keys are sealed under a passphrase, and none was given")
    if not isinstance(sealed, dict) or sealed.get("kdf") != "argon2id":
        raise ValidationError(
            f"{what}: unknown sealing (kdf {sealed.get('kdf') if isinstance(sealed, dict) else None!r})"
        )
    parameters = Argon2Parameters.bounded(sealed, what)
    key = parameters.derive(passphrase, b64decode(sealed.get("salt"), f"{what}: salt"))
    data = b64decode(sealed.get("data"), f"{what}: sealed data")
    try:
        return open_sealed(key, data, ctx("key-store", document["dataOwnerId"]), what)
    except DecryptionError:
        raise DecryptionError(f"{what}: wrong passphrase, or the file was altered") from None


def decode_key_store(data: bytes, passphrase: str | None = None) -> KeyStore:
    """A key store from its JSON bytes; DecryptionError for a wrong or missing passphrase, ValidationError for
    a document that is not a key store."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ValidationError("key store: not JSON") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValidationError("key store: not a Medstream key store document")
    if document.get("version") != VERSION:
        raise ValidationError(f"key store: version {document.get('version')!r}, this SDK reads {VERSION}")
    owner = document.get("dataOwnerId")
    if not isinstance(owner, str) or not owner:
        raise ValidationError("key store: no dataOwnerId")
    what = f"key store of {owner}"
    if "sealed" in document:
        key_pairs, search_key = decode_private(_unseal(document, passphrase, what), what)
    else:
        key_pairs, search_key = _key_pairs(document.get("keys"), what), _search_key(document.get("searchKey"), what)
    pins: dict[str, dict[str, PinnedKey]] = {}
    raw_pins = document.get("pins") or {}
    if not isinstance(raw_pins, dict):
        raise ValidationError(f"{what}: pins must be an object")
    for pinned_owner, records in raw_pins.items():
        if not isinstance(records, dict):
            raise ValidationError(f"{what}: pins of {pinned_owner} must be an object")
        for kid, entry in records.items():
            if not isinstance(entry, dict):
                raise ValidationError(f"{what}: pin {kid} of {pinned_owner} must be an object")
            record = parse_public_record({k: v for k, v in entry.items() if k != "verified"})
            if record.id != kid:
                raise ValidationError(f"{what}: pin {kid} of {pinned_owner} holds key {record.id}")
            pins.setdefault(pinned_owner, {})[kid] = PinnedKey(record, entry.get("verified") is True)
    return KeyStore(owner, key_pairs, pins, search_key)
