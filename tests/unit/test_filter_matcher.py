"""matches(): every node on hand-made entities, and the edge cases the SQL compiler must agree with."""

from __future__ import annotations

import timeit

import pytest

from medstream.delegations import server_metadata
from medstream.filters import (
    AllHealthcareProfessionalsFilter,
    AllMedicalDevicesFilter,
    AllUsersFilter,
    ComplementFilter,
    DataSampleByHealthcarePartyFilter,
    DataSampleByHealthcarePartyHealthcareElementIdsFilter,
    DataSampleByHealthcarePartyIdentifiersFilter,
    DataSampleByHealthcarePartyPatientFilter,
    DataSampleByHealthcarePartyTagCodeDateFilter,
    DataSampleByIdsFilter,
    Filter,
    HealthcareElementByHealthcarePartyFilter,
    HealthcareElementByHealthcarePartyIdentifiersFilter,
    HealthcareElementByHealthcarePartyLabelCodeFilter,
    HealthcareElementByHealthcarePartyPatientFilter,
    HealthcareElementByIdsFilter,
    HealthcareProfessionalByIdsFilter,
    HealthcareProfessionalByLabelCodeFilter,
    HealthcareProfessionalByNameFilter,
    IntersectionFilter,
    MedicalDeviceByIdsFilter,
    MedicalDeviceByLabelCodeFilter,
    NotificationsAfterDateFilter,
    NotificationsByHcPartyAndTypeFilter,
    NotificationsByIdFilter,
    PatientByHealthcarePartyDateOfBirthBetweenFilter,
    PatientByHealthcarePartyFilter,
    PatientByHealthcarePartyGenderEducationProfessionFilter,
    PatientByHealthcarePartyIdentifiersFilter,
    PatientByHealthcarePartyNameContainsFuzzyFilter,
    PatientByHealthcarePartySsinsFilter,
    PatientByIdsFilter,
    UnionFilter,
    UserByIdsFilter,
    UsersByPatientIdFilter,
    matches,
)
from medstream.model import (
    CodingReference,
    DataSample,
    Entity,
    Gender,
    HealthcareElement,
    HealthcareProfessional,
    Identifier,
    MedicalDevice,
    Notification,
    NotificationType,
    Patient,
    PersonName,
    SecurityMetadata,
    User,
)

HCP = "hcp-1"


def shared(*readers: str) -> SecurityMetadata:
    return server_metadata(HCP, frozenset(readers))


def label(type_: str | None, code: str | None) -> CodingReference:
    return CodingReference(type=type_, code=code)


SAMPLE = DataSample(
    id="ds-1",
    patient_id="pat-1",
    value_date=20240131143000,
    labels={label("IC-TAGS", "bp"), label("ICD", None)},
    codes={label("LOINC", "8302-2")},
    identifiers=[Identifier(system="urn:lab", value="A1"), Identifier(value="naked")],
    healthcare_element_ids={"he-1", "he-2"},
    security_metadata=shared(HCP, "hcp-2"),
)
PATIENT = Patient(
    id="pat-1",
    first_name="Élodie",
    last_name="Åström",
    maiden_name="Nguyễn",
    names=[PersonName(first_names=["Zoë"], last_name="O'Brien", text="Mme 100% Ü_ber")],
    gender=Gender.female,
    education="university",
    profession="nurse",
    ssin="85073100123",
    date_of_birth=19850731,
    identifiers=[Identifier(system="urn:ssin", value="85073100123")],
    security_metadata=shared(HCP, "pat-1"),
)
ELEMENT = HealthcareElement(
    id="he-1",
    patient_id="pat-1",
    labels={label("ICD", "I10")},
    identifiers=[Identifier(system="urn:he", value="7")],
    security_metadata=shared(HCP),
)
PROFESSIONAL = HealthcareProfessional(
    id=HCP,
    name="Cabinet Médical",
    first_name="Björn",
    last_name="Müller",
    names=[PersonName(first_names=["Bjorn"], last_name="Mueller")],
    labels={label("SPECIALITY", "cardiology")},
    codes={label("CD-HCPARTY", "persphysician")},
    security_metadata=shared(HCP),
)
DEVICE = MedicalDevice(id="dev-1", labels={label("KIND", "scale")}, security_metadata=shared(HCP))
NOTIFICATION = Notification(
    id="note-1", type=NotificationType.KEY_PAIR_UPDATE, created=1_700_000_000_000, security_metadata=shared(HCP)
)
USER = User(id="user-1", login="elodie", patient_id="pat-1", security_metadata=shared("pat-1"))

CASES: list[tuple[Filter, Entity, bool]] = [
    # DataSample
    (DataSampleByIdsFilter(ids=frozenset({"ds-1", "x"})), SAMPLE, True),
    (DataSampleByIdsFilter(ids=frozenset({"x"})), SAMPLE, False),
    (DataSampleByHealthcarePartyFilter(hcp_id="hcp-2"), SAMPLE, True),
    (DataSampleByHealthcarePartyFilter(hcp_id="hcp-3"), SAMPLE, False),
    (
        DataSampleByHealthcarePartyIdentifiersFilter(
            healthcare_party_id=HCP, identifiers=(Identifier(system="urn:lab", value="A1"),)
        ),
        SAMPLE,
        True,
    ),
    (
        DataSampleByHealthcarePartyIdentifiersFilter(
            healthcare_party_id=HCP, identifiers=(Identifier(system="urn:other", value="A1"),)
        ),
        SAMPLE,
        False,
    ),
    # A missing system is "" on both sides.
    (
        DataSampleByHealthcarePartyIdentifiersFilter(healthcare_party_id=HCP, identifiers=(Identifier(value="naked"),)),
        SAMPLE,
        True,
    ),
    (DataSampleByHealthcarePartyTagCodeDateFilter(healthcare_party_id=HCP, tag_type="IC-TAGS"), SAMPLE, True),
    (
        DataSampleByHealthcarePartyTagCodeDateFilter(healthcare_party_id=HCP, tag_type="IC-TAGS", tag_code="bp"),
        SAMPLE,
        True,
    ),
    (
        DataSampleByHealthcarePartyTagCodeDateFilter(healthcare_party_id=HCP, tag_type="IC-TAGS", tag_code="weight"),
        SAMPLE,
        False,
    ),
    # A label without a code matches a type-only filter, but no filter naming a code.
    (DataSampleByHealthcarePartyTagCodeDateFilter(healthcare_party_id=HCP, tag_type="ICD"), SAMPLE, True),
    (
        DataSampleByHealthcarePartyTagCodeDateFilter(healthcare_party_id=HCP, tag_type="ICD", tag_code="I10"),
        SAMPLE,
        False,
    ),
    # The label part looks at labels only, the code part at codes only; both given: both must hold.
    (DataSampleByHealthcarePartyTagCodeDateFilter(healthcare_party_id=HCP, tag_type="LOINC"), SAMPLE, False),
    (DataSampleByHealthcarePartyTagCodeDateFilter(healthcare_party_id=HCP, code_type="LOINC"), SAMPLE, True),
    (
        DataSampleByHealthcarePartyTagCodeDateFilter(
            healthcare_party_id=HCP, tag_type="IC-TAGS", tag_code="bp", code_type="LOINC", code_code="8302-2"
        ),
        SAMPLE,
        True,
    ),
    (
        DataSampleByHealthcarePartyTagCodeDateFilter(
            healthcare_party_id=HCP, tag_type="IC-TAGS", code_type="LOINC", code_code="29463-7"
        ),
        SAMPLE,
        False,
    ),
    (
        DataSampleByHealthcarePartyTagCodeDateFilter(
            healthcare_party_id="hcp-3", tag_type="IC-TAGS", tag_code="bp", descending=True
        ),
        SAMPLE,
        False,
    ),
    (DataSampleByHealthcarePartyPatientFilter(healthcare_party_id=HCP, patient_ids=frozenset({"pat-1"})), SAMPLE, True),
    (
        DataSampleByHealthcarePartyPatientFilter(healthcare_party_id=HCP, patient_ids=frozenset({"pat-2"})),
        SAMPLE,
        False,
    ),
    (
        DataSampleByHealthcarePartyHealthcareElementIdsFilter(
            healthcare_party_id=HCP, healthcare_element_ids=frozenset({"he-2", "he-9"})
        ),
        SAMPLE,
        True,
    ),
    (
        DataSampleByHealthcarePartyHealthcareElementIdsFilter(
            healthcare_party_id=HCP, healthcare_element_ids=frozenset({"he-9"})
        ),
        SAMPLE,
        False,
    ),
    # Patient
    (PatientByIdsFilter(ids=frozenset({"pat-1"})), PATIENT, True),
    (PatientByHealthcarePartyFilter(healthcare_party_id="pat-1"), PATIENT, True),
    (PatientByHealthcarePartyFilter(healthcare_party_id="hcp-2"), PATIENT, False),
    (
        PatientByHealthcarePartyIdentifiersFilter(
            healthcare_party_id=HCP, identifiers=(Identifier(system="urn:ssin", value="85073100123"),)
        ),
        PATIENT,
        True,
    ),
    (
        PatientByHealthcarePartyGenderEducationProfessionFilter(healthcare_party_id=HCP, gender=Gender.female),
        PATIENT,
        True,
    ),
    (
        PatientByHealthcarePartyGenderEducationProfessionFilter(
            healthcare_party_id=HCP, gender=Gender.female, education="university", profession="nurse"
        ),
        PATIENT,
        True,
    ),
    (
        PatientByHealthcarePartyGenderEducationProfessionFilter(
            healthcare_party_id=HCP, gender=Gender.female, profession="teacher"
        ),
        PATIENT,
        False,
    ),
    (
        PatientByHealthcarePartyGenderEducationProfessionFilter(healthcare_party_id=HCP, gender=Gender.male),
        PATIENT,
        False,
    ),
    (PatientByHealthcarePartySsinsFilter(healthcare_party_id=HCP, ssins=frozenset({"85073100123"})), PATIENT, True),
    (PatientByHealthcarePartySsinsFilter(healthcare_party_id=HCP, ssins=frozenset({"1"})), PATIENT, False),
    (
        PatientByHealthcarePartyDateOfBirthBetweenFilter(
            healthcare_party_id=HCP, min_date_of_birth=19850731, max_date_of_birth=19850731
        ),
        PATIENT,
        True,
    ),
    (
        PatientByHealthcarePartyDateOfBirthBetweenFilter(healthcare_party_id=HCP, min_date_of_birth=19850801),
        PATIENT,
        False,
    ),
    (PatientByHealthcarePartyDateOfBirthBetweenFilter(healthcare_party_id=HCP), PATIENT, True),
    # HealthcareElement
    (HealthcareElementByIdsFilter(ids=frozenset({"he-1"})), ELEMENT, True),
    (HealthcareElementByHealthcarePartyFilter(hcp_id=HCP), ELEMENT, True),
    (
        HealthcareElementByHealthcarePartyIdentifiersFilter(
            healthcare_party_id=HCP, identifiers=(Identifier(system="urn:he", value="7"),)
        ),
        ELEMENT,
        True,
    ),
    (HealthcareElementByHealthcarePartyLabelCodeFilter(healthcare_party_id=HCP, tag_type="ICD"), ELEMENT, True),
    (HealthcareElementByHealthcarePartyLabelCodeFilter(healthcare_party_id=HCP, code_type="ICD"), ELEMENT, False),
    (
        HealthcareElementByHealthcarePartyPatientFilter(healthcare_party_id=HCP, patient_ids=frozenset({"pat-1"})),
        ELEMENT,
        True,
    ),
    # HealthcareProfessional
    (HealthcareProfessionalByIdsFilter(ids=frozenset({HCP})), PROFESSIONAL, True),
    (AllHealthcareProfessionalsFilter(), PROFESSIONAL, True),
    (HealthcareProfessionalByLabelCodeFilter(label_type="SPECIALITY", label_code="cardiology"), PROFESSIONAL, True),
    (HealthcareProfessionalByLabelCodeFilter(code_type="CD-HCPARTY"), PROFESSIONAL, True),
    (HealthcareProfessionalByLabelCodeFilter(label_type="CD-HCPARTY"), PROFESSIONAL, False),
    (HealthcareProfessionalByNameFilter(search_string="MULLER"), PROFESSIONAL, True),
    (HealthcareProfessionalByNameFilter(search_string="cabinet medical"), PROFESSIONAL, True),
    (HealthcareProfessionalByNameFilter(search_string="mueller"), PROFESSIONAL, True),
    (HealthcareProfessionalByNameFilter(search_string="schmidt"), PROFESSIONAL, False),
    # MedicalDevice
    (MedicalDeviceByIdsFilter(ids=frozenset({"dev-1"})), DEVICE, True),
    (AllMedicalDevicesFilter(), DEVICE, True),
    (MedicalDeviceByLabelCodeFilter(label_type="KIND", label_code="scale"), DEVICE, True),
    (MedicalDeviceByLabelCodeFilter(label_type="KIND", label_code="glucometer"), DEVICE, False),
    # Notification
    (NotificationsByIdFilter(ids=frozenset({"note-1"})), NOTIFICATION, True),
    (
        NotificationsByHcPartyAndTypeFilter(healthcare_party_id=HCP, type=NotificationType.KEY_PAIR_UPDATE),
        NOTIFICATION,
        True,
    ),
    (NotificationsByHcPartyAndTypeFilter(healthcare_party_id=HCP, type=NotificationType.OTHER), NOTIFICATION, False),
    # User
    (UserByIdsFilter(ids=frozenset({"user-1"})), USER, True),
    (UsersByPatientIdFilter(patient_id="pat-1"), USER, True),
    (UsersByPatientIdFilter(patient_id="pat-2"), USER, False),
    (AllUsersFilter(), USER, True),
]


@pytest.mark.parametrize(("filter", "entity", "expected"), CASES, ids=lambda v: type(v).__name__)
def test_each_node_matches_what_it_names(filter: Filter, entity: Entity, expected: bool) -> None:
    assert matches(filter, entity) is expected


@pytest.mark.parametrize(
    "search",
    ["elodie astrom", "ÉLODIE", "Elodie  Åström", "astrom nguyen", "zoe", "o'brien", "100%", "u_ber", "ström"],
)
def test_unicode_names_are_found_whatever_their_accents_and_case(search: str) -> None:
    assert matches(
        PatientByHealthcarePartyNameContainsFuzzyFilter(healthcare_party_id=HCP, search_string=search), PATIENT
    )


@pytest.mark.parametrize("search", ["elodieastrom", "10%0", "u%ber", "uxber", "astrom elodie"])
def test_name_search_is_a_plain_substring_with_no_wildcards(search: str) -> None:
    node = PatientByHealthcarePartyNameContainsFuzzyFilter(healthcare_party_id=HCP, search_string=search)
    assert not matches(node, PATIENT)


# --- edge cases ---------------------------------------------------------------------------------------------


def test_missing_fields_never_match() -> None:
    bare = DataSample(id="ds-bare")
    assert not matches(DataSampleByHealthcarePartyFilter(hcp_id=HCP), bare)  # no security_metadata
    assert not matches(
        DataSampleByHealthcarePartyPatientFilter(healthcare_party_id=HCP, patient_ids=frozenset({""})), bare
    )
    dated = DataSampleByHealthcarePartyTagCodeDateFilter(healthcare_party_id=HCP, tag_type="T", start_value_date=0)
    assert not matches(dated, bare.model_copy(update={"labels": {label("T", None)}, "security_metadata": shared(HCP)}))
    nameless = Patient(id="p", security_metadata=shared(HCP))
    assert not matches(
        PatientByHealthcarePartyNameContainsFuzzyFilter(healthcare_party_id=HCP, search_string="a"), nameless
    )
    genderless = PatientByHealthcarePartyGenderEducationProfessionFilter(healthcare_party_id=HCP, gender=Gender.unknown)
    assert not matches(genderless, nameless)
    assert not matches(
        PatientByHealthcarePartyDateOfBirthBetweenFilter(healthcare_party_id=HCP, max_date_of_birth=1), nameless
    )
    assert not matches(DataSampleByIdsFilter(ids=frozenset({"x"})), DataSample())  # no id at all
    assert not matches(UsersByPatientIdFilter(patient_id="p"), User(id="u"))


@pytest.mark.parametrize(
    "filter",
    [
        DataSampleByIdsFilter(ids=frozenset()),
        DataSampleByHealthcarePartyIdentifiersFilter(healthcare_party_id=HCP, identifiers=()),
        DataSampleByHealthcarePartyPatientFilter(healthcare_party_id=HCP, patient_ids=frozenset()),
        DataSampleByHealthcarePartyHealthcareElementIdsFilter(
            healthcare_party_id=HCP, healthcare_element_ids=frozenset()
        ),
    ],
    ids=lambda f: type(f).__name__,
)
def test_empty_sets_match_nothing(filter: Filter) -> None:
    assert not matches(filter, SAMPLE)
    assert matches(ComplementFilter(super_set=DataSampleByHealthcarePartyFilter(hcp_id=HCP), sub_set=filter), SAMPLE)


def test_deleted_entities_match_as_they_did_alive() -> None:
    tombstone = SAMPLE.model_copy(update={"deletion_date": 1_700_000_000_000})
    assert matches(DataSampleByIdsFilter(ids=frozenset({"ds-1"})), tombstone)
    assert matches(DataSampleByHealthcarePartyFilter(hcp_id=HCP), tombstone)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (20240131143000, 20240131143000, True),
        (20240131143000, None, True),
        (None, 20240131143000, True),
        (20240131143001, None, False),
        (None, 20240131142959, False),
        (20240101000000, 20241231235959, True),
    ],
)
def test_value_date_bounds_are_inclusive(start: int | None, end: int | None, expected: bool) -> None:
    node = DataSampleByHealthcarePartyTagCodeDateFilter(
        healthcare_party_id=HCP, tag_type="IC-TAGS", start_value_date=start, end_value_date=end
    )
    assert matches(node, SAMPLE) is expected


@pytest.mark.parametrize(("date", "expected"), [(1_700_000_000_000, True), (1_700_000_000_001, False), (0, True)])
def test_notifications_after_date_include_the_date_itself(date: int, expected: bool) -> None:
    assert matches(NotificationsAfterDateFilter(healthcare_party_id=HCP, date=date), NOTIFICATION) is expected


def test_complement_is_about_content_and_leaves_access_to_the_caller() -> None:
    # hcp-2 may not read the patient; "all of hcp-2's patients but ..." never includes it, and "every
    # patient with an id but ..." includes it: who may read it is decided by queries and dispatch, not here.
    others = PatientByIdsFilter(ids=frozenset({"pat-9"}))
    assert not matches(
        ComplementFilter(super_set=PatientByHealthcarePartyFilter(healthcare_party_id="hcp-2"), sub_set=others), PATIENT
    )
    assert matches(ComplementFilter(super_set=PatientByIdsFilter(ids=frozenset({"pat-1"})), sub_set=others), PATIENT)
    assert not matches(
        ComplementFilter(super_set=others, sub_set=PatientByIdsFilter(ids=frozenset({"pat-1"}))), PATIENT
    )


def test_combinators() -> None:
    yes, no = DataSampleByIdsFilter(ids=frozenset({"ds-1"})), DataSampleByIdsFilter(ids=frozenset())
    assert matches(IntersectionFilter(filters=(yes, yes)), SAMPLE)
    assert not matches(IntersectionFilter(filters=(yes, no)), SAMPLE)
    assert matches(UnionFilter(filters=(no, yes)), SAMPLE)
    assert not matches(UnionFilter(filters=(no, no)), SAMPLE)
    assert matches(ComplementFilter(super_set=yes, sub_set=no), SAMPLE)
    assert not matches(ComplementFilter(super_set=yes, sub_set=yes), SAMPLE)


def test_entity_of_another_type_never_matches() -> None:
    assert not matches(AllUsersFilter(), PATIENT)
    assert not matches(PatientByIdsFilter(ids=frozenset({"ds-1"})), SAMPLE)


def test_matching_is_fast() -> None:
    node = IntersectionFilter(
        filters=(
            DataSampleByHealthcarePartyTagCodeDateFilter(
                healthcare_party_id=HCP, tag_type="IC-TAGS", tag_code="bp", start_value_date=20240101000000
            ),
            DataSampleByHealthcarePartyPatientFilter(healthcare_party_id=HCP, patient_ids=frozenset({"pat-1"})),
        )
    )
    assert matches(node, SAMPLE)
    seconds = min(timeit.repeat(lambda: matches(node, SAMPLE), number=2_000, repeat=3)) / 2_000
    assert seconds < 20e-6, f"{seconds * 1e6:.1f} µs per match"
