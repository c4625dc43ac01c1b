"""A data owner's key pairs (X25519 for encryption, Ed25519 for signing), their public records (the entries of
a data owner's `cryptoKeys`), key ids and fingerprints.

    key id      = hex(SHA-256(ctx("key-id") + x25519_pub + ed25519_pub))[:32]
    fingerprint = SHA-256(ctx("fingerprint") + x25519_pub + ed25519_pub)[:20], as 8 groups of 5 decimal digits
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from medstream.crypto.suite import KEY_SIZE, SUITE_1, b64decode, b64encode, ctx
from medstream.errors import DecryptionError, ValidationError

KeyStatus = Literal["ACTIVE", "RETIRED"]
KEY_STATUSES: tuple[KeyStatus, ...] = ("ACTIVE", "RETIRED")
_FINGERPRINT_GROUPS = 8
_FINGERPRINT_GROUP_BITS = 20  # 2.5 bytes


def key_id(encryption_public: bytes, signing_public: bytes) -> str:
    """The id of a key pair, from its two raw public keys."""
    return hashlib.sha256(ctx("key-id") + encryption_public + signing_public).hexdigest()[:32]


def fingerprint(encryption_public: bytes, signing_public: bytes) -> str:
    """What a person compares to verify a counterparty's key: 8 groups of 5 digits, each a 20-bit chunk of the
    first 20 bytes of the hash, read big-endian, mod 100000."""
    digest = hashlib.sha256(ctx("fingerprint") + encryption_public + signing_public).digest()[:20]
    number = int.from_bytes(digest, "big")
    groups = []
    for index in range(_FINGERPRINT_GROUPS):
        shift = (_FINGERPRINT_GROUPS - 1 - index) * _FINGERPRINT_GROUP_BITS
        chunk = (number >> shift) & ((1 << _FINGERPRINT_GROUP_BITS) - 1)
        groups.append(f"{chunk % 100000:05d}")
    return " ".join(groups)


@dataclass(frozen=True)
class PublicKeyRecord:
    """One entry of a data owner's `cryptoKeys`: the raw public keys, their id, creation time and status."""

    id: str
    encryption_key: bytes  # raw X25519 public key
    signing_key: bytes  # raw Ed25519 public key
    created: int  # epoch ms
    status: KeyStatus = "ACTIVE"

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.encryption_key, self.signing_key)

    @property
    def is_active(self) -> bool:
        return self.status == "ACTIVE"

    def encryption_public_key(self) -> X25519PublicKey:
        return X25519PublicKey.from_public_bytes(self.encryption_key)

    def signing_public_key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.signing_key)

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "suite": SUITE_1,
            "encryptionKey": b64encode(self.encryption_key),
            "signingKey": b64encode(self.signing_key),
            "created": self.created,
            "status": self.status,
        }


def _raw_public(key: X25519PublicKey | Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True, eq=False)  # private key objects do not compare: compare `public` or `id`
class DataOwnerKeyPair:
    """A data owner's private keys: X25519 (HPKE wraps are opened with it) and Ed25519 (it signs exchange data)."""

    encryption_private: X25519PrivateKey
    signing_private: Ed25519PrivateKey
    created: int  # epoch ms
    status: KeyStatus = "ACTIVE"
    public: PublicKeyRecord = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        encryption = _raw_public(self.encryption_private.public_key())
        signing = _raw_public(self.signing_private.public_key())
        record = PublicKeyRecord(key_id(encryption, signing), encryption, signing, self.created, self.status)
        object.__setattr__(self, "public", record)

    @classmethod
    def generate(cls, created: int) -> DataOwnerKeyPair:
        """A new key pair from the operating system's randomness; `created` is the time in epoch ms."""
        return cls(X25519PrivateKey.generate(), Ed25519PrivateKey.generate(), created)

    @classmethod
    def from_private_bytes(
        cls, encryption: bytes, signing: bytes, created: int, status: KeyStatus = "ACTIVE"
    ) -> DataOwnerKeyPair:
        """A key pair from its raw 32-byte private keys."""
        if len(encryption) != KEY_SIZE or len(signing) != KEY_SIZE:
            raise ValidationError(f"private keys have {KEY_SIZE} bytes each, got {len(encryption)} and {len(signing)}")
        return cls(
            X25519PrivateKey.from_private_bytes(encryption),
            Ed25519PrivateKey.from_private_bytes(signing),
            created,
            status,
        )

    @property
    def id(self) -> str:
        return self.public.id

    def private_bytes(self) -> tuple[bytes, bytes]:
        """The raw private keys (X25519, Ed25519): only for the key store."""
        raw = (Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return self.encryption_private.private_bytes(*raw), self.signing_private.private_bytes(*raw)

    def with_status(self, status: KeyStatus) -> DataOwnerKeyPair:
        return replace(self, status=status)

    def __repr__(self) -> str:  # never the private keys
        return f"DataOwnerKeyPair(id={self.id!r}, created={self.created}, status={self.status!r})"


def _field(record: Mapping[str, Any], name: str, kind: type) -> Any:
    value = record.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):  # JSON true is not the integer 1
        raise ValidationError(
            f"public key record: {name!r} must be {kind.__name__}, got {type(value).__name__}",
            details=[{"path": name, "message": f"expected {kind.__name__}"}],
        )
    return value


def parse_public_record(record: object) -> PublicKeyRecord:
    """A `cryptoKeys` entry as found on a data owner, checked: suite, base64, key lengths, status, and that its
    id is the one its keys give. ValidationError naming the field otherwise."""
    if not isinstance(record, Mapping):
        raise ValidationError(f"public key record: expected an object, got {type(record).__name__}")
    suite = _field(record, "suite", int)
    if suite != SUITE_1:
        raise ValidationError(f"public key record: unknown suite {suite}", details=[{"path": "suite"}])
    keys: dict[str, bytes] = {}
    for name in ("encryptionKey", "signingKey"):
        try:
            keys[name] = b64decode(record.get(name), f"public key record: {name!r}")
        except DecryptionError as e:
            raise ValidationError(e.message, details=[{"path": name, "message": "not base64"}]) from None
        if len(keys[name]) != KEY_SIZE:
            raise ValidationError(
                f"public key record: {name!r} has {len(keys[name])} bytes, expected {KEY_SIZE}",
                details=[{"path": name, "message": f"expected {KEY_SIZE} bytes"}],
            )
    status = _field(record, "status", str)
    if status not in KEY_STATUSES:
        raise ValidationError(f"public key record: unknown status {status!r}", details=[{"path": "status"}])
    created = _field(record, "created", int)
    record_id = _field(record, "id", str)
    expected = key_id(keys["encryptionKey"], keys["signingKey"])
    if record_id != expected:
        raise ValidationError(
            f"public key record: id {record_id!r} is not the id of its keys ({expected})", details=[{"path": "id"}]
        )
    return PublicKeyRecord(record_id, keys["encryptionKey"], keys["signingKey"], created, status)


def parse_crypto_keys(records: Iterable[object]) -> list[PublicKeyRecord]:
    """Every record of a data owner's `cryptoKeys`, each checked by `parse_public_record`."""
    return [parse_public_record(record) for record in records]
