"""crypto/entity_keys.py and crypto/delegations.py: K_e wrapped under K_ex, delegation keys, secure delegations."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from medstream.crypto import (
    EntityKey,
    access_control_key,
    delegation_key,
    secure_delegation,
    server_delegation_key,
    unwrap_entity_key,
    wrap_entity_key,
    wrapped_kid,
)
from medstream.errors import DecryptionError
from tests.unit.crypto_fixtures import ACCESS_CONTROL_SECRET, ENTITY_KEY, EXCHANGE_KEY, context

# Frozen: 0x01 || kid || nonce(00..0b) || AES-256-GCM(K_ex, K_e, ctx("entity-key", "DataSample", "ds-1", hex(kid))).
FROZEN_WRAP = "AQABAgMEBQYHAAECAwQFBgcICQoLINCFIEiQBscni+Cs95zEFfqSM1smRmEcmtOMTM5zUB3i967IDiyKe+C/rF0/OiLT"


def test_the_entity_key_wrap_is_frozen_and_follows_the_spec() -> None:
    assert wrap_entity_key(EXCHANGE_KEY, "DataSample", "ds-1", ENTITY_KEY, nonce=bytes(range(12))) == FROZEN_WRAP
    raw = base64.b64decode(FROZEN_WRAP)
    assert raw[0] == 1 and raw[1:9] == ENTITY_KEY.kid and raw[9:21] == bytes(range(12))
    aad = context("entity-key", "DataSample", "ds-1", ENTITY_KEY.kid.hex())
    assert AESGCM(EXCHANGE_KEY).decrypt(raw[9:21], raw[21:], aad) == ENTITY_KEY.key
    assert unwrap_entity_key(EXCHANGE_KEY, "DataSample", "ds-1", FROZEN_WRAP) == ENTITY_KEY
    assert wrapped_kid(FROZEN_WRAP) == ENTITY_KEY.kid


def test_a_fresh_wrap_round_trips_with_a_random_nonce() -> None:
    key = EntityKey.generate()
    first = wrap_entity_key(EXCHANGE_KEY, "Patient", "p-1", key)
    assert first != wrap_entity_key(EXCHANGE_KEY, "Patient", "p-1", key)
    assert unwrap_entity_key(EXCHANGE_KEY, "Patient", "p-1", first) == key
    assert key.key.hex() not in repr(key)


@pytest.mark.parametrize(
    ("exchange_key", "entity_type", "entity_id"),
    [
        (bytes([0x12]) * 32, "DataSample", "ds-1"),  # another exchange key
        (EXCHANGE_KEY, "Patient", "ds-1"),  # another kind with the same id
        (EXCHANGE_KEY, "DataSample", "ds-2"),  # another entity
    ],
)
def test_a_wrap_opens_for_its_own_entity_only(exchange_key: bytes, entity_type: str, entity_id: str) -> None:
    with pytest.raises(DecryptionError, match="authentication failed"):
        unwrap_entity_key(exchange_key, entity_type, entity_id, FROZEN_WRAP)


def test_any_flipped_byte_of_a_wrap_fails() -> None:
    raw = base64.b64decode(FROZEN_WRAP)
    for index in range(1, len(raw)):  # byte 0 is the suite, refused by name below
        flipped = bytearray(raw)
        flipped[index] ^= 0x01
        with pytest.raises(DecryptionError):
            unwrap_entity_key(EXCHANGE_KEY, "DataSample", "ds-1", base64.b64encode(flipped).decode())
    with pytest.raises(DecryptionError, match="unknown suite 0x00"):
        unwrap_entity_key(EXCHANGE_KEY, "DataSample", "ds-1", base64.b64encode(b"\x00" + raw[1:]).decode())


def test_delegation_keys_are_frozen_and_follow_the_formula() -> None:
    ack = hashlib.sha256(ACCESS_CONTROL_SECRET + b"DataSample").digest()[:16]
    assert access_control_key(ACCESS_CONTROL_SECRET, "DataSample") == ack
    assert delegation_key(ACCESS_CONTROL_SECRET, "DataSample") == hashlib.sha256(ack).hexdigest()
    assert delegation_key(ACCESS_CONTROL_SECRET, "DataSample") == (
        "30f1d2735aceb9e3a1aff7ddf2824c20f56563caeb962d6044023da0553ceef2"
    )
    assert delegation_key(ACCESS_CONTROL_SECRET, "Patient") == (
        "24e3c7771605375fa8949d72dde6a2e7ee81adfe412fbf3bf3183df364597222"
    )


def test_server_delegation_keys_are_frozen() -> None:
    assert (
        server_delegation_key("hcp-a", "pat-b")
        == hashlib.sha256(context("server-delegation", "hcp-a", "pat-b")).hexdigest()
    )
    assert server_delegation_key("hcp-a", "pat-b") == "976e07b22a6b0e024303bfb4abfcdc1a26b5ee1c44c0c66b112a9498cb8da0ab"
    assert server_delegation_key(None, "pat-b") == "900df8e319ea4115d8dd0f0f07daefbb7fa68e50c542c2d9b8cf62b99ec5f1a0"
    assert server_delegation_key(None, "pat-b") == server_delegation_key("", "pat-b")


def test_a_secure_delegation_has_the_spec_fields() -> None:
    delegation = secure_delegation("hcp-a", "pat-b", "ed-1", [FROZEN_WRAP], "READ")
    assert delegation == {
        "delegator": "hcp-a",
        "delegate": "pat-b",
        "secretIds": [],
        "encryptionKeys": [FROZEN_WRAP],
        "owningEntityIds": [],
        "parentDelegations": [],
        "exchangeDataId": "ed-1",
        "permissions": "READ",
    }
    child = secure_delegation("hcp-a", "hcp-c", "ed-2", [], "WRITE", parent_delegations=["abc"])
    assert child["parentDelegations"] == ["abc"] and child["permissions"] == "WRITE"
    with pytest.raises(ValueError, match="READ or WRITE"):
        secure_delegation("hcp-a", "pat-b", "ed-1", [], "ADMIN")  # type: ignore[arg-type]
