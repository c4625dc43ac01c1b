"""The encrypted-field configuration: every name is a field of its kind, and what a server that requires
encryption refuses (fields in clear, filters reading encrypted fields)."""

from __future__ import annotations

import pytest

from medstream.errors import ValidationError
from medstream.filters import (
    DataSampleByHealthcarePartyTagCodeDateFilter,
    HealthcareProfessionalByNameFilter,
    IntersectionFilter,
    PatientByHealthcarePartyFilter,
    PatientByHealthcarePartyNameContainsFuzzyFilter,
    PatientByHealthcarePartySsinsFilter,
)
from medstream.filters.fields import fields_read, refuse_encrypted_fields
from medstream.model import ENTITY_KINDS, Content, DataSample, HealthcareElement, Patient
from medstream.model.encrypted_fields import ENCRYPTED_FIELDS, clear_encrypted_fields, refuse_clear_fields


def test_every_kind_has_an_entry_and_every_name_is_a_top_level_wire_field_of_its_kind() -> None:
    assert set(ENCRYPTED_FIELDS) == {kind.name for kind in ENTITY_KINDS}
    for kind in ENTITY_KINDS:
        wire_names = {field.alias or name for name, field in kind.model.model_fields.items()}
        assert set(ENCRYPTED_FIELDS[kind.name]) <= wire_names, kind.name
    assert "ssin" not in ENCRYPTED_FIELDS["Patient"] and "dateOfBirth" not in ENCRYPTED_FIELDS["Patient"]


def test_non_empty_encrypted_fields_in_clear_are_named_and_empty_ones_are_not() -> None:
    assert clear_encrypted_fields(Patient(first_name="John", ssin="123", languages=[])) == ["firstName"]
    assert clear_encrypted_fields(DataSample(comment="", value_date=20240101)) == []
    sample = DataSample(content={"en": Content(string_value="120")}, encrypted_self="AQID")
    assert clear_encrypted_fields(sample) == ["content"]


def test_a_batch_with_one_entity_in_clear_is_refused_naming_it() -> None:
    refuse_clear_fields([Patient(ssin="1"), HealthcareElement(patient_id="p")])
    with pytest.raises(ValidationError, match=r"HealthcareElement he-1: description, note"):
        refuse_clear_fields([Patient(ssin="1"), HealthcareElement(id="he-1", description="Asthma", note="x")])


def test_filters_reading_encrypted_fields_are_refused_and_the_others_pass() -> None:
    fuzzy = PatientByHealthcarePartyNameContainsFuzzyFilter(healthcare_party_id="h", search_string="john")
    assert {"firstName", "lastName"} <= fields_read(fuzzy)
    with pytest.raises(ValidationError, match="firstName"):
        refuse_encrypted_fields(fuzzy)
    with pytest.raises(ValidationError, match="lastName"):
        refuse_encrypted_fields(
            IntersectionFilter(filters=(PatientByHealthcarePartyFilter(healthcare_party_id="h"), fuzzy))
        )
    for allowed in (
        PatientByHealthcarePartySsinsFilter(healthcare_party_id="h", ssins=frozenset({"1"})),
        DataSampleByHealthcarePartyTagCodeDateFilter(healthcare_party_id="h", tag_type="T", start_value_date=1),
        HealthcareProfessionalByNameFilter(search_string="house"),  # professionals' names stay in clear
    ):
        refuse_encrypted_fields(allowed)
