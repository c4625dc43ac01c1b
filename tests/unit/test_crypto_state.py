"""The SDK's sans-I/O crypto state: pins on first use and refuses a changed key, opens exchange data only under
a pinned signature, finds an entity's key through its delegations, and re-wraps only its own on rotation."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from medstream.crypto import (
    DataOwnerKeyPair,
    EntityKey,
    ExchangeSecrets,
    KeyStore,
    add_wraps_as_delegate,
    create_exchange_data,
    token,
)
from medstream.crypto.blind_index import IndexedField
from medstream.crypto.state import CryptoState, EntityKeyCache
from medstream.errors import DecryptionError, KeyVerificationError
from tests.unit.crypto_fixtures import HCP_KEYS, PATIENT_KEYS

FIELDS = {"DataSample": ("content", "comment")}


def _state(owner: str, keys: DataOwnerKeyPair) -> CryptoState:
    return CryptoState(KeyStore(owner, [keys]), FIELDS)


def test_a_counterpartys_keys_are_pinned_on_first_use_and_a_new_key_is_refused_until_verified() -> None:
    state = _state("hcp-a", HCP_KEYS)
    assert state.check_published("pat-b", [PATIENT_KEYS.public]) is True
    assert state.check_published("pat-b", [PATIENT_KEYS.public]) is False, "already pinned: nothing to save"
    impostor = DataOwnerKeyPair.generate(1).public
    with pytest.raises(KeyVerificationError, match="pat-b") as refused:
        state.check_published("pat-b", [impostor])
    assert impostor.fingerprint in str(refused.value) and impostor.id in str(refused.value)
    state.verify("pat-b", impostor)
    assert state.check_published("pat-b", [impostor]) is False
    assert state.store.pins["pat-b"][impostor.id].verified


def test_exchange_data_opens_only_when_signed_by_a_pinned_key_of_its_delegator() -> None:
    wire, secrets = create_exchange_data("ed-1", "hcp-a", "pat-b", [HCP_KEYS], [HCP_KEYS.public, PATIENT_KEYS.public])
    patient = _state("pat-b", PATIENT_KEYS)
    with pytest.raises(DecryptionError, match="no pinned key"):
        patient.open(wire)
    patient.check_published("hcp-a", [HCP_KEYS.public])
    assert patient.open(wire) == secrets
    assert patient.by_pair[("hcp-a", "pat-b")] == "ed-1"


def _shared_entity() -> tuple[CryptoState, CryptoState, dict[str, object], EntityKey]:
    hcp, patient = _state("hcp-a", HCP_KEYS), _state("pat-b", PATIENT_KEYS)
    own, _ = create_exchange_data("ed-self", "hcp-a", "hcp-a", [HCP_KEYS], [HCP_KEYS.public])
    to_patient, _ = create_exchange_data("ed-ab", "hcp-a", "pat-b", [HCP_KEYS], [HCP_KEYS.public, PATIENT_KEYS.public])
    hcp.open(own)
    hcp.open(to_patient)
    key = EntityKey.generate()
    self_key, self_delegation = hcp.delegation("DataSample", "ds-1", key, "hcp-a", "WRITE")
    shared_key, shared_delegation = hcp.delegation("DataSample", "ds-1", key, "pat-b", "READ")
    wire = {"id": "ds-1", "comment": "hello", "content": {}}
    wire["securityMetadata"] = {"secureDelegations": {self_key: self_delegation, shared_key: shared_delegation}}
    patient.check_published("hcp-a", [HCP_KEYS.public])
    patient.open(to_patient)
    return hcp, patient, hcp.encrypt("DataSample", wire, key), key


def test_an_entity_decrypts_through_a_delegation_to_its_reader_and_not_for_anyone_else() -> None:
    hcp, patient, encrypted, _key = _shared_entity()
    assert "comment" not in encrypted
    assert patient.decrypt("DataSample", encrypted)["comment"] == "hello"
    stranger = _state("dev-c", DataOwnerKeyPair.generate(2))
    with pytest.raises(DecryptionError, match="no delegation to dev-c"):
        stranger.decrypt("DataSample", encrypted)
    assert hcp.missing_exchange_data(encrypted) == []
    assert _state("pat-b", PATIENT_KEYS).missing_exchange_data(encrypted) == ["ed-ab"]


def test_the_entity_key_cache_keeps_the_most_recently_used_and_a_key_that_left_is_unwrapped_again() -> None:
    cache = EntityKeyCache(2)
    keys = [EntityKey.generate() for _ in range(3)]
    cache[("DataSample", "a", keys[0].kid)] = keys[0]
    cache[("DataSample", "b", keys[1].kid)] = keys[1]
    assert cache.lookup(("DataSample", "a", keys[0].kid)) == keys[0], "used: now the most recent"
    cache[("DataSample", "c", keys[2].kid)] = keys[2]
    assert len(cache) == 2 and cache.lookup(("DataSample", "b", keys[1].kid)) is None, "the least recently used left"
    assert cache.lookup(("DataSample", "a", keys[0].kid)) == keys[0]

    _hcp, patient, encrypted, key = _shared_entity()
    patient.entity_keys = EntityKeyCache(1)
    assert patient.decrypt("DataSample", encrypted)["comment"] == "hello"
    patient.remember("DataSample", "other", EntityKey.generate())
    assert ("DataSample", "ds-1", key.kid) not in patient.entity_keys, "left for the newer key"
    assert patient.decrypt("DataSample", encrypted)["comment"] == "hello", "unwrapped again from its delegation"
    assert patient.entity_keys.lookup(("DataSample", "ds-1", key.kid)) == key


def test_rotation_rewraps_the_writers_delegations_and_leaves_anothers_with_the_old_key() -> None:
    hcp, patient, encrypted, old = _shared_entity()
    delegations = dict(encrypted["securityMetadata"]["secureDelegations"])  # type: ignore[index]
    foreign = {"delegator": "pat-b", "delegate": "dev-c", "encryptionKeys": ["x"], "exchangeDataId": "ed-bc"}
    delegations["f" * 64] = foreign
    new = EntityKey.generate()
    rewrapped = hcp.rewrapped("DataSample", "ds-1", delegations, new)
    assert rewrapped["f" * 64] == foreign
    rotated = hcp.encrypt(
        "DataSample", {"id": "ds-1", "comment": "after", "securityMetadata": {"secureDelegations": rewrapped}}, new
    )
    fresh_patient = _state("pat-b", PATIENT_KEYS)
    fresh_patient.check_published("hcp-a", [HCP_KEYS.public])
    fresh_patient.secrets.update(patient.secrets)
    assert fresh_patient.decrypt("DataSample", rotated)["comment"] == "after"
    assert new.kid != old.kid


def test_a_data_owner_reads_through_a_delegation_it_made_once_its_own_is_lost() -> None:
    """The professional lost its keys (its own exchange data with itself too); the patient gave its exchange data
    from the professional wraps for the new key, signed as delegate: the professional's key to the entity comes
    from its delegation to the patient, and the record is named to be signed again."""
    hcp, _patient, encrypted, key = _shared_entity()
    new_hcp_key = DataOwnerKeyPair.generate(created=3)
    renewed = _state("hcp-a", new_hcp_key)
    assert renewed.missing_exchange_data(encrypted) == ["ed-self"]
    assert renewed.missing_exchange_data(encrypted, made_by_self=True) == ["ed-ab"]
    with pytest.raises(DecryptionError, match="no delegation to hcp-a carries its key"):
        renewed.decrypt("DataSample", encrypted)
    lost = hcp.exchange_data["ed-ab"]
    renewed.check_published("pat-b", [PATIENT_KEYS.public])
    with pytest.raises(DecryptionError, match="signed only by keys of hcp-a that are not pinned"):
        renewed.open(lost)
    answered = add_wraps_as_delegate(lost, hcp.secrets["ed-ab"], [new_hcp_key.public], [PATIENT_KEYS])
    renewed.open(answered)
    assert renewed.unsigned_own == {"ed-ab"}, "to be signed again with the new key"
    assert renewed.missing_exchange_data(encrypted, made_by_self=True) == []
    assert renewed.entity_key("DataSample", encrypted) == key
    assert renewed.decrypt("DataSample", encrypted)["comment"] == "hello"
    with pytest.raises(DecryptionError, match="no delegation to dev-c"):  # only the parties read through it
        stranger = _state("dev-c", DataOwnerKeyPair.generate(2))
        stranger.secrets.update(renewed.secrets)
        stranger.decrypt("DataSample", encrypted)


def test_an_entity_key_is_found_through_the_owners_delegation_to_another() -> None:
    hcp, _patient, encrypted, key = _shared_entity()
    other_device = _state("hcp-a", HCP_KEYS)
    other_device.secrets["ed-ab"] = hcp.secrets["ed-ab"]  # only its exchange data with the patient is open
    assert other_device.entity_key("DataSample", encrypted) == key
    assert other_device.decrypt("DataSample", encrypted)["comment"] == "hello"
    other_device.open(hcp.exchange_data["ed-ab"])
    assert other_device.unsigned_own == set(), "signed by one of its keys"


def test_a_malformed_wrap_in_one_delegation_leaves_the_key_another_carries_and_alone_names_the_entity() -> None:
    hcp, _patient, encrypted, key = _shared_entity()
    delegations = encrypted["securityMetadata"]["secureDelegations"]  # type: ignore[index]
    own = next(value for value in delegations.values() if value["delegate"] == "hcp-a")
    own["encryptionKeys"] = ["not base64!"]
    hcp.entity_keys.clear()
    assert hcp.entity_key("DataSample", encrypted) == key, "through its delegation to the patient"
    assert hcp.decrypt("DataSample", encrypted)["comment"] == "hello"
    alone = _state("hcp-a", HCP_KEYS)
    alone.secrets["ed-self"] = hcp.secrets["ed-self"]
    with pytest.raises(DecryptionError, match="DataSample ds-1: encryption key: not valid base64"):
        alone.decrypt("DataSample", encrypted)


# --- search keys -----------------------------------------------------------------------------------------

PATIENT_FIELDS = {"Patient": ("firstName", "lastName", "names", "maidenName", "spouseName", "ssin")}
BLIND = {
    "Patient": {
        "ssin": IndexedField("equality", ("ssin",)),
        "names": IndexedField("words", ("firstName", "lastName", "maidenName", "spouseName", "names")),
    }
}
HCP_SEARCH_KEY, PATIENT_SEARCH_KEY = bytes([0x55]) * 32, bytes([0x66]) * 32


def _searching(owner: str, keys: DataOwnerKeyPair, search_key: bytes, fields: Any, required: bool) -> CryptoState:
    return CryptoState(KeyStore(owner, [keys], search_key=search_key), fields, BLIND, required)


def test_a_delegate_learns_the_delegators_search_key_and_indexes_and_searches_with_it() -> None:
    wire, _ = create_exchange_data(
        "ed-1",
        "hcp-a",
        "pat-b",
        [HCP_KEYS],
        [HCP_KEYS.public, PATIENT_KEYS.public],
        ExchangeSecrets.generate(HCP_SEARCH_KEY),
    )
    patient = _searching("pat-b", PATIENT_KEYS, PATIENT_SEARCH_KEY, PATIENT_FIELDS, True)
    entity = {"id": "pat-1", "responsible": "hcp-a", "ssin": "85073003328"}
    # Before: its own key only, for its searches and for an entity whose responsible's key it lacks.
    assert patient.known_search_keys() == [PATIENT_SEARCH_KEY]
    assert patient.blind_index("Patient", entity) == {"ssin": [token(PATIENT_SEARCH_KEY, "ssin", "85073003328")]}
    patient.check_published("hcp-a", [HCP_KEYS.public])
    patient.open(wire)
    assert patient.known_search_keys() == [PATIENT_SEARCH_KEY, HCP_SEARCH_KEY]
    assert patient.blind_index("Patient", entity) == {"ssin": [token(HCP_SEARCH_KEY, "ssin", "85073003328")]}
    assert patient.blind_index("Patient", {**entity, "responsible": None})["ssin"] == [
        token(PATIENT_SEARCH_KEY, "ssin", "85073003328")
    ]
    assert patient.blind_search("Patient", "ssin", ["85073003328"]) == [
        sorted([token(PATIENT_SEARCH_KEY, "ssin", "85073003328"), token(HCP_SEARCH_KEY, "ssin", "85073003328")])
    ]
    # The delegator's own exchange data with itself teaches it nothing new.
    own, _ = create_exchange_data(
        "ed-2", "hcp-a", "hcp-a", [HCP_KEYS], [HCP_KEYS.public], ExchangeSecrets.generate(HCP_SEARCH_KEY)
    )
    professional = _searching("hcp-a", HCP_KEYS, HCP_SEARCH_KEY, PATIENT_FIELDS, True)
    professional.open(own)
    assert professional.known_search_keys() == [HCP_SEARCH_KEY]


def test_a_field_is_searched_blind_when_encrypted_or_when_encryption_is_required() -> None:
    encrypted = _searching("hcp-a", HCP_KEYS, HCP_SEARCH_KEY, PATIENT_FIELDS, False)
    assert encrypted.blind_field("Patient", "ssin") == BLIND["Patient"]["ssin"]
    clear = _searching("hcp-a", HCP_KEYS, HCP_SEARCH_KEY, {"Patient": ("note",)}, False)
    assert clear.blind_field("Patient", "ssin") is None and clear.blind_search("Patient", "ssin", ["1"]) is None
    required = _searching("hcp-a", HCP_KEYS, HCP_SEARCH_KEY, {"Patient": ("note",)}, True)
    assert required.blind_search("Patient", "names", ["Dupré"]) == [[token(HCP_SEARCH_KEY, "names", "dupre")]]
    assert required.blind_field("Patient", "identifiers") is None, "not a blind-index field of this configuration"


# --- writes ------------------------------------------------------------------------------------------------


def test_an_entity_of_a_kind_without_encrypted_fields_is_encrypted_as_it_is() -> None:
    hcp = _state("hcp-a", HCP_KEYS)
    professional = {"id": "hcp-b", "firstName": "Jane", "labels": []}
    assert hcp.encrypt("HealthcareProfessional", professional, EntityKey.generate()) == professional
    assert hcp.entity_keys == {}, "no key is kept for it either"
    assert hcp.decrypt("HealthcareProfessional", professional) == professional


def test_a_write_gets_an_id_its_blind_index_and_on_update_the_stored_delegations() -> None:
    hcp = _searching("hcp-a", HCP_KEYS, HCP_SEARCH_KEY, PATIENT_FIELDS, True)
    stale = {"names": ["not a token"]}
    created = hcp.for_write("Patient", {"lastName": "Li", "encryptedSelf": "AQID", "blindIndex": stale})
    assert "encryptedSelf" not in created and uuid.UUID(created["id"]).version == 7
    # Each id starts with the millisecond it was made in: made one after the other, they sort by that time (the
    # server's indexes keyed by id take them in order), whatever their random bits within one millisecond.
    made = [hcp.for_write("Patient", {"id": None})["id"] for _ in range(50)]
    milliseconds = [int(made_id.replace("-", "")[:12], 16) for made_id in made]
    assert sorted(milliseconds) == milliseconds and len(set(made)) == 50
    assert created["blindIndex"] == {"names": [token(HCP_SEARCH_KEY, "names", "li")]}
    # Nothing left to index: the blind index sent before is dropped, not kept stale.
    assert "blindIndex" not in hcp.for_write("Patient", {"id": "p-1", "blindIndex": stale})
    metadata = {"secureDelegations": {"k": {"delegator": "hcp-a", "delegate": "hcp-a"}}}
    stored = {"id": "p-1", "rev": "1-a", "responsible": "hcp-x", "securityMetadata": metadata}
    updated = hcp.for_write("Patient", {"id": "p-1", "rev": "1-a", "ssin": "1"}, stored)
    assert updated["securityMetadata"] == metadata and "responsible" not in updated
    assert hcp.for_write("Patient", {"id": "p-1", "ssin": "1"}, stored).get("securityMetadata") is None, "a create"


def test_a_new_entity_gets_its_blind_index_and_a_delegation_to_its_writer_that_the_writer_alone_opens() -> None:
    own, _ = create_exchange_data(
        "ed-self", "hcp-a", "hcp-a", [HCP_KEYS], [HCP_KEYS.public], ExchangeSecrets.generate(HCP_SEARCH_KEY)
    )
    writer = _searching("hcp-a", HCP_KEYS, HCP_SEARCH_KEY, PATIENT_FIELDS, True)
    writer.open(own)
    wire: dict[str, Any] = {"id": "pat-1", "ssin": "85073003328", "blindIndex": {"ssin": ["stale"]}}
    writer.set_blind_index("Patient", wire)
    assert wire["blindIndex"] == {"ssin": [token(HCP_SEARCH_KEY, "ssin", "85073003328")]}
    key = EntityKey.generate()
    encrypted = writer.encrypt("Patient", writer.with_own_delegation("Patient", wire, key), key)
    (delegation,) = encrypted["securityMetadata"]["secureDelegations"].values()
    assert (delegation["delegator"], delegation["delegate"], delegation["permissions"]) == ("hcp-a", "hcp-a", "WRITE")
    assert "ssin" not in encrypted and "securityMetadata" not in wire, "the entity given is not changed"
    # Another device of the writer, with its keys and nothing cached, reads it through that delegation alone.
    device = _searching("hcp-a", HCP_KEYS, HCP_SEARCH_KEY, PATIENT_FIELDS, True)
    assert device.missing_exchange_data(encrypted) == ["ed-self"]
    device.open(own)
    assert device.decrypt("Patient", encrypted)["ssin"] == "85073003328"
    with pytest.raises(DecryptionError, match="no delegation to pat-b"):
        _state("pat-b", PATIENT_KEYS).decrypt("Patient", encrypted)
    # Nothing left to index: the stale tokens go.
    cleared: dict[str, Any] = {"id": "pat-2", "blindIndex": {"ssin": ["stale"]}}
    writer.set_blind_index("Patient", cleared)
    assert "blindIndex" not in cleared
