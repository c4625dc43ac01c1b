"""Recovery codes: a random 32-byte recovery key that a person writes down, and the recovery blob it opens.

    code        = base32(key || SHA-256(ctx("recovery-check") + key)[:3]), 56 letters and digits in groups of 4
    recovery id = hex(SHA-256(ctx("recovery-id") + key))
    blob        = b64(0x01 || nonce(12) || AES-256-GCM(HKDF-SHA256(key, info=ctx("recovery-key")), private part,
                                                       aad = ctx("recovery", recovery id)))

The three check bytes let a mistyped code be told apart from a code that opens nothing. Reading a code ignores
spaces, dashes and case.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from medstream.crypto.aead import open_sealed, seal
from medstream.crypto.suite import KEY_SIZE, ctx, frame, unframe
from medstream.errors import ValidationError

_CHECK_SIZE = 3  # 32 + 3 bytes = 280 bits = exactly 56 base32 characters, no padding
_GROUP = 4
_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


def new_recovery_key() -> bytes:
    return os.urandom(KEY_SIZE)


def _check(key: bytes) -> bytes:
    return hashlib.sha256(ctx("recovery-check") + key).digest()[:_CHECK_SIZE]


def recovery_code(key: bytes) -> str:
    """The code shown to a person: groups of 4 base32 characters separated by dashes."""
    if len(key) != KEY_SIZE:
        raise ValueError(f"a recovery key has {KEY_SIZE} bytes")
    text = base64.b32encode(key + _check(key)).decode("ascii")
    return "-".join(text[i : i + _GROUP] for i in range(0, len(text), _GROUP))


def parse_recovery_code(code: str) -> bytes:
    """The recovery key of a code as typed; ValidationError saying what is wrong (a character that is not in
    the code's alphabet, a missing or extra character, or a typo the check bytes catch)."""
    text = "".join(code.split()).replace("-", "").upper()
    wrong = sorted({c for c in text if c not in _ALPHABET})
    if wrong:
        raise ValidationError(f"recovery code: {''.join(wrong)!r} cannot appear in a code (letters A-Z, digits 2-7)")
    expected = (KEY_SIZE + _CHECK_SIZE) * 8 // 5
    if len(text) != expected:
        raise ValidationError(f"recovery code: {len(text)} characters, expected {expected}")
    try:
        raw = base64.b32decode(text)
    except binascii.Error:
        raise ValidationError("recovery code: not a valid code") from None
    key, check = raw[:KEY_SIZE], raw[KEY_SIZE:]
    if _check(key) != check:
        raise ValidationError("recovery code: mistyped (its check characters do not match); check each group")
    return key


def recovery_id(key: bytes) -> str:
    """The id under which a recovery blob is kept: says nothing about the key."""
    return hashlib.sha256(ctx("recovery-id") + key).hexdigest()


def _blob_key(key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=ctx("recovery-key")).derive(key)


def seal_recovery_blob(key: bytes, private_part: bytes, *, nonce: bytes | None = None) -> str:
    """The key store's private part sealed under the recovery key."""
    return frame(seal(_blob_key(key), private_part, ctx("recovery", recovery_id(key)), nonce=nonce))


def open_recovery_blob(key: bytes, blob: str) -> bytes:
    """The private part a recovery blob holds; DecryptionError for another code's blob or an altered one."""
    what = f"recovery blob {recovery_id(key)[:16]}"
    return open_sealed(_blob_key(key), unframe(blob, what), ctx("recovery", recovery_id(key)), what)
