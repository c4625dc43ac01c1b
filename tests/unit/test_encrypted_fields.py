"""The encrypted-field configuration: every name is a field of its kind, and what a server that requires
encryption refuses (fields in clear, filters reading encrypted fields, naming the blind-index filter to use)."""

from __future__ import annotations

import pytest

from medstream.errors import ValidationError
from medstream.filters import (
    DataSampleByHealthcarePartyBlindIndexFilter,
    DataSampleByHealthcarePartyIdentifiersFilter,
    DataSampleByHealthcarePartyTagCodeDateFilter,
    HealthcareElementByHealthcarePartyIdentifiersFilter,
    HealthcareProfessionalByNameFilter,
    IntersectionFilter,
    PatientByHealthcarePartyBlindIndexFilter,
    PatientByHealthcarePartyFilter,
    PatientByHealthcarePartyNameContainsFuzzyFilter,
    PatientByHealthcarePartySsinsFilter,
)
from medstream.filters.fields import fields_read, refuse_encrypted_fields
from medstream.model import ENTITY_KINDS, Content, DataSample, HealthcareElement, Identifier, Patient
from medstream.model.blind_index import BLIND_INDEXED, blind_index_field_for
from medstream.model.encrypted_fields import ENCRYPTED_FIELDS, clear_encrypted_fields, refuse_clear_fields

TOKEN = "q7DKMqwK7rdGBb2/O1z6dw=="


def test_every_kind_has_an_entry_and_every_name_is_a_top_level_wire_field_of_its_kind() -> None:
    assert set(ENCRYPTED_FIELDS) == {kind.name for kind in ENTITY_KINDS}
    for kind in ENTITY_KINDS:
        wire_names = {field.alias or name for name, field in kind.model.model_fields.items()}
        assert set(ENCRYPTED_FIELDS[kind.name]) <= wire_names, kind.name
    assert "dateOfBirth" not in ENCRYPTED_FIELDS["Patient"] and "gender" not in ENCRYPTED_FIELDS["Patient"]


def test_blind_indexed_fields_index_encrypted_fields_of_their_kind() -> None:
    assert {"ssin", "identifiers", "firstName", "lastName", "names"} <= set(ENCRYPTED_FIELDS["Patient"])
    assert "identifiers" in ENCRYPTED_FIELDS["DataSample"] and "identifiers" in ENCRYPTED_FIELDS["HealthcareElement"]
    for kind, fields in BLIND_INDEXED.items():
        for field in fields.values():
            assert set(field.sources) <= set(ENCRYPTED_FIELDS[kind]), kind
    assert blind_index_field_for("Patient", "maidenName") == "names"
    assert blind_index_field_for("Patient", "ssin") == "ssin"
    assert blind_index_field_for("Patient", "gender") is None


def test_non_empty_encrypted_fields_in_clear_are_named_and_empty_ones_are_not() -> None:
    assert clear_encrypted_fields(Patient(first_name="John", gender="male", languages=[])) == ["firstName"]
    assert clear_encrypted_fields(DataSample(comment="", value_date=20240101)) == []
    sample = DataSample(content={"en": Content(string_value="120")}, encrypted_self="AQID")
    assert clear_encrypted_fields(sample) == ["content"]


def test_a_batch_with_one_entity_in_clear_is_refused_naming_it() -> None:
    refuse_clear_fields([Patient(date_of_birth=19800101), HealthcareElement(patient_id="p")])
    with pytest.raises(ValidationError, match=r"HealthcareElement he-1: description, note"):
        refuse_clear_fields([Patient(gender="male"), HealthcareElement(id="he-1", description="Asthma", note="x")])
    with pytest.raises(ValidationError, match=r"Patient \[0\]: ssin, identifiers"):
        refuse_clear_fields([Patient(ssin="1", identifiers=[Identifier(value="x")])])
    refuse_clear_fields([Patient(blind_index={"ssin": [TOKEN]})])


def test_filters_reading_encrypted_fields_are_refused_and_the_others_pass() -> None:
    fuzzy = PatientByHealthcarePartyNameContainsFuzzyFilter(healthcare_party_id="h", search_string="john")
    assert {"firstName", "lastName"} <= fields_read(fuzzy)
    with pytest.raises(ValidationError, match="firstName"):
        refuse_encrypted_fields(fuzzy)
    with pytest.raises(ValidationError, match="lastName"):
        refuse_encrypted_fields(
            IntersectionFilter(filters=(PatientByHealthcarePartyFilter(healthcare_party_id="h"), fuzzy))
        )
    with pytest.raises(ValidationError, match="field 'names'"):
        refuse_encrypted_fields(fuzzy)
    for allowed in (
        PatientByHealthcarePartyBlindIndexFilter(healthcare_party_id="h", field="ssin", tokens=frozenset({TOKEN})),
        DataSampleByHealthcarePartyBlindIndexFilter(healthcare_party_id="h", field="identifiers", tokens={TOKEN}),
        DataSampleByHealthcarePartyTagCodeDateFilter(healthcare_party_id="h", tag_type="T", start_value_date=1),
        HealthcareProfessionalByNameFilter(search_string="house"),  # professionals' names stay in clear
    ):
        refuse_encrypted_fields(allowed)


def test_filters_on_ssin_and_identifiers_are_refused_naming_the_field_and_the_blind_index_filter() -> None:
    by_ssin = PatientByHealthcarePartySsinsFilter(healthcare_party_id="h", ssins=frozenset({"1"}))
    with pytest.raises(
        ValidationError, match=r"encrypted field\(s\) ssin; .*PatientByHealthcarePartyBlindIndexFilter.*field 'ssin'"
    ):
        refuse_encrypted_fields(by_ssin)
    identifiers = (Identifier(system="s", value="v"),)
    for node, blind in (
        (DataSampleByHealthcarePartyIdentifiersFilter, "DataSampleByHealthcarePartyBlindIndexFilter"),
        (HealthcareElementByHealthcarePartyIdentifiersFilter, "HealthcareElementByHealthcarePartyBlindIndexFilter"),
    ):
        with pytest.raises(ValidationError, match=rf"identifiers; .*{blind}.*field 'identifiers'"):
            refuse_encrypted_fields(node(healthcare_party_id="h", identifiers=identifiers))
    assert fields_read(
        PatientByHealthcarePartyBlindIndexFilter(healthcare_party_id="h", field="names", tokens=frozenset({TOKEN}))
    ) == {"blindIndex", "securityMetadata"}


def test_a_filter_is_checked_against_the_encrypted_fields_given_with_the_reason_given() -> None:
    by_ssin = PatientByHealthcarePartySsinsFilter(healthcare_party_id="h", ssins=frozenset({"1"}))
    refuse_encrypted_fields(by_ssin, ("note",))  # a configuration where the ssin travels in clear
    with pytest.raises(
        ValidationError, match=r"^not sent: a Patient filter cannot read the encrypted field\(s\) ssin;"
    ):
        refuse_encrypted_fields(by_ssin, ("ssin", "note"), reason="not sent")
