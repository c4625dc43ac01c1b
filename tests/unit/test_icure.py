"""The sans-I/O iCure adapter: its shapes, the mapping of entities both ways, its filters and its socket frames."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest

from medstream.errors import ValidationError
from medstream.events.types import EventType
from medstream.filters.nodes import DataSampleByHealthcarePartyTagCodeDateFilter, PatientByHealthcarePartyFilter
from medstream.icure import mapping
from medstream.icure import shapes as ic
from medstream.icure.filters import medstream_filter
from medstream.icure.socket import PONG, ParsedSubscription, parse_frame
from medstream.model import CodingReference, Content, DataSample, ExchangeData, HealthcareProfessional, User
from medstream.model.patient import Patient

HCP = "hcp-1"
KEY = "a" * 64
METADATA: dict[str, Any] = {
    "secureDelegations": {
        KEY: {
            "delegator": HCP,
            "delegate": HCP,
            "secretIds": ["c2VjcmV0"],
            "encryptionKeys": ["a2V5"],
            "owningEntityIds": ["cGF0aWVudA=="],
            "exchangeDataId": "ed-1",
            "permissions": "WRITE",
        }
    }
}
TAG = {"id": "IC-TEST|TEST|1", "type": "IC-TEST", "code": "TEST", "version": "1"}
# The subscription frame cardinal-sdk 2.14.0 sends for ServiceFilters.by_tag_and_value_date_for_self.
FRAME: dict[str, Any] = {
    "eventTypes": ["CREATE", "UPDATE"],
    "entityClass": "org.taktik.icure.entities.embed.Service",
    "filter": {
        "filter": {
            "$type": "ServiceByHcPartyTagCodeDateFilter",
            "healthcarePartyId": HCP,
            "tagType": "IC-TEST",
            "tagCode": "TEST",
        },
        "predicate": None,
    },
    "accessControlKeys": None,
    "useCardinalModelSerialization": True,
    "cardinalSdkVersion": "2.14.0",
}


def _contact(**fields: Any) -> ic.Contact:
    data: dict[str, Any] = {
        "id": "contact-1",
        "openingDate": 20240101120000,
        "services": [{"id": "service-1", "tags": [TAG], "encryptedSelf": "Y29udGVudA=="}],
        "secretForeignKeys": ["patient-secret"],
        "encryptedSelf": "ZGVzY3I=",
        "securityMetadata": METADATA,
    }
    data.update(fields)
    return ic.Contact.model_validate(data)


# -- shapes ----------------------------------------------------------------------------------------------------


def test_shapes_refuse_fields_icure_does_not_have() -> None:
    with pytest.raises(pydantic.ValidationError, match="medstreamExtra"):
        ic.Patient.model_validate({"id": "p", "medstreamExtra": None})
    with pytest.raises(pydantic.ValidationError, match="systemMetaData"):
        ic.Service.model_validate({"id": "s", "systemMetaData": {}})


def test_shapes_use_icure_wire_names() -> None:
    hcp = ic.HealthcareParty(id="h", public_keys_for_oaep_with_sha256=["30"], hc_party_keys={})
    assert hcp.to_icure() == {
        "id": "h",
        "identifier": [],
        "tags": [],
        "codes": [],
        "names": [],
        "addresses": [],
        "languages": [],
        "specialityCodes": [],
        "financialInstitutionInformation": [],
        "properties": [],
        "hcPartyKeys": {},
        "aesExchangeKeys": {},
        "transferKeys": {},
        "privateKeyShamirPartitions": {},
        "publicKeysForOaepWithSha256": ["30"],
    }
    data_owner = json.loads(ic.HcpDataOwner(data_owner=ic.HealthcareParty(id="h")).to_icure_json())
    assert data_owner["type"] == "hcp" and data_owner["dataOwner"]["id"] == "h"


# -- patients --------------------------------------------------------------------------------------------------


def test_a_patient_maps_to_medstream_and_back() -> None:
    sent = ic.Patient.model_validate(
        {
            "id": "p-1",
            "firstName": "John",
            "lastName": "Snow",
            "tags": [TAG],
            "identifier": [{"system": "ssin", "value": "123"}],
            "secretForeignKeys": ["s1"],
            "delegations": {HCP: [{"owner": HCP, "delegatedTo": HCP, "key": "k", "tags": []}]},
            "encryptedSelf": "bm90ZQ==",
            "securityMetadata": METADATA,
        }
    )
    patient = mapping.patient_in(sent)
    assert patient.labels == {CodingReference(id="IC-TEST|TEST|1", type="IC-TEST", code="TEST", version="1")}
    assert [(i.system, i.value) for i in patient.identifiers] == [("ssin", "123")]
    assert patient.secret_foreign_keys == {"s1"}
    assert patient.readers == frozenset({HCP})
    assert patient.delegations is not None and patient.delegations[HCP][0].delegated_to == HCP
    back = mapping.patient_out(patient.model_copy(update={"rev": "1-x", "created": 5, "modified": 6}))
    assert back.to_icure() == {**sent.to_icure(), "rev": "1-x", "created": 5, "modified": 6}


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"note": "Winter is coming"}, "note travel in encryptedSelf"),
        ({"languages": ["en"]}, "languages travel in encryptedSelf"),
        ({"insurabilities": [{"id": "i"}]}, "travel in encryptedSelf"),
        ({"deactivationDate": 20240101}, "does not keep deactivationDate"),
        ({"publicKeysForOaepWithSha256": ["30"]}, "does not keep publicKeysForOaepWithSha256"),
        ({"tags": [{"type": "t", "code": "c", "context": "x"}]}, "context"),
    ],
)
def test_a_patient_field_medstream_cannot_keep_or_that_travels_encrypted_is_refused(
    fields: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        mapping.patient_in(ic.Patient.model_validate({"id": "p", **fields}))


def test_defaults_are_not_refused() -> None:
    patient = mapping.patient_in(ic.Patient.model_validate({"id": "p", "active": True, "deactivationReason": "none"}))
    assert patient.active and patient.note is None


# -- contacts and services -------------------------------------------------------------------------------------


def test_a_contact_is_kept_as_a_contact_and_one_data_sample_per_service() -> None:
    contact, samples = mapping.contact_in(_contact())
    assert contact.data_sample_ids == ["service-1"]
    assert contact.opening_date == 20240101120000 and contact.encrypted_self == "ZGVzY3I="
    [sample] = samples
    assert sample.batch_id == "contact-1"
    assert sample.patient_id is None and sample.secret_foreign_keys == {"patient-secret"}
    assert sample.security_metadata == contact.security_metadata
    assert sample.readers == frozenset({HCP})
    assert sample.labels == {CodingReference(id="IC-TEST|TEST|1", type="IC-TEST", code="TEST", version="1")}
    assert sample.encrypted_self == "Y29udGVudA==" and sample.content == {}


def test_a_service_alone_carries_its_contact_links_and_inside_its_contact_does_not() -> None:
    contact, samples = mapping.contact_in(_contact())
    stored = samples[0].model_copy(update={"created": 1, "modified": 2})
    alone = mapping.service_out(stored).to_icure()
    assert alone["contactId"] == "contact-1"
    assert alone["secretForeignKeys"] == ["patient-secret"]
    assert alone["securityMetadata"] == ic.SecurityMetadata.model_validate(METADATA).to_icure()
    out = mapping.contact_out(contact.model_copy(update={"rev": "1-a"}), [stored]).to_icure()
    [inside] = out["services"]
    assert {"contactId", "securityMetadata", "secretForeignKeys"}.isdisjoint(inside)
    assert out["rev"] == "1-a" and out["secretForeignKeys"] == ["patient-secret"]
    assert inside["tags"] == [TAG] and inside["encryptedSelf"] == "Y29udGVudA=="


def test_services_are_listed_in_the_contacts_order_and_unreadable_ones_left_out() -> None:
    services = [{"id": f"s{i}", "encryptedSelf": "eA=="} for i in (3, 1, 2)]
    contact, samples = mapping.contact_in(_contact(services=services))
    out = mapping.contact_out(contact, [samples[2], samples[0]])
    assert [s.id for s in out.services] == ["s3", "s2"]


@pytest.mark.parametrize(
    ("service", "named"),
    [
        ({"content": {"en": {"stringValue": "Hello world"}}}, "content travel in encryptedSelf"),
        ({"comment": "in clear"}, "comment travel in encryptedSelf"),
        ({"textIndexes": {"en": "x"}}, "does not keep textIndexes"),
        ({"contactId": "another"}, "its contactId is another"),
        ({"securityMetadata": {"secureDelegations": {}}}, "takes its contact's securityMetadata"),
        ({"secretForeignKeys": ["other"]}, "takes its contact's secretForeignKeys"),
    ],
)
def test_a_service_is_refused_when_medstream_cannot_keep_it_as_sent(service: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        mapping.contact_in(_contact(services=[{"id": "s", **service}]))


def test_a_contact_with_a_field_that_travels_encrypted_or_twice_the_same_service_is_refused() -> None:
    with pytest.raises(ValidationError, match="descr travel in encryptedSelf"):
        mapping.contact_in(_contact(descr="consultation"))
    with pytest.raises(ValidationError, match="more than once"):
        mapping.contact_in(_contact(services=[{"id": "s"}, {"id": "s"}]))


def test_clear_content_written_through_medstream_is_shown_in_icure_shape() -> None:
    sample = DataSample(id="d", content={"en": Content(string_value="Hi", number_value=2.5)})
    assert mapping.service_out(sample).to_icure()["content"] == {"en": {"stringValue": "Hi", "numberValue": 2.5}}


# -- data owners, users and exchange data ----------------------------------------------------------------------


def test_a_stub_sets_the_keys_of_the_professional_with_the_stubs_rev() -> None:
    hcp = HealthcareProfessional(id=HCP, rev="1-a", first_name="Jane", parent_id="org")
    stub = ic.CryptoActorStub(id=HCP, rev="1-a", public_keys_for_oaep_with_sha256=["3082"], parent_id="org")
    updated = mapping.stub_in(stub, hcp)
    assert updated.public_keys_for_oaep_with_sha256 == {"3082"} and updated.first_name == "Jane"
    assert updated.hc_party_keys is None  # empty maps are not stored
    assert mapping.stub_out(updated.model_copy(update={"rev": "2-b"})).to_icure() == {
        **stub.to_icure(),
        "rev": "2-b",
    }
    with pytest.raises(ValidationError, match="parentId"):
        mapping.stub_in(stub.model_copy(update={"parent_id": None}), hcp)


def test_a_user_shows_its_data_owner_and_status() -> None:
    user = User(id="u", rev="1-a", login="jane", healthcare_party_id=HCP, roles={"B", "A"}, disabled=True)
    shown = mapping.user_out(user).to_icure()
    assert shown["healthcarePartyId"] == HCP and shown["status"] == "DISABLED" and shown["roles"] == ["A", "B"]
    assert "password" not in json.dumps(shown)


def test_exchange_data_is_stored_as_given_and_only_icure_records_are_shown() -> None:
    sent = ic.ExchangeData(
        id="e",
        delegator=HCP,
        delegate=HCP,
        exchange_key={"f1": "a2V5"},
        access_control_secret={"f1": "c2VjcmV0"},
        delegator_signature={"f1": "c2ln"},
        shared_signature_key={"f1": "c2hhcmVk"},
        shared_signature="c2lnbmF0dXJl",
    )
    record = mapping.exchange_data_in(sent)
    assert mapping.is_icure_exchange_data(record)
    assert mapping.exchange_data_out(record).to_icure() == sent.to_icure()
    medstream_made = ExchangeData(id="m", delegator=HCP, delegate=HCP, exchange_key={"k": "a2V5"})
    assert not mapping.is_icure_exchange_data(medstream_made)
    with pytest.raises(ValidationError, match="deletionDate"):
        mapping.exchange_data_in(sent.model_copy(update={"deletion_date": 1}))


# -- filters and socket frames ---------------------------------------------------------------------------------


def test_the_service_tag_filter_becomes_medstreams_data_sample_filter() -> None:
    node = medstream_filter(
        {
            "$type": "ServiceByHcPartyTagCodeDateFilter",
            "healthcarePartyId": HCP,
            "tagType": "IC-TEST",
            "tagCode": "TEST",
            "startValueDate": 20240101,
            "desc": "guide",
        },
        "DataSample",
    )
    assert node == DataSampleByHealthcarePartyTagCodeDateFilter(
        healthcare_party_id=HCP, tag_type="IC-TEST", tag_code="TEST", start_value_date=20240101
    )


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"$type": "MaintenanceTaskByHcPartyAndTypeFilter", "healthcarePartyId": HCP}, "not served; served"),
        ({"$type": "PatientByHcPartyFilter", "healthcarePartyId": HCP}, "selects Patients, not DataSamples"),
        ({"$type": "ServiceByHcPartyTagCodeDateFilter", "tagType": "T"}, "needs its healthcarePartyId"),
        (
            {"$type": "ServiceByHcPartyTagCodeDateFilter", "healthcarePartyId": HCP, "patientSecretForeignKeys": []},
            "patientSecretForeignKeys",
        ),
        ({"$type": "ServiceByHcPartyTagCodeDateFilter", "healthcarePartyId": HCP, "color": "red"}, "color"),
        ({"$type": "ServiceByHcPartyTagCodeDateFilter", "healthcarePartyId": HCP, "tagCode": "T"}, "tagType"),
    ],
)
def test_a_filter_medstream_cannot_evaluate_is_refused_saying_why(data: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        medstream_filter(data, "DataSample")


def test_the_subscription_frame_cardinal_sends_is_parsed() -> None:
    parsed = parse_frame(json.dumps(FRAME))
    assert isinstance(parsed, ParsedSubscription)
    assert (parsed.entity_type, parsed.event_types, parsed.filter) == (
        "DataSample",
        frozenset({EventType.CREATE, EventType.UPDATE}),
        DataSampleByHealthcarePartyTagCodeDateFilter(healthcare_party_id=HCP, tag_type="IC-TEST", tag_code="TEST"),
    )
    assert parse_frame("pong") == PONG


def test_a_subscription_sent_again_has_the_same_identity_and_another_one_does_not() -> None:
    """A reconnect is recognised by the identity: the same entity class, event types and filter, however the
    frame orders its keys and event types, and whatever cardinal says about itself."""
    parsed = parse_frame(json.dumps(FRAME))
    filter_reordered = dict(reversed(list(FRAME["filter"]["filter"].items())))
    again = {
        "cardinalSdkVersion": "2.15.0",
        "filter": {"predicate": None, "filter": filter_reordered},
        "entityClass": FRAME["entityClass"],
        "eventTypes": list(reversed(FRAME["eventTypes"])),
    }
    assert isinstance(parsed, ParsedSubscription)
    same = parse_frame(json.dumps(again))
    assert isinstance(same, ParsedSubscription) and same.identity == parsed.identity
    others = [
        {**FRAME, "eventTypes": ["CREATE"]},
        {**FRAME, "filter": {"filter": {**FRAME["filter"]["filter"], "tagCode": "OTHER"}, "predicate": None}},
        {**FRAME, "filter": None},
    ]
    for other in others:
        different = parse_frame(json.dumps(other))
        assert isinstance(different, ParsedSubscription) and different.identity != parsed.identity, other


@pytest.mark.parametrize(
    ("frame", "named"),
    [
        ("{not json", "not a subscription"),
        ("ping", "not a subscription"),
        (
            json.dumps({**FRAME, "entityClass": "org.taktik.icure.entities.MaintenanceTask"}),
            "'MaintenanceTask' not served",
        ),
        (json.dumps({**FRAME, "entityClass": "org.taktik.icure.entities.Patient"}), "selects DataSamples"),
        (json.dumps({**FRAME, "eventTypes": []}), "eventTypes"),
        (json.dumps({**FRAME, "eventTypes": ["CREATED"]}), "eventTypes"),
        (json.dumps({**FRAME, "accessControlKeys": ["ab"]}), "accessControlKeys"),
        (json.dumps({**FRAME, "eventTypes": ["CREATE", "DELETE"]}), "not DELETE"),
        (json.dumps({**FRAME, "filter": {"filter": FRAME["filter"]["filter"], "predicate": {}}}), "predicate"),
        (json.dumps({**FRAME, "extra": 1}), "extra"),
        ("x" * 70_000, "at most"),
    ],
)
def test_a_bad_frame_is_refused_saying_why(frame: str, named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        parse_frame(frame)


def test_a_patient_subscription_may_ask_for_deletes() -> None:
    frame = {
        "eventTypes": ["CREATE", "UPDATE", "DELETE"],
        "entityClass": "org.taktik.icure.entities.Patient",
        "filter": {"filter": {"$type": "PatientByHcPartyFilter", "healthcarePartyId": HCP}, "predicate": None},
    }
    parsed = parse_frame(json.dumps(frame))
    assert isinstance(parsed, ParsedSubscription)
    assert (parsed.entity_type, parsed.event_types, parsed.filter) == (
        "Patient",
        frozenset({EventType.CREATE, EventType.UPDATE, EventType.DELETE}),
        PatientByHealthcarePartyFilter(healthcare_party_id=HCP),
    )
    # iCure deletes by an update that sets deletionDate: asking for UPDATE gets Medstream's DELETE events too.
    cardinal = parse_frame(json.dumps({**frame, "eventTypes": ["CREATE", "UPDATE"]}))
    assert isinstance(cardinal, ParsedSubscription)
    assert cardinal.event_types == frozenset({EventType.CREATE, EventType.UPDATE, EventType.DELETE})
    creates = parse_frame(json.dumps({**frame, "eventTypes": ["CREATE"]}))
    assert isinstance(creates, ParsedSubscription) and creates.event_types == frozenset({EventType.CREATE})
    with pytest.raises(ValidationError, match="needs its healthcarePartyId"):
        medstream_filter({"$type": "PatientByHcPartyFilter"}, "Patient")


def test_a_patient_written_through_medstream_is_shown_without_medstreams_own_fields() -> None:
    patient = Patient(id="p", first_name="John", blind_index={"ssin": ["AAAAAAAAAAAAAAAAAAAAAA=="]}, end_of_life=5)
    shown = mapping.patient_out(patient).to_icure()
    assert shown["firstName"] == "John"
    assert "blindIndex" not in shown and "endOfLife" not in shown and "cryptoKeys" not in shown
