"""Fixed keys and secrets shared by the crypto tests: the known answers are computed from them."""

from __future__ import annotations

from medstream.crypto import DataOwnerKeyPair, EntityKey

# A healthcare professional "hcp-a" and a patient "pat-b", with private keys that never change.
HCP_KEYS = DataOwnerKeyPair.from_private_bytes(bytes(range(32)), bytes(range(32, 64)), 1_700_000_000_000)
PATIENT_KEYS = DataOwnerKeyPair.from_private_bytes(bytes(range(64, 96)), bytes(range(96, 128)), 1_700_000_000_001)
EXCHANGE_KEY = bytes([0x11]) * 32
ACCESS_CONTROL_SECRET = bytes([0x22]) * 32
ENTITY_KEY = EntityKey(bytes(range(8)), bytes([0x33]) * 32)
SEARCH_KEY = bytes([0x55]) * 32
# Frozen: the private part of the professional's key store (its key pair and SEARCH_KEY) as canonical JSON, what
# a passphrase and a recovery code seal.
PRIVATE_PART = (
    b'{"keys":[{"created":1700000000000,"encryptionPrivateKey":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",'
    b'"id":"804f0f04029cf1b80fe52ba072767780","signingPrivateKey":"ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=",'
    b'"status":"ACTIVE","suite":1}],"searchKey":"VVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVU="}'
)


def context(label: str, *parts: str) -> bytes:
    """The spec's context string, written out here rather than taken from the code under test."""
    return b"medstream/v1/" + label.encode() + b"\x00" + b"\x00".join(p.encode() for p in parts)
