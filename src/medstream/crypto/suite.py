"""Suite 1: its id, the context strings that bind each ciphertext to its place, and blob framing.

Every binary value travels as standard padded base64 text whose byte 0 is the suite id, so that another suite
can be added later without a new structure. Suite 1 is X25519 + Ed25519 key pairs, HPKE base mode
(X25519, HKDF-SHA256, AES-256-GCM) for wraps to a public key, AES-256-GCM for symmetric encryption, Ed25519
signatures and SHA-256 hashes.
"""

from __future__ import annotations

import base64
import binascii

from medstream.errors import DecryptionError

SUITE_1 = 0x01
KEY_SIZE = 32  # every symmetric key and secret: K_ex, S_ac, K_e, and raw X25519 / Ed25519 public keys
NONCE_SIZE = 12  # AES-GCM nonce
TAG_SIZE = 16  # AES-GCM tag
KID_SIZE = 8  # an entity key's id
SIGNATURE_SIZE = 64  # Ed25519

_CONTEXT_PREFIX = b"medstream/v1/"


def ctx(label: str, *parts: str) -> bytes:
    """The context string of `label` and its parts: `medstream/v1/<label> 0x00 part 0x00 part ...` (ASCII label,
    UTF-8 parts), used as AAD, HPKE info and hash prefix so that no value is valid anywhere but where it belongs."""
    return _CONTEXT_PREFIX + label.encode("ascii") + b"\x00" + "\x00".join(parts).encode()


def b64encode(data: bytes) -> str:
    """Standard padded base64."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: object, what: str) -> bytes:
    """Strict standard base64 (no stray characters); DecryptionError naming `what` otherwise."""
    if not isinstance(text, str):
        raise DecryptionError(f"{what}: expected base64 text, got {type(text).__name__}")
    try:  # strict mode: only the alphabet, padding only at the end and exactly as long as needed
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        raise DecryptionError(f"{what}: not valid base64") from None


def frame(payload: bytes, suite: int = SUITE_1) -> str:
    """A blob: base64 of the suite byte followed by `payload`."""
    return b64encode(bytes((suite,)) + payload)


def payload_head(blob: object, what: str, size: int, *, min_length: int) -> bytes:
    """The first `size` bytes of a blob's payload, read from the start of its base64 alone, after checking its
    suite byte and that the blob is long enough for a payload of `min_length`; the rest is checked when the blob
    is opened (`unframe`). Reading a key id costs the same whatever the blob's size."""
    head_chars = (1 + size + 2) // 3 * 4
    if isinstance(blob, str) and len(blob) >= max(head_chars, (1 + min_length + 2) // 3 * 4):
        raw = b64decode(blob[:head_chars], what)[: 1 + size]
        if raw[0] != SUITE_1:
            raise DecryptionError(f"{what}: unknown suite 0x{raw[0]:02x}")
        return raw[1:]
    return unframe(blob, what, min_length=min_length)[:size]  # what is wrong with it, said as unframe says it


def unframe(blob: object, what: str, *, length: int | None = None, min_length: int = 0) -> bytes:
    """The payload of a blob after checking its suite byte and, when given, its exact or least length."""
    raw = b64decode(blob, what)
    if not raw:
        raise DecryptionError(f"{what}: empty blob")
    if raw[0] != SUITE_1:
        raise DecryptionError(f"{what}: unknown suite 0x{raw[0]:02x}")
    payload = raw[1:]
    if length is not None and len(payload) != length:
        raise DecryptionError(f"{what}: {len(payload)} bytes after the suite byte, expected {length}")
    if len(payload) < min_length:
        raise DecryptionError(f"{what}: {len(payload)} bytes after the suite byte, expected at least {min_length}")
    return payload
