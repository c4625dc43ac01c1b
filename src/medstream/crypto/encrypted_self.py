"""`encryptedSelf`: the encrypted fields of an entity's wire dict, as one ciphertext.

    encryptedSelf = b64(0x01 || kid(8) || nonce(12) || AES-256-GCM(K_e, orjson(fields, sorted keys), aad))
    aad = ctx("encrypted-self", entityType, entityId, hex(kid))

The fields are top-level camelCase wire names, given by the caller (the server announces them per kind).
Swapping `encryptedSelf` between entities, or between kinds with the same id, fails to decrypt.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import orjson

from medstream.crypto.aead import open_sealed, seal
from medstream.crypto.entity_keys import EntityKey
from medstream.crypto.suite import KID_SIZE, NONCE_SIZE, TAG_SIZE, ctx, frame, payload_head, unframe
from medstream.errors import DecryptionError

ENCRYPTED_SELF = "encryptedSelf"
# A clear value that holds nothing: what a model writes for an unset list, set or dict field.
_EMPTY: tuple[Any, ...] = (None, "", [], {})


def encrypted_self_aad(entity_type: str, entity_id: str, kid: bytes) -> bytes:
    return ctx("encrypted-self", entity_type, entity_id, kid.hex())


def _entity_id(wire: Mapping[str, Any], entity_type: str) -> str:
    entity_id = wire.get("id")
    if not isinstance(entity_id, str) or not entity_id:
        raise ValueError(f"{entity_type}: an entity needs its id before its fields are encrypted or decrypted")
    return entity_id


def encrypt_fields(
    wire: Mapping[str, Any],
    entity_type: str,
    fields: Collection[str],
    entity_key: EntityKey,
    *,
    nonce: bytes | None = None,
) -> dict[str, Any]:
    """`wire` with `fields` taken out and put, encrypted, in `encryptedSelf` (always set, even when none of the
    fields is present). An `encryptedSelf` already in `wire` is replaced: `wire` is the decrypted entity."""
    entity_id = _entity_id(wire, entity_type)
    clear = {name: value for name, value in wire.items() if name not in fields and name != ENCRYPTED_SELF}
    hidden = {name: wire[name] for name in fields if name in wire and wire[name] is not None}
    plaintext = orjson.dumps(hidden, option=orjson.OPT_SORT_KEYS)
    sealed = seal(entity_key.key, plaintext, encrypted_self_aad(entity_type, entity_id, entity_key.kid), nonce=nonce)
    clear[ENCRYPTED_SELF] = frame(entity_key.kid + sealed)
    return clear


def encrypted_self_kid(wire: Mapping[str, Any], entity_type: str = "entity") -> bytes | None:
    """The kid the entity's `encryptedSelf` was encrypted with, None when it has none."""
    blob = wire.get(ENCRYPTED_SELF)
    if blob is None:
        return None
    what = f"{entity_type} {wire.get('id')}: encryptedSelf"
    return payload_head(blob, what, KID_SIZE, min_length=KID_SIZE + NONCE_SIZE + TAG_SIZE)


def decrypt_fields(
    wire: Mapping[str, Any],
    entity_type: str,
    keys: Mapping[bytes, bytes] | Callable[[bytes], bytes | None],
) -> dict[str, Any]:
    """`wire` with its `encryptedSelf` decrypted and merged back (and removed). `keys` gives K_e by kid. An
    entity without `encryptedSelf` comes back as it is. DecryptionError when the kid has no key, the key or
    the entity does not match, any byte changed, or a field is both in clear and encrypted."""
    merged = dict(wire)
    blob = merged.pop(ENCRYPTED_SELF, None)
    if blob is None:
        return merged
    entity_id = _entity_id(wire, entity_type)
    what = f"{entity_type} {entity_id}: encryptedSelf"
    payload = unframe(blob, what, min_length=KID_SIZE + NONCE_SIZE + TAG_SIZE)
    kid = payload[:KID_SIZE]
    key = keys(kid) if callable(keys) else keys.get(kid)
    if key is None:
        raise DecryptionError(f"{what}: no key for kid {kid.hex()}")
    plaintext = open_sealed(key, payload[KID_SIZE:], encrypted_self_aad(entity_type, entity_id, kid), what)
    try:
        hidden = orjson.loads(plaintext)
    except orjson.JSONDecodeError:
        raise DecryptionError(f"{what}: decrypted content is not JSON") from None
    if not isinstance(hidden, dict):
        raise DecryptionError(f"{what}: decrypted content is not an object")
    both = [name for name in hidden if merged.get(name) not in _EMPTY]
    if both:
        raise DecryptionError(f"{what}: field(s) {', '.join(sorted(both))} both in clear and encrypted")
    merged.update(hidden)
    return merged
