"""The write rules of secure delegations, crypto keys and exchange data, as pure functions (delegations.py)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from medstream.access import Actor
from medstream.delegations import (
    check_actor_keys,
    check_can_write,
    check_crypto_keys,
    check_exchange_data,
    metadata_for_create,
    metadata_for_update,
    server_delegation,
    server_metadata,
    with_access,
    without_access,
)
from medstream.errors import ConflictError, ForbiddenError, ValidationError
from medstream.model import (
    KIND_BY_NAME,
    AccessLevel,
    CryptoKey,
    DataSample,
    ExchangeData,
    HealthcareProfessional,
    KeyStatus,
    Patient,
    SecureDelegation,
    SecurityMetadata,
    User,
    server_delegation_key,
)

DOCTOR = Actor("user-doctor", "hcp-1")
COLLEAGUE = Actor("user-colleague", "hcp-2")
ADMIN = Actor("user-admin", None, is_admin=True)
SAMPLE = KIND_BY_NAME["DataSample"]
PATIENT = KIND_BY_NAME["Patient"]
USER = KIND_BY_NAME["User"]
EXCHANGE = KIND_BY_NAME["ExchangeData"]
KEY_A = "a" * 64
KEY_B = "b" * 64
BLOB = base64.b64encode(b"\x01" + bytes(60)).decode()


def client_delegation(
    delegator: str | None, delegate: str, permissions: AccessLevel = AccessLevel.READ
) -> SecureDelegation:
    return SecureDelegation(delegator=delegator, delegate=delegate, encryption_keys=(BLOB,), permissions=permissions)


def metadata(**delegations: SecureDelegation) -> SecurityMetadata:
    return SecurityMetadata(secure_delegations=delegations)


def test_the_server_delegation_key_is_the_hash_of_its_context() -> None:
    expected = hashlib.sha256(b"medstream/v1/server-delegation\x00hcp-1\x00pat-1").hexdigest()
    assert server_delegation_key("hcp-1", "pat-1") == expected
    assert (
        server_delegation_key(None, "pat-1")
        == hashlib.sha256(b"medstream/v1/server-delegation\x00\x00pat-1").hexdigest()
    )


def test_a_new_entity_without_delegations_is_read_by_its_creator_and_shares_the_cached_metadata() -> None:
    first = metadata_for_create(SAMPLE, "s-1", DataSample(), DOCTOR)
    second = metadata_for_create(SAMPLE, "s-2", DataSample(), DOCTOR)
    assert first.readers == {"hcp-1"} and first.writers == {"hcp-1"}
    assert first is second, "built once for every entity with the same readers"
    (key,) = first.secure_delegations
    assert key == server_delegation_key("hcp-1", "hcp-1")


def test_a_data_owner_reads_its_own_record_and_a_user_its_data_owner() -> None:
    assert metadata_for_create(PATIENT, "pat-1", Patient(), DOCTOR).readers == {"hcp-1", "pat-1"}
    assert metadata_for_create(USER, "u-1", User(patient_id="pat-1"), ADMIN).readers == {"pat-1"}


def test_client_delegations_from_the_actor_are_kept_and_the_creator_is_added_only_when_missing() -> None:
    own = client_delegation("hcp-1", "hcp-2")
    made = metadata_for_create(SAMPLE, "s-1", DataSample(security_metadata=metadata(**{KEY_A: own})), DOCTOR)
    assert made.secure_delegations[KEY_A] == own
    assert made.readers == {"hcp-1", "hcp-2"}
    to_self = client_delegation("hcp-1", "hcp-1", AccessLevel.WRITE)
    alone = metadata_for_create(SAMPLE, "s-1", DataSample(security_metadata=metadata(**{KEY_A: to_self})), DOCTOR)
    assert list(alone.secure_delegations) == [KEY_A], "no server delegation when the client's names the creator"


@pytest.mark.parametrize("delegator", ["hcp-2", None])
def test_a_delegation_from_anyone_but_the_actor_is_refused_on_create(delegator: str | None) -> None:
    forged = DataSample(security_metadata=metadata(**{KEY_A: client_delegation(delegator, "hcp-2")}))
    with pytest.raises(ForbiddenError, match=KEY_A):
        metadata_for_create(SAMPLE, "s-1", forged, DOCTOR)


def stored_sample() -> DataSample:
    shared = metadata(**{KEY_A: client_delegation("hcp-1", "hcp-2")})
    return DataSample(
        id="s-1", security_metadata=metadata_for_create(SAMPLE, "s-1", DataSample(security_metadata=shared), DOCTOR)
    )


def test_no_metadata_sent_keeps_the_stored_one() -> None:
    current = stored_sample()
    assert metadata_for_update(SAMPLE, DataSample(id="s-1"), current, DOCTOR) is current.security_metadata


def test_the_delegator_changes_or_removes_its_own_delegation() -> None:
    current = stored_sample()
    assert current.security_metadata is not None
    kept = {k: d for k, d in current.security_metadata.secure_delegations.items() if k != KEY_A}
    removed = metadata_for_update(SAMPLE, DataSample(security_metadata=metadata(**kept)), current, DOCTOR)
    assert removed.readers == {"hcp-1"}
    more = {**current.security_metadata.secure_delegations, KEY_B: client_delegation("hcp-1", "pat-9")}
    added = metadata_for_update(SAMPLE, DataSample(security_metadata=metadata(**more)), current, DOCTOR)
    assert added.readers == {"hcp-1", "hcp-2", "pat-9"}


def test_another_data_owners_delegation_and_a_server_delegation_stay_unless_an_admin_changes_them() -> None:
    current = stored_sample()
    assert current.security_metadata is not None
    delegations = current.security_metadata.secure_delegations
    server_key = server_delegation_key("hcp-1", "hcp-1")
    without_doctors = metadata(**{k: d for k, d in delegations.items() if k != KEY_A})
    with pytest.raises(ForbiddenError, match=KEY_A):
        metadata_for_update(SAMPLE, DataSample(security_metadata=without_doctors), current, COLLEAGUE)
    without_server = metadata(**{k: d for k, d in delegations.items() if k != server_key})
    with pytest.raises(ForbiddenError, match=server_key):
        metadata_for_update(SAMPLE, DataSample(security_metadata=without_server), current, DOCTOR)
    assert metadata_for_update(SAMPLE, DataSample(security_metadata=without_server), current, ADMIN) == without_server
    forged = metadata(**{**delegations, KEY_B: client_delegation("hcp-3", "hcp-2")})
    with pytest.raises(ForbiddenError, match=KEY_B):
        metadata_for_update(SAMPLE, DataSample(security_metadata=forged), current, COLLEAGUE)


def test_writing_needs_a_write_delegation() -> None:
    current = stored_sample()  # hcp-2 holds a READ delegation
    check_can_write(SAMPLE, current, DOCTOR)
    check_can_write(SAMPLE, current, ADMIN)
    with pytest.raises(ForbiddenError, match="reading only"):
        check_can_write(SAMPLE, current, COLLEAGUE)


def test_sharing_adds_a_server_delegation_and_revoking_removes_the_actors_own() -> None:
    current = stored_sample().security_metadata
    assert current is not None
    shared = with_access(current, DOCTOR, "pat-9")
    assert shared.readers == {"hcp-1", "hcp-2", "pat-9"}
    assert with_access(shared, DOCTOR, "pat-9") is shared, "sharing again changes nothing"
    assert without_access(shared, COLLEAGUE, "pat-9") is shared, "not the colleague's delegation"
    assert without_access(shared, DOCTOR, "pat-9").readers == {"hcp-1", "hcp-2"}
    assert without_access(shared, ADMIN, "hcp-2").readers == {"hcp-1", "pat-9"}


def key(status: KeyStatus = KeyStatus.ACTIVE, byte: int = 1) -> CryptoKey:
    raw = base64.b64encode(bytes([byte]) * 32).decode()
    return CryptoKey(id=f"{byte:032x}", suite=1, encryption_key=raw, signing_key=raw, created=1, status=status)


def test_only_the_data_owner_itself_publishes_and_retires_its_keys() -> None:
    me = Actor("user-patient", "pat-1")
    check_crypto_keys("pat-1", [key()], [], me)
    check_crypto_keys("pat-1", [key(KeyStatus.RETIRED), key(byte=2)], [key()], me)
    check_crypto_keys("pat-1", [key()], [key()], DOCTOR)  # unchanged keys are anyone's to send back
    with pytest.raises(ForbiddenError, match="pat-1"):
        check_crypto_keys("pat-1", [key()], [], DOCTOR)
    with pytest.raises(ValidationError, match=key().id):
        check_crypto_keys("pat-1", [], [key()], me)
    with pytest.raises(ValidationError, match=key().id):
        check_crypto_keys("pat-1", [key()], [key(KeyStatus.RETIRED)], me)
    with pytest.raises(ValidationError, match=key().id):
        check_crypto_keys("pat-1", [key().model_copy(update={"created": 2})], [key()], me)
    with pytest.raises(ValidationError, match="more than once"):
        check_crypto_keys("pat-1", [key(), key()], [], me)


def test_only_the_data_owner_itself_publishes_its_rsa_keys_and_never_removes_one() -> None:
    me = Actor("user-doctor", "hcp-1")
    stored = HealthcareProfessional(id="hcp-1", public_keys_for_oaep_with_sha256={"3082a"})
    added = stored.model_copy(update={"public_keys_for_oaep_with_sha256": {"3082a", "3082b"}})
    check_actor_keys("hcp-1", added, stored, me)
    check_actor_keys("hcp-1", stored, None, me)  # a data owner created with its keys, by itself
    check_actor_keys("hcp-1", stored.model_copy(update={"name": "Dr"}), stored, COLLEAGUE)  # keys unchanged
    check_actor_keys("hcp-1", HealthcareProfessional(), None, ADMIN)  # no keys at all
    with pytest.raises(ForbiddenError, match="hcp-1"):
        check_actor_keys("hcp-1", added, stored, COLLEAGUE)
    with pytest.raises(ForbiddenError, match="hcp-1"):
        check_actor_keys("hcp-1", stored, None, ADMIN)
    with pytest.raises(ForbiddenError, match="hcp-1"):
        check_actor_keys("hcp-1", stored.model_copy(update={"aes_exchange_keys": {"k": {}}}), stored, COLLEAGUE)
    with pytest.raises(ValidationError, match="cannot be removed"):
        check_actor_keys("hcp-1", stored.model_copy(update={"public_keys_for_oaep_with_sha256": {"3082b"}}), stored, me)
    with pytest.raises(ValidationError, match="cannot be removed"):
        check_actor_keys("hcp-1", stored.model_copy(update={"public_keys_for_oaep_with_sha256": None}), stored, me)


def test_a_key_record_has_suite_1_and_32_byte_keys() -> None:
    with pytest.raises(ValueError, match="suite"):
        key().model_validate({**key().to_json_dict(), "suite": 2})
    with pytest.raises(ValueError, match="32 bytes"):
        CryptoKey.model_validate({**key().to_json_dict(), "signingKey": base64.b64encode(bytes(31)).decode()})


def test_exchange_data_is_made_by_its_delegator_and_read_by_its_two_parties() -> None:
    data = ExchangeData(delegator="hcp-1", delegate="pat-1")
    check_exchange_data(data, None, DOCTOR)
    with pytest.raises(ForbiddenError, match="hcp-1"):
        check_exchange_data(data, None, COLLEAGUE)
    with pytest.raises(ValidationError, match="delegate"):
        check_exchange_data(ExchangeData(delegator="hcp-1"), None, DOCTOR)
    sent = data.model_copy(update={"security_metadata": metadata(**{KEY_A: client_delegation("hcp-1", "hcp-9")})})
    assert metadata_for_create(EXCHANGE, "x-1", sent, DOCTOR) == server_metadata("hcp-1", frozenset({"hcp-1", "pat-1"}))
    check_exchange_data(data, data, Actor("user-patient", "pat-1"))
    with pytest.raises(ConflictError, match="delegate"):
        check_exchange_data(data.model_copy(update={"delegate": "pat-2"}), data, DOCTOR)


def test_exchange_data_is_modified_or_deleted_by_its_two_parties_only_admins_included() -> None:
    stored = ExchangeData(
        id="x-1",
        delegator="hcp-1",
        delegate="pat-1",
        security_metadata=server_metadata("hcp-1", frozenset({"hcp-1", "pat-1"})),
    )
    check_can_write(EXCHANGE, stored, DOCTOR)
    check_can_write(EXCHANGE, stored, Actor("user-patient", "pat-1"))
    check_can_write(EXCHANGE, stored, Actor("user-admin-doctor", "hcp-1", is_admin=True))
    for outsider in (COLLEAGUE, ADMIN, Actor("user-admin-colleague", "hcp-2", is_admin=True)):
        with pytest.raises(ForbiddenError, match="delegator hcp-1 or its delegate pat-1 only"):
            check_can_write(EXCHANGE, stored, outsider)


def test_a_server_delegation_is_one_shared_object_per_pair() -> None:
    assert server_delegation("hcp-1", "pat-1") is server_delegation("hcp-1", "pat-1")
