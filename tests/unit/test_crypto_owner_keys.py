"""crypto/owner_keys.py and crypto/suite.py: key ids, fingerprints, public records and blob framing."""

from __future__ import annotations

import base64
import hashlib

import pytest

from medstream.crypto import DataOwnerKeyPair, ctx, fingerprint, key_id, parse_public_record
from medstream.crypto.suite import unframe
from medstream.errors import DecryptionError, ValidationError
from tests.unit.crypto_fixtures import HCP_KEYS, PATIENT_KEYS, context

# Frozen: X25519 / Ed25519 public keys of the fixed private keys, the key id and the fingerprint formulas.
HCP_RECORD = {
    "id": "804f0f04029cf1b80fe52ba072767780",
    "suite": 1,
    "encryptionKey": "j0DFrbaPJWJK5bIU6nZ6bslNgp09e14a0bpvPiE4KF8=",
    "signingKey": "Kay64UG8yvCyLhqU000LxzYeUm0L/hLIl5S8kyKWbdc=",
    "created": 1_700_000_000_000,
    "status": "ACTIVE",
}
HCP_FINGERPRINT = "72709 08943 70458 92910 79837 35889 99902 34160"


def test_context_strings_join_label_and_parts_with_zero_bytes() -> None:
    assert ctx("entity-key", "DataSample", "ds-1", "0001") == b"medstream/v1/entity-key\x00DataSample\x00ds-1\x000001"
    assert ctx("key-id") == b"medstream/v1/key-id\x00"
    assert ctx("x", "é") == context("x", "é")


def test_the_public_record_key_id_and_fingerprint_are_frozen() -> None:
    assert HCP_KEYS.public.to_wire() == HCP_RECORD
    assert HCP_KEYS.id == HCP_RECORD["id"]
    assert HCP_KEYS.public.fingerprint == HCP_FINGERPRINT


def test_key_id_and_fingerprint_follow_the_spec_formulas() -> None:
    x = base64.b64decode(str(HCP_RECORD["encryptionKey"]))
    ed = base64.b64decode(str(HCP_RECORD["signingKey"]))
    assert key_id(x, ed) == hashlib.sha256(context("key-id") + x + ed).hexdigest()[:32]
    number = int.from_bytes(hashlib.sha256(context("fingerprint") + x + ed).digest()[:20], "big")
    groups = [f"{(number >> (140 - 20 * i)) & 0xFFFFF:d}" for i in range(8)]
    assert fingerprint(x, ed) == " ".join(f"{int(g) % 100000:05d}" for g in groups)
    assert fingerprint(x, ed) != PATIENT_KEYS.public.fingerprint


def test_a_key_pair_comes_back_from_its_private_bytes() -> None:
    fresh = DataOwnerKeyPair.generate(created=5)
    again = DataOwnerKeyPair.from_private_bytes(*fresh.private_bytes(), created=5)
    assert again.public == fresh.public and again.id == fresh.id
    assert fresh.id != DataOwnerKeyPair.generate(created=5).id
    assert "private" not in repr(fresh) and fresh.private_bytes()[0].hex() not in repr(fresh)


def test_a_public_record_parses_back_to_the_same_keys() -> None:
    record = parse_public_record(HCP_RECORD)
    assert record == HCP_KEYS.public
    assert parse_public_record({**HCP_RECORD, "status": "RETIRED"}).is_active is False


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"encryptionKey": "not base64!"}, "encryptionKey"),
        ({"signingKey": base64.b64encode(bytes(31)).decode()}, "signingKey"),
        ({"encryptionKey": base64.b64encode(bytes(33)).decode()}, "encryptionKey"),
        ({"suite": 2}, "suite"),
        ({"suite": True}, "suite"),
        ({"status": "LOST"}, "status"),
        ({"created": "yesterday"}, "created"),
        ({"id": "0" * 32}, "id"),
    ],
)
def test_a_bad_public_record_is_refused_naming_the_field(change: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        parse_public_record({**HCP_RECORD, **change})
    with pytest.raises(ValidationError):
        parse_public_record(["not", "an", "object"])


def test_a_blob_of_an_unknown_suite_is_refused_naming_it() -> None:
    with pytest.raises(DecryptionError, match="unknown suite 0x02"):
        unframe(base64.b64encode(b"\x02" + bytes(40)).decode(), "test blob")
    with pytest.raises(DecryptionError, match="not valid base64"):
        unframe("AQ=*", "test blob")
    with pytest.raises(DecryptionError, match="expected 8"):
        unframe(base64.b64encode(b"\x01" + bytes(9)).decode(), "test blob", length=8)
