"""AES-256-GCM as every symmetric ciphertext of suite 1 uses it: a 12-byte random nonce, then the ciphertext and
its 16-byte tag, with the context string of the value as associated data."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from medstream.crypto.suite import KEY_SIZE, NONCE_SIZE, TAG_SIZE
from medstream.errors import DecryptionError


def seal(key: bytes, plaintext: bytes, aad: bytes, *, nonce: bytes | None = None) -> bytes:
    """`nonce || AES-256-GCM(key, plaintext, aad)`; the nonce is random unless given (known-answer tests)."""
    if len(key) != KEY_SIZE:
        raise ValueError(f"an AES-256-GCM key has {KEY_SIZE} bytes, got {len(key)}")
    if nonce is None:
        nonce = os.urandom(NONCE_SIZE)
    elif len(nonce) != NONCE_SIZE:
        raise ValueError(f"an AES-GCM nonce has {NONCE_SIZE} bytes, got {len(nonce)}")
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes, aad: bytes, what: str) -> bytes:
    """The plaintext of `seal`'s output; DecryptionError naming `what` for a wrong key, a wrong context or any
    changed byte (the tag covers them all)."""
    if len(sealed) < NONCE_SIZE + TAG_SIZE:
        raise DecryptionError(f"{what}: ciphertext too short")
    if len(key) != KEY_SIZE:
        raise DecryptionError(f"{what}: key of {len(key)} bytes, expected {KEY_SIZE}")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], aad)
    except InvalidTag:
        raise DecryptionError(f"{what}: authentication failed (wrong key, wrong place, or altered)") from None
