"""crypto/encrypted_self.py: the encrypted fields of an entity, their format, and every way decryption must fail."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from medstream.crypto import ENCRYPTED_SELF, EntityKey, decrypt_fields, encrypt_fields, encrypted_self_kid
from medstream.errors import DecryptionError
from tests.unit.crypto_fixtures import ENTITY_KEY, context

FIELDS = ["comment", "content", "transactionId"]
CLEAR_SAMPLE: dict[str, Any] = {
    "id": "ds-1",
    "comment": "Fièvre 39°C",
    "content": {"fr": {"stringValue": "fièvre"}},
    "labels": [],
}
# Frozen: 0x01 || kid || nonce(0c..17) || AES-256-GCM(K_e, orjson(sorted), ctx("encrypted-self", type, id, hex(kid))).
FROZEN = (
    "AQABAgMEBQYHDA0ODxAREhMUFRYX5RFaSVyNsZ7WKrWdnkPqxuQA76/sHcEfILaHtg/gEayVm77Sx0XCkRRNJ0xt0r/iCsrFuROIXPW4YsQOT0zuzXV5"
    "2NupI/EViWXS8Wj99i7fv2/w9Zs="
)
KEYS = {ENTITY_KEY.kid: ENTITY_KEY.key}


def encrypted() -> dict[str, Any]:
    return encrypt_fields(CLEAR_SAMPLE, "DataSample", FIELDS, ENTITY_KEY, nonce=bytes(range(12, 24)))


def test_encrypted_self_is_frozen_and_follows_the_spec() -> None:
    assert encrypted() == {"id": "ds-1", "labels": [], ENCRYPTED_SELF: FROZEN}
    raw = base64.b64decode(FROZEN)
    assert raw[0] == 1 and raw[1:9] == ENTITY_KEY.kid and raw[9:21] == bytes(range(12, 24))
    aad = context("encrypted-self", "DataSample", "ds-1", ENTITY_KEY.kid.hex())
    plaintext = AESGCM(ENTITY_KEY.key).decrypt(raw[9:21], raw[21:], aad)
    hidden = {"comment": CLEAR_SAMPLE["comment"], "content": CLEAR_SAMPLE["content"]}
    assert plaintext == orjson.dumps(hidden, option=orjson.OPT_SORT_KEYS)


def test_decrypt_merges_the_fields_back() -> None:
    assert decrypt_fields(encrypted(), "DataSample", KEYS) == CLEAR_SAMPLE
    assert decrypt_fields(encrypted(), "DataSample", lambda kid: KEYS.get(kid)) == CLEAR_SAMPLE
    assert encrypted_self_kid(encrypted()) == ENTITY_KEY.kid
    assert decrypt_fields({"id": "ds-1", "labels": []}, "DataSample", KEYS) == {"id": "ds-1", "labels": []}


def test_an_empty_clear_value_gives_way_to_the_encrypted_one() -> None:
    # What a model writes for an unset field (an empty dict or list) is not a second value.
    assert decrypt_fields({**encrypted(), "content": {}, "comment": None}, "DataSample", KEYS) == CLEAR_SAMPLE


def test_a_field_both_in_clear_and_encrypted_is_an_error() -> None:
    with pytest.raises(DecryptionError, match="comment both in clear and encrypted"):
        decrypt_fields({**encrypted(), "comment": "in clear"}, "DataSample", KEYS)


def test_a_missing_kid_names_it() -> None:
    with pytest.raises(DecryptionError, match=f"no key for kid {ENTITY_KEY.kid.hex()}"):
        decrypt_fields(encrypted(), "DataSample", {})


def test_a_wrong_key_fails() -> None:
    with pytest.raises(DecryptionError, match="authentication failed"):
        decrypt_fields(encrypted(), "DataSample", {ENTITY_KEY.kid: bytes(32)})


def test_swapping_between_entities_or_kinds_fails() -> None:
    other = encrypt_fields({**CLEAR_SAMPLE, "id": "ds-2"}, "DataSample", FIELDS, ENTITY_KEY)
    with pytest.raises(DecryptionError, match="DataSample ds-1"):
        decrypt_fields({**encrypted(), ENCRYPTED_SELF: other[ENCRYPTED_SELF]}, "DataSample", KEYS)
    with pytest.raises(DecryptionError, match="Patient ds-1"):
        decrypt_fields(encrypted(), "Patient", KEYS)


def test_an_unknown_suite_is_named() -> None:
    raw = bytearray(base64.b64decode(FROZEN))
    raw[0] = 0x07
    with pytest.raises(DecryptionError, match="unknown suite 0x07"):
        decrypt_fields({**encrypted(), ENCRYPTED_SELF: base64.b64encode(raw).decode()}, "DataSample", KEYS)


def test_the_key_id_is_read_from_the_start_of_the_blob_and_the_rest_is_checked_when_it_is_opened() -> None:
    wire = {**encrypted(), ENCRYPTED_SELF: FROZEN}
    assert encrypted_self_kid(wire, "DataSample") == ENTITY_KEY.kid
    damaged = {**wire, ENCRYPTED_SELF: FROZEN[:40] + "!" + FROZEN[41:]}
    assert encrypted_self_kid(damaged, "DataSample") == ENTITY_KEY.kid, "the kid's own characters are intact"
    with pytest.raises(DecryptionError, match="DataSample ds-1: encryptedSelf: not valid base64"):
        decrypt_fields(damaged, "DataSample", KEYS)
    raw = bytearray(base64.b64decode(FROZEN))
    raw[0] = 0x07
    with pytest.raises(DecryptionError, match="unknown suite 0x07"):
        encrypted_self_kid({**wire, ENCRYPTED_SELF: base64.b64encode(raw).decode()}, "DataSample")
    for short in (FROZEN[:48], FROZEN[:5], 42):  # under a blob's least length, or not text: said as when opened
        with pytest.raises(DecryptionError, match="DataSample ds-1: encryptedSelf: "):
            encrypted_self_kid({**wire, ENCRYPTED_SELF: short}, "DataSample")


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
WIRE_DICTS = st.dictionaries(
    st.sampled_from(["comment", "content", "canvasesIds", "labels", "index", "note"]), JSON_VALUES
)


@settings(max_examples=150, deadline=None)
@given(wire=WIRE_DICTS, entity_id=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,20}", fullmatch=True))
def test_decrypt_of_encrypt_is_the_identity(wire: dict[str, Any], entity_id: str) -> None:
    wire = {**wire, "id": entity_id}
    key = EntityKey.generate()
    hidden = ["comment", "content", "canvasesIds"]
    sealed = encrypt_fields(wire, "DataSample", hidden, key)
    assert not set(hidden) & set(sealed)
    # An encrypted field that is null is left out: null and absent mean the same on the wire.
    expected = {name: value for name, value in wire.items() if value is not None or name not in hidden}
    assert decrypt_fields(sealed, "DataSample", {key.kid: key.key}) == expected


@settings(max_examples=60, deadline=None)
@given(wire=WIRE_DICTS, data=st.data())
def test_any_single_flipped_byte_fails(wire: dict[str, Any], data: st.DataObject) -> None:
    sealed = encrypt_fields({**wire, "id": "ds-1"}, "DataSample", ["comment", "content"], ENTITY_KEY)
    raw = bytearray(base64.b64decode(sealed[ENCRYPTED_SELF]))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    with pytest.raises(DecryptionError):
        decrypt_fields({**sealed, ENCRYPTED_SELF: base64.b64encode(raw).decode()}, "DataSample", KEYS)
