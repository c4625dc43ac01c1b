"""The SDK's sans-I/O crypto state: pins on first use and refuses a changed key, opens exchange data only under
a pinned signature, finds an entity's key through its delegations, and re-wraps only its own on rotation."""

from __future__ import annotations

import pytest

from medstream.crypto import DataOwnerKeyPair, EntityKey, KeyStore, create_exchange_data
from medstream.crypto.state import CryptoState
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
