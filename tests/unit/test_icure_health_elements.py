"""iCure's health elements, sans I/O: the shape, the mapping to Medstream's HealthcareElement and back, the
filters cardinal sends for them and their subscription frames."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest

from medstream.errors import ValidationError
from medstream.events.types import EventType
from medstream.filters.nodes import (
    HealthcareElementByHealthcarePartyFilter,
    HealthcareElementByHealthcarePartyLabelCodeFilter,
    HealthcareElementByIdsFilter,
)
from medstream.icure import mapping
from medstream.icure import shapes as ic
from medstream.icure.encryption import ICURE_ENCRYPTED_FIELDS, refuse_clear_fields
from medstream.icure.filters import medstream_filter
from medstream.icure.socket import ParsedSubscription, parse_frame
from medstream.model import CodingReference, HealthcareElement
from tests.unit.test_icure import HCP, METADATA, TAG

# What cardinal-sdk 2.14.0 sends: the subscription frames of HealthElementFilters.all_health_elements_for_self()
# and .by_tag_for_self("IC-TEST", "TEST"), and the health element it creates (empty fields as it sends them).
FOR_SELF: dict[str, Any] = {
    "eventTypes": ["CREATE", "UPDATE"],
    "entityClass": "org.taktik.icure.entities.HealthElement",
    "filter": {"filter": {"$type": "HealthElementByHcPartyFilter", "hcpId": HCP}, "predicate": None},
    "accessControlKeys": None,
    "useCardinalModelSerialization": True,
    "cardinalSdkVersion": "2.14.0",
}
BY_TAG_FILTER = {"$type": "HealthElementByHcPartyTagCodeFilter", "healthcarePartyId": HCP, "tagType": "IC-TEST",
                 "tagCode": "TEST"}  # fmt: skip
SENT: dict[str, Any] = {
    "id": "he-1",
    "identifiers": [{"system": "local", "value": "42"}],
    "tags": [TAG],
    "codes": [],
    "healthElementId": "he-1",
    "openingDate": 20240101,
    "notes": [],
    "relevant": True,
    "plansOfAction": [],
    "episodes": [],
    "careTeam": [],
    "qualifiedLinks": [],
    "asserters": [],
    "secretForeignKeys": ["patient-secret"],
    "cryptedForeignKeys": {HCP: [{"owner": HCP, "delegatedTo": HCP, "key": "k", "tags": []}]},
    "delegations": {},
    "encryptionKeys": {},
    "encryptedSelf": "bm90ZQ==",
    "securityMetadata": METADATA,
}


def test_a_health_element_maps_to_a_healthcare_element_and_back() -> None:
    sent = ic.HealthElement.model_validate(SENT)
    element = mapping.health_element_in(sent)
    assert element.id == "he-1" and element.healthcare_element_id == "he-1"
    assert element.labels == {CodingReference(id="IC-TEST|TEST|1", type="IC-TEST", code="TEST", version="1")}
    assert [(i.system, i.value) for i in element.identifiers] == [("local", "42")]
    assert element.opening_date == 20240101 and element.relevant
    assert element.patient_id is None and element.secret_foreign_keys == {"patient-secret"}
    assert element.crypted_foreign_keys is not None and element.crypted_foreign_keys[HCP][0].key == "k"
    assert element.encrypted_self == "bm90ZQ==" and element.description is None and element.note is None
    assert element.readers == frozenset({HCP})
    back = mapping.health_element_out(element.model_copy(update={"rev": "1-a", "created": 5, "modified": 6}))
    # The same JSON, with the server's fields; the empty fields cardinal 2.x alone has are left out.
    expected = {k: v for k, v in SENT.items() if k not in ("qualifiedLinks", "asserters")}
    assert back.to_icure() == {**ic.HealthElement.model_validate(expected).to_icure(), "rev": "1-a", "created": 5,
                               "modified": 6}  # fmt: skip
    assert "qualifiedLinks" not in back.to_icure() and "asserters" not in back.to_icure()


def test_a_deleted_healthcare_element_shows_its_deletion_date_and_not_medstreams_own_fields() -> None:
    element = HealthcareElement(
        id="he", patient_id="p", medical_location_id="m", status=3, deletion_date=7, description="flu", relevant=False
    )
    shown = mapping.health_element_out(element).to_icure()
    assert shown["deletionDate"] == 7 and shown["descr"] == "flu" and shown["relevant"] is False
    assert {"patientId", "medicalLocationId", "status", "description", "blindIndex"}.isdisjoint(shown)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"note": "Diabetes"}, "note travel in encryptedSelf"),
        ({"descr": "Diabetes"}, "descr travel in encryptedSelf"),
        ({"notes": [{"markdown": {"en": "x"}}]}, "notes travel in encryptedSelf"),
        ({"careTeam": [{"id": "c"}]}, "careTeam travel in encryptedSelf"),
        ({"episodes": [{"id": "e"}]}, "does not keep episodes"),
        ({"plansOfAction": [{"id": "p"}]}, "does not keep plansOfAction"),
        ({"laterality": "left", "idService": "s"}, "does not keep idService, laterality"),
        ({"qualifiedLinks": [{"linkType": "x"}]}, "does not keep qualifiedLinks"),
        ({"asserters": [{"id": "a"}]}, "does not keep asserters"),
        ({"idOpeningContact": "c", "idClosingContact": "d"}, "idOpeningContact, idClosingContact"),
        ({"tags": [{"type": "t", "code": "c", "context": "x"}]}, "context"),
    ],
)
def test_a_health_element_field_medstream_cannot_keep_or_that_travels_encrypted_is_refused(
    fields: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        mapping.health_element_in(ic.HealthElement.model_validate({"id": "he", **fields}))


def test_the_shape_refuses_fields_cardinal_does_not_have() -> None:
    with pytest.raises(pydantic.ValidationError, match="patientId"):
        ic.HealthElement.model_validate({"id": "he", "patientId": "p"})
    with pytest.raises(pydantic.ValidationError, match="status"):
        ic.HealthElement.model_validate({"id": "he", "status": 0})


def test_a_server_that_requires_encryption_names_the_health_element_fields_in_icures_names() -> None:
    assert ICURE_ENCRYPTED_FIELDS["HealthElement"] == ("descr", "note", "identifiers")
    element = HealthcareElement(id="he", identifiers=[{"system": "s", "value": "v"}])
    with pytest.raises(ValidationError, match=r"HealthElement he: identifiers.*health_element=\[") as raised:
        refuse_clear_fields([element])
    assert "icureEncryptedFields['HealthElement']" in str(raised.value)


def test_the_health_element_filters_become_medstreams_nodes() -> None:
    assert medstream_filter(FOR_SELF["filter"]["filter"], "HealthcareElement") == (
        HealthcareElementByHealthcarePartyFilter(hcp_id=HCP)
    )
    assert medstream_filter(BY_TAG_FILTER, "HealthcareElement") == HealthcareElementByHealthcarePartyLabelCodeFilter(
        healthcare_party_id=HCP, tag_type="IC-TEST", tag_code="TEST"
    )
    by_code = {"$type": "HealthElementByHcPartyTagCodeFilter", "healthcarePartyId": HCP, "codeType": "ICPC"}
    assert medstream_filter(by_code, "HealthcareElement") == HealthcareElementByHealthcarePartyLabelCodeFilter(
        healthcare_party_id=HCP, code_type="ICPC"
    )
    by_ids = {"$type": "HealthElementByIdsFilter", "ids": ["b", "a", "b"]}
    assert medstream_filter(by_ids, "HealthcareElement") == HealthcareElementByIdsFilter(ids={"a", "b"})


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"$type": "HealthElementByHcPartyFilter"}, "hcpId"),
        ({"$type": "HealthElementByHcPartyFilter", "hcpId": ""}, "hcpId"),
        ({"$type": "HealthElementByHcPartyFilter", "healthcarePartyId": HCP}, "healthcarePartyId"),
        ({**BY_TAG_FILTER, "status": 1}, "status"),
        ({**BY_TAG_FILTER, "tagType": None}, "tagType"),
        ({"$type": "HealthElementByHcPartyTagCodeFilter", "healthcarePartyId": HCP}, "tagType or codeType"),
        ({"$type": "HealthElementByHcPartyIdentifiersFilter", "hcPartyId": HCP}, "identifiers is encrypted"),
        ({"$type": "HealthElementByDataOwnerPatientOpeningDate", "healthcarePartyId": HCP}, "not served; served"),
        ({"$type": "PatientByHcPartyFilter", "healthcarePartyId": HCP}, "selects Patients, not HealthcareElements"),
    ],
)
def test_a_health_element_filter_medstream_cannot_evaluate_is_refused_saying_why(
    data: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        medstream_filter(data, "HealthcareElement")


def test_the_subscription_frames_cardinal_sends_are_parsed_with_deletes() -> None:
    """cardinal asks for CREATE and UPDATE; iCure deletes by an update that sets deletionDate, so the subscription
    receives Medstream's DELETE events too (the health element with its deletionDate)."""
    with_deletes = frozenset({EventType.CREATE, EventType.UPDATE, EventType.DELETE})
    for_self = parse_frame(json.dumps(FOR_SELF))
    assert isinstance(for_self, ParsedSubscription)
    assert (for_self.entity_type, for_self.event_types, for_self.filter) == (
        "HealthcareElement",
        with_deletes,
        HealthcareElementByHealthcarePartyFilter(hcp_id=HCP),
    )
    by_tag = parse_frame(json.dumps({**FOR_SELF, "filter": {"filter": BY_TAG_FILTER, "predicate": None}}))
    assert isinstance(by_tag, ParsedSubscription)
    assert (by_tag.entity_type, by_tag.event_types, by_tag.filter) == (
        "HealthcareElement",
        with_deletes,
        HealthcareElementByHealthcarePartyLabelCodeFilter(healthcare_party_id=HCP, tag_type="IC-TEST", tag_code="TEST"),
    )
    assert for_self.identity != by_tag.identity, "another filter: another subscription"
    creates = parse_frame(json.dumps({**FOR_SELF, "eventTypes": ["CREATE"]}))
    assert isinstance(creates, ParsedSubscription) and creates.event_types == frozenset({EventType.CREATE})
    with pytest.raises(ValidationError, match="selects HealthcareElements, not DataSamples"):
        parse_frame(json.dumps({**FOR_SELF, "entityClass": "org.taktik.icure.entities.embed.Service"}))
