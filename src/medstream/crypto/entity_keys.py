"""An entity's key K_e and its id, and K_e wrapped under an exchange key K_ex:

encryptionKeys blob = b64(0x01 || kid(8) || nonce(12) || AES-256-GCM(K_ex, K_e, aad))
aad = ctx("entity-key", entityType, entityId, hex(kid))
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from medstream.crypto.aead import open_sealed, seal
from medstream.crypto.suite import KEY_SIZE, KID_SIZE, NONCE_SIZE, TAG_SIZE, ctx, frame, unframe
from medstream.errors import DecryptionError


@dataclass(frozen=True)
class EntityKey:
    """K_e (32 bytes) and its id `kid` (8 bytes): a new pair at an entity's create and at each rotation."""

    kid: bytes
    key: bytes

    def __post_init__(self) -> None:
        if len(self.kid) != KID_SIZE or len(self.key) != KEY_SIZE:
            raise ValueError(f"an entity key is a {KID_SIZE}-byte kid and a {KEY_SIZE}-byte key")

    @classmethod
    def generate(cls) -> EntityKey:
        return cls(os.urandom(KID_SIZE), os.urandom(KEY_SIZE))

    @property
    def kid_hex(self) -> str:
        return self.kid.hex()

    def __repr__(self) -> str:  # never the key
        return f"EntityKey(kid={self.kid_hex})"


def entity_key_aad(entity_type: str, entity_id: str, kid: bytes) -> bytes:
    return ctx("entity-key", entity_type, entity_id, kid.hex())


def wrap_entity_key(
    exchange_key: bytes, entity_type: str, entity_id: str, entity_key: EntityKey, *, nonce: bytes | None = None
) -> str:
    """K_e wrapped under K_ex for one entity (an `encryptionKeys` blob of its secure delegation)."""
    aad = entity_key_aad(entity_type, entity_id, entity_key.kid)
    return frame(entity_key.kid + seal(exchange_key, entity_key.key, aad, nonce=nonce))


WRAPPED_KEY_SIZE = KID_SIZE + NONCE_SIZE + KEY_SIZE + TAG_SIZE


def wrapped_kid(blob: object, what: str = "encryption key") -> bytes:
    """The kid a wrapped entity key names, read without the exchange key."""
    return unframe(blob, what, length=WRAPPED_KEY_SIZE)[:KID_SIZE]


def unwrap_entity_key(exchange_key: bytes, entity_type: str, entity_id: str, blob: object) -> EntityKey:
    """K_e from its wrap; DecryptionError when the wrap is for another entity or kind, another K_ex, or altered."""
    what = f"{entity_type} {entity_id}: encryption key"
    return unwrap_payload(exchange_key, entity_type, entity_id, unframe(blob, what, length=WRAPPED_KEY_SIZE), what)


def unwrap_payload(exchange_key: bytes, entity_type: str, entity_id: str, payload: bytes, what: str) -> EntityKey:
    """K_e from a wrap's payload (`unframe`d, WRAPPED_KEY_SIZE bytes: kid, nonce, sealed key), as
    `unwrap_entity_key`, for a caller that read the kid from it first."""
    kid = payload[:KID_SIZE]
    key = open_sealed(exchange_key, payload[KID_SIZE:], entity_key_aad(entity_type, entity_id, kid), what)
    if len(key) != KEY_SIZE:  # a 32-byte plaintext is all the length check of the wrap lets through
        raise DecryptionError(f"{what}: {len(key)}-byte key")
    return EntityKey(kid, key)
