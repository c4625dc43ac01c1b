"""The filter builders: each method's node and JSON, how build() combines them, the data owner, and the
argument errors, against a stand-in api that only answers get_data_owner."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import pytest

from medstream.crypto import DataOwnerKeyPair, KeyStore, token
from medstream.crypto.blind_index import parse_blind_indexed
from medstream.crypto.state import CryptoState
from medstream.errors import ValidationError
from medstream.filters import parse_filter
from medstream.filters.builders import (
    DataSampleFilter,
    FilterComposition,
    HealthcareElementFilter,
    HealthcareProfessionalFilter,
    MedicalDeviceFilter,
    NotificationFilter,
    PatientFilter,
    UserFilter,
    date_of_birth_bounds,
)
from medstream.filters.tree import Filter
from medstream.model import Identifier, NotificationType, Patient

SELF = "hcp-self"


@dataclass
class _Owner:
    id: str | None


@dataclass
class _OwnerWithType:
    data_owner: _Owner


class FakeApi:
    """Answers get_data_owner like MedTechApi, and counts the calls."""

    def __init__(self, data_owner_id: str | None = SELF) -> None:
        self.data_owner_id = data_owner_id
        self.calls = 0

    async def get_data_owner(self) -> _OwnerWithType:
        self.calls += 1
        return _OwnerWithType(_Owner(self.data_owner_id))


def _json(node: Filter) -> dict[str, Any]:
    data = node.to_json_dict()
    assert parse_filter(data, node.entity_type) == node, "the JSON does not read back as the same filter"
    return data


async def _built(builder: Any) -> dict[str, Any]:
    return _json(await builder.build())


# --- each method's node ---------------------------------------------------------------------------------

IDENTIFIER = Identifier(system="urn:test", value="42")
IDENTIFIER_JSON = {"system": "urn:test", "value": "42"}

CASES: list[tuple[str, Any, dict[str, Any]]] = [
    (
        "data sample by ids",
        lambda api: DataSampleFilter(api).by_ids(["b", "a"]),
        {"$type": "DataSampleByIdsFilter", "ids": ["a", "b"]},
    ),
    (
        "data sample by identifiers",
        lambda api: DataSampleFilter(api).by_identifiers([IDENTIFIER]),
        {
            "$type": "DataSampleByHealthcarePartyIdentifiersFilter",
            "healthcarePartyId": SELF,
            "identifiers": [IDENTIFIER_JSON],
        },
    ),
    (
        "data sample by label code (the iCure guide's form)",
        lambda api: DataSampleFilter(api).by_label_code_filter("IC-TEST", "TEST"),
        {
            "$type": "DataSampleByHealthcarePartyTagCodeDateFilter",
            "healthcarePartyId": SELF,
            "tagType": "IC-TEST",
            "tagCode": "TEST",
            "descending": False,
        },
    ),
    (
        "data sample by label code and date",
        lambda api: DataSampleFilter(api).by_label_code_date_filter(
            "IC-TEST", None, "LOINC", "1234-5", start_value_date=20200101, end_value_date=20201231, descending=True
        ),
        {
            "$type": "DataSampleByHealthcarePartyTagCodeDateFilter",
            "healthcarePartyId": SELF,
            "tagType": "IC-TEST",
            "codeType": "LOINC",
            "codeCode": "1234-5",
            "startValueDate": 20200101,
            "endValueDate": 20201231,
            "descending": True,
        },
    ),
    (
        "data sample for patients (ids and Patients)",
        lambda api: DataSampleFilter(api).for_patients([Patient(id="p2"), Patient(id="p1")]),
        {"$type": "DataSampleByHealthcarePartyPatientFilter", "healthcarePartyId": SELF, "patientIds": ["p1", "p2"]},
    ),
    (
        "data sample by healthcare element ids",
        lambda api: DataSampleFilter(api).by_health_element_ids(["he1"]),
        {
            "$type": "DataSampleByHealthcarePartyHealthcareElementIdsFilter",
            "healthcarePartyId": SELF,
            "healthcareElementIds": ["he1"],
        },
    ),
    (
        "patient by ids",
        lambda api: PatientFilter(api).by_ids(["p1"]),
        {"$type": "PatientByIdsFilter", "ids": ["p1"]},
    ),
    (
        "patient by identifiers",
        lambda api: PatientFilter(api).by_identifiers([IDENTIFIER]),
        {
            "$type": "PatientByHealthcarePartyIdentifiersFilter",
            "healthcarePartyId": SELF,
            "identifiers": [IDENTIFIER_JSON],
        },
    ),
    (
        "patient by gender, education, profession",
        lambda api: PatientFilter(api).by_gender_education_profession("female", "university", "surgeon"),
        {
            "$type": "PatientByHealthcarePartyGenderEducationProfessionFilter",
            "healthcarePartyId": SELF,
            "gender": "female",
            "education": "university",
            "profession": "surgeon",
        },
    ),
    (
        "patient with ssins",
        lambda api: PatientFilter(api).with_ssins(["85010112345"]),
        {"$type": "PatientByHealthcarePartySsinsFilter", "healthcarePartyId": SELF, "ssins": ["85010112345"]},
    ),
    (
        "patient of age",
        lambda api: PatientFilter(api).of_age(30, today=datetime.date(2024, 6, 15)),
        {
            "$type": "PatientByHealthcarePartyDateOfBirthBetweenFilter",
            "healthcarePartyId": SELF,
            "minDateOfBirth": 19930616,
            "maxDateOfBirth": 19940615,
        },
    ),
    (
        "patient born between",
        lambda api: PatientFilter(api).date_of_birth_between(19800101, 19891231),
        {
            "$type": "PatientByHealthcarePartyDateOfBirthBetweenFilter",
            "healthcarePartyId": SELF,
            "minDateOfBirth": 19800101,
            "maxDateOfBirth": 19891231,
        },
    ),
    (
        "patient born after (open bound)",
        lambda api: PatientFilter(api).date_of_birth_between(from_date=20000101),
        {
            "$type": "PatientByHealthcarePartyDateOfBirthBetweenFilter",
            "healthcarePartyId": SELF,
            "minDateOfBirth": 20000101,
        },
    ),
    (
        "patient name contains",
        lambda api: PatientFilter(api).contains_fuzzy("snow"),
        {"$type": "PatientByHealthcarePartyNameContainsFuzzyFilter", "healthcarePartyId": SELF, "searchString": "snow"},
    ),
    (
        "healthcare element by ids",
        lambda api: HealthcareElementFilter(api).by_ids(["he1"]),
        {"$type": "HealthcareElementByIdsFilter", "ids": ["he1"]},
    ),
    (
        "healthcare element by identifiers",
        lambda api: HealthcareElementFilter(api).by_identifiers([IDENTIFIER]),
        {
            "$type": "HealthcareElementByHealthcarePartyIdentifiersFilter",
            "healthcarePartyId": SELF,
            "identifiers": [IDENTIFIER_JSON],
        },
    ),
    (
        "healthcare element by label code",
        lambda api: HealthcareElementFilter(api).by_label_code_filter(code_type="ICD10", code_code="J45"),
        {
            "$type": "HealthcareElementByHealthcarePartyLabelCodeFilter",
            "healthcarePartyId": SELF,
            "codeType": "ICD10",
            "codeCode": "J45",
        },
    ),
    (
        "healthcare element for patients",
        lambda api: HealthcareElementFilter(api).for_patients(["p1"]),
        {"$type": "HealthcareElementByHealthcarePartyPatientFilter", "healthcarePartyId": SELF, "patientIds": ["p1"]},
    ),
    (
        "professional by ids",
        lambda api: HealthcareProfessionalFilter(api).by_ids(["h1"]),
        {"$type": "HealthcareProfessionalByIdsFilter", "ids": ["h1"]},
    ),
    (
        "professional by label code",
        lambda api: HealthcareProfessionalFilter(api).by_label_code_filter("SPECIALITY", "cardio"),
        {"$type": "HealthcareProfessionalByLabelCodeFilter", "labelType": "SPECIALITY", "labelCode": "cardio"},
    ),
    (
        "professional by name",
        lambda api: HealthcareProfessionalFilter(api).by_matches("house"),
        {"$type": "HealthcareProfessionalByNameFilter", "searchString": "house"},
    ),
    (
        "device by ids",
        lambda api: MedicalDeviceFilter(api).by_ids(["d1"]),
        {"$type": "MedicalDeviceByIdsFilter", "ids": ["d1"]},
    ),
    (
        "device by label code",
        lambda api: MedicalDeviceFilter(api).by_label_code_filter("KIND"),
        {"$type": "MedicalDeviceByLabelCodeFilter", "labelType": "KIND"},
    ),
    (
        "notification by ids",
        lambda api: NotificationFilter(api).by_ids(["n1"]),
        {"$type": "NotificationsByIdFilter", "ids": ["n1"]},
    ),
    (
        "notification with type",
        lambda api: NotificationFilter(api).with_type(NotificationType.KEY_PAIR_UPDATE),
        {"$type": "NotificationsByHcPartyAndTypeFilter", "healthcarePartyId": SELF, "type": "KEY_PAIR_UPDATE"},
    ),
    (
        "notification after date",
        lambda api: NotificationFilter(api).after_date(1_700_000_000_000),
        {"$type": "NotificationsAfterDateFilter", "healthcarePartyId": SELF, "date": 1_700_000_000_000},
    ),
    ("user by ids", lambda api: UserFilter(api).by_ids(["u1"]), {"$type": "UserByIdsFilter", "ids": ["u1"]}),
    (
        "user by patient id",
        lambda api: UserFilter(api).by_patient_id("p1"),
        {"$type": "UsersByPatientIdFilter", "patientId": "p1"},
    ),
]


@pytest.mark.parametrize(("make", "expected"), [pytest.param(m, e, id=name) for name, m, e in CASES])
async def test_each_method_builds_its_medtech_node(make: Any, expected: dict[str, Any]) -> None:
    assert await _built(make(FakeApi())) == expected


# --- build() --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("builder", "expected"),
    [
        (DataSampleFilter, {"$type": "DataSampleByHealthcarePartyFilter", "hcpId": SELF}),
        (PatientFilter, {"$type": "PatientByHealthcarePartyFilter", "healthcarePartyId": SELF}),
        (HealthcareElementFilter, {"$type": "HealthcareElementByHealthcarePartyFilter", "hcpId": SELF}),
        (NotificationFilter, {"$type": "NotificationsAfterDateFilter", "healthcarePartyId": SELF, "date": 0}),
        (HealthcareProfessionalFilter, {"$type": "AllHealthcareProfessionalsFilter"}),
        (MedicalDeviceFilter, {"$type": "AllMedicalDevicesFilter"}),
        (UserFilter, {"$type": "AllUsersFilter"}),
    ],
)
async def test_a_builder_without_constraints_gives_its_default(builder: Any, expected: dict[str, Any]) -> None:
    assert await _built(builder(FakeApi())) == expected


async def test_several_constraints_build_their_intersection_in_call_order() -> None:
    built = await _built(DataSampleFilter(FakeApi()).by_label_code_filter("IC-TEST").for_patients(["p1"]))
    assert built["$type"] == "IntersectionFilter"
    assert [node["$type"] for node in built["filters"]] == [
        "DataSampleByHealthcarePartyTagCodeDateFilter",
        "DataSampleByHealthcarePartyPatientFilter",
    ]


async def test_sort_adds_its_constraint_and_puts_it_first() -> None:
    builder = PatientFilter(FakeApi()).by_ids(["p1"]).sort.contains_fuzzy("snow").with_ssins(["1"])
    built = await _built(builder)
    assert [node["$type"] for node in built["filters"]] == [
        "PatientByHealthcarePartyNameContainsFuzzyFilter",
        "PatientByIdsFilter",
        "PatientByHealthcarePartySsinsFilter",
    ]


async def test_sort_of_the_only_constraint_is_that_constraint() -> None:
    built = await _built(UserFilter(FakeApi()).sort.by_patient_id("p1"))
    assert built == {"$type": "UsersByPatientIdFilter", "patientId": "p1"}


def test_sort_takes_only_constraint_methods() -> None:
    with pytest.raises(AttributeError, match="sort takes a constraint method"):
        PatientFilter(FakeApi()).sort.for_self()


async def test_for_self_resolves_the_data_owner_at_build_time() -> None:
    api = FakeApi()
    builder = PatientFilter(api).for_self().with_ssins(["1"])
    assert api.calls == 0
    api.data_owner_id = "hcp-later"
    assert (await _built(builder))["healthcarePartyId"] == "hcp-later"
    assert api.calls == 1


async def test_for_data_owner_names_another_data_owner_without_asking_the_api() -> None:
    api = FakeApi()
    built = await _built(DataSampleFilter(api).for_data_owner("hcp-other").by_health_element_ids(["he1"]))
    assert built["healthcarePartyId"] == "hcp-other"
    assert api.calls == 0


async def test_without_for_self_or_for_data_owner_a_builder_acts_for_self() -> None:
    assert (await _built(HealthcareElementFilter(FakeApi())))["hcpId"] == SELF


async def test_the_last_of_for_self_and_for_data_owner_wins() -> None:
    assert (await _built(PatientFilter(FakeApi()).for_data_owner("x").for_self()))["healthcarePartyId"] == SELF
    assert (await _built(PatientFilter(FakeApi()).for_self().for_data_owner("x")))["healthcarePartyId"] == "x"


async def test_filters_without_a_data_owner_never_ask_the_api() -> None:
    api = FakeApi(data_owner_id=None)
    await DataSampleFilter(api).by_ids(["a"]).build()
    await UserFilter(api).build()
    assert api.calls == 0


async def test_a_user_without_data_owner_cannot_build_a_data_owner_filter() -> None:
    with pytest.raises(ValidationError, match="data owner has no id"):
        await PatientFilter(FakeApi(data_owner_id=None)).build()


async def test_build_can_be_called_again_and_gives_the_same_filter() -> None:
    builder = PatientFilter(FakeApi()).by_ids(["p1"]).with_ssins(["1"])
    assert await builder.build() == await builder.build()


# --- argument errors ------------------------------------------------------------------------------------

BAD_CALLS: list[tuple[str, Any, str]] = [
    ("by_ids of nothing", lambda api: DataSampleFilter(api).by_ids([]), "by_ids needs at least one id"),
    ("by_ids of a string", lambda api: PatientFilter(api).by_ids("p1"), "not one string"),
    ("by_identifiers of nothing", lambda api: PatientFilter(api).by_identifiers([]), "at least one identifier"),
    (
        "label filter without a type",
        lambda api: DataSampleFilter(api).by_label_code_filter(),
        "by_label_code_filter needs label_type or code_type",
    ),
    (
        "label code without its type",
        lambda api: HealthcareElementFilter(api).by_label_code_filter(label_code="X", code_type="C"),
        "label_code needs label_type",
    ),
    (
        "code code without its type",
        lambda api: MedicalDeviceFilter(api).by_label_code_filter("T", code_code="X"),
        "code_code needs code_type",
    ),
    (
        "date filter with dates only",
        lambda api: DataSampleFilter(api).by_label_code_date_filter(start_value_date=1),
        "needs tag_type or code_type",
    ),
    (
        "date filter with reversed dates",
        lambda api: DataSampleFilter(api).by_label_code_date_filter("T", start_value_date=2, end_value_date=1),
        "is after end_value_date",
    ),
    ("for no patients", lambda api: DataSampleFilter(api).for_patients([]), "at least one patient"),
    (
        "for an unsaved patient",
        lambda api: HealthcareElementFilter(api).for_patients([Patient(first_name="X")]),
        "stored Patient",
    ),
    ("for no healthcare element", lambda api: DataSampleFilter(api).by_health_element_ids([]), "at least one"),
    ("no ssins", lambda api: PatientFilter(api).with_ssins([]), "at least one ssin"),
    ("negative age", lambda api: PatientFilter(api).of_age(-1), "age must be 0 or more"),
    ("no bound", lambda api: PatientFilter(api).date_of_birth_between(), "needs from_date or to_date"),
    ("reversed bounds", lambda api: PatientFilter(api).date_of_birth_between(20000101, 19990101), "is after"),
    ("unknown gender", lambda api: PatientFilter(api).by_gender_education_profession("robot"), "gender"),
    ("blank search", lambda api: PatientFilter(api).contains_fuzzy("   "), "search_string"),
    ("blank name search", lambda api: HealthcareProfessionalFilter(api).by_matches(""), "by_matches"),
    ("unknown notification type", lambda api: NotificationFilter(api).with_type("NOPE"), "with_type: type"),
    ("empty patient id", lambda api: UserFilter(api).by_patient_id(""), "by_patient_id: patient_id"),
    ("empty data owner", lambda api: PatientFilter(api).for_data_owner(""), "needs a data owner id"),
]


@pytest.mark.parametrize(("call", "message"), [pytest.param(c, m, id=name) for name, c, m in BAD_CALLS])
def test_a_bad_argument_fails_at_the_call_with_a_clear_message(call: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        call(FakeApi())
    assert "Filter." in caught.value.message, "the message names the builder and its method"


# --- of_age ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "today", "bounds"),
    [
        (30, datetime.date(2024, 6, 15), (19930616, 19940615)),
        (0, datetime.date(2024, 6, 15), (20230616, 20240615)),
        # a Tuesday, the 2nd: the day of the month counts, not the day of the week (iCure's getDay bug)
        (40, datetime.date(2024, 1, 2), (19830103, 19840102)),
        (10, datetime.date(2024, 12, 31), (20140101, 20141231)),
        # on 29 February, the day before a common-year 1 March birthday
        (30, datetime.date(2024, 2, 29), (19930301, 19940228)),
        # a leap-day birthday counts from 1 March in common years
        (27, datetime.date(2023, 2, 28), (19950301, 19960228)),
        (27, datetime.date(2023, 3, 1), (19950302, 19960301)),
    ],
)
def test_of_age_bounds_use_the_day_of_the_month(age: int, today: datetime.date, bounds: tuple[int, int]) -> None:
    assert date_of_birth_bounds(age, today) == bounds


def test_of_age_bounds_contain_exactly_the_birthdays_of_that_age() -> None:
    today = datetime.date(2024, 3, 1)
    earliest, latest = date_of_birth_bounds(20, today)
    day = datetime.date(2002, 1, 1)
    while day < datetime.date(2006, 1, 1):
        had_birthday = (today.month, today.day) >= (day.month, day.day)
        age = today.year - day.year - (0 if had_birthday else 1)
        as_int = day.year * 10_000 + day.month * 100 + day.day
        assert (earliest <= as_int <= latest) == (age == 20), day
        day += datetime.timedelta(days=1)


# --- FilterComposition ----------------------------------------------------------------------------------


async def test_composition_combines_filters_of_one_type() -> None:
    api = FakeApi()
    by_ids = await PatientFilter(api).by_ids(["p1"]).build()
    by_ssin = await PatientFilter(api).with_ssins(["1"]).build()
    everyone = await PatientFilter(api).build()
    assert _json(FilterComposition.union(by_ids, by_ssin)) == {
        "$type": "UnionFilter",
        "filters": [by_ids.to_json_dict(), by_ssin.to_json_dict()],
    }
    assert _json(FilterComposition.intersection(by_ids, by_ssin))["$type"] == "IntersectionFilter"
    assert _json(FilterComposition.complement(everyone, by_ids)) == {
        "$type": "ComplementFilter",
        "superSet": everyone.to_json_dict(),
        "subSet": by_ids.to_json_dict(),
    }


async def test_composition_rejects_mixed_entity_types() -> None:
    api = FakeApi()
    patients = await PatientFilter(api).by_ids(["p1"]).build()
    samples = await DataSampleFilter(api).by_ids(["s1"]).build()
    for combine in (FilterComposition.union, FilterComposition.intersection, FilterComposition.complement):
        with pytest.raises(ValidationError, match="mixes entity types Patient and DataSample"):
            combine(patients, samples)


async def test_composition_rejects_an_unbuilt_builder_and_nothing() -> None:
    with pytest.raises(ValidationError, match="needs at least one filter"):
        FilterComposition.union()
    with pytest.raises(ValidationError, match=r"is a builder; pass `await builder.build\(\)`"):
        FilterComposition.union(PatientFilter(FakeApi()))  # type: ignore[arg-type]


# --- searches on encrypted fields, through blind-index tokens ------------------------------------------------


class SearchingApi(FakeApi):
    """A stand-in api that also makes blind-index tokens, as MedTechApi does, with a real crypto state: the
    configuration of a server that requires encryption, and two search keys (its own and a delegator's)."""

    def __init__(self, required: bool = True) -> None:
        super().__init__()
        store = KeyStore(SELF, [DataOwnerKeyPair.generate(1)], search_key=OWN_KEY)
        blind = parse_blind_indexed(
            {
                "Patient": {
                    "ssin": {"index": "equality", "fields": ["ssin"]},
                    "identifiers": {"index": "equality", "fields": ["identifiers"]},
                    "names": {"index": "words", "fields": ["firstName", "lastName", "names"]},
                },
                "DataSample": {"identifiers": {"index": "equality", "fields": ["identifiers"]}},
                "HealthcareElement": {"identifiers": {"index": "equality", "fields": ["identifiers"]}},
            }
        )
        encrypted = {"Patient": ("note",)}
        self.state = CryptoState(store, encrypted, blind, required, search_keys={"hcp-delegator": DELEGATOR_KEY})

    async def blind_index_tokens(self, entity_type: str, field: str, values: Any) -> list[list[str]] | None:
        return self.state.blind_search(entity_type, field, values)


OWN_KEY, DELEGATOR_KEY = bytes([0x55]) * 32, bytes([0x66]) * 32


def _tokens(field: str, *texts: str) -> list[str]:
    return sorted(token(key, field, text) for key in (OWN_KEY, DELEGATOR_KEY) for text in texts)


def _blind(kind: str, field: str, tokens: list[str]) -> dict[str, Any]:
    return {
        "$type": f"{kind}ByHealthcarePartyBlindIndexFilter",
        "healthcarePartyId": SELF,
        "field": field,
        "tokens": tokens,
    }


async def test_searches_on_encrypted_fields_build_blind_index_filters_under_every_search_key() -> None:
    api = SearchingApi()
    assert await _built(PatientFilter(api).with_ssins(["1", "2"])) == _blind(
        "Patient", "ssin", _tokens("ssin", "1", "2")
    )
    assert await _built(PatientFilter(api).contains_fuzzy("DUP")) == _blind("Patient", "names", _tokens("names", "dup"))
    assert await _built(PatientFilter(api).contains_fuzzy("Hélène dup")) == {
        "$type": "IntersectionFilter",
        "filters": [
            _blind("Patient", "names", _tokens("names", "helene")),
            _blind("Patient", "names", _tokens("names", "dup")),
        ],
    }
    indexed = _tokens("identifiers", "urn:test\x0042")
    assert await _built(PatientFilter(api).by_identifiers([IDENTIFIER])) == _blind("Patient", "identifiers", indexed)
    assert await _built(DataSampleFilter(api).by_identifiers([IDENTIFIER])) == _blind(
        "DataSample", "identifiers", indexed
    )
    assert await _built(HealthcareElementFilter(api).by_identifiers([IDENTIFIER])) == _blind(
        "HealthcareElement", "identifiers", indexed
    )
    # Beside other constraints, in their place; the sort one first.
    built = await _built(PatientFilter(api).by_ids(["p1"]).sort.with_ssins(["1"]))
    assert built["filters"] == [
        _blind("Patient", "ssin", _tokens("ssin", "1")),
        {"$type": "PatientByIdsFilter", "ids": ["p1"]},
    ]


async def test_searches_stay_in_clear_when_the_configuration_has_the_fields_in_clear() -> None:
    api = SearchingApi(required=False)  # only the note is encrypted
    assert await _built(PatientFilter(api).with_ssins(["1"])) == {
        "$type": "PatientByHealthcarePartySsinsFilter",
        "healthcarePartyId": SELF,
        "ssins": ["1"],
    }
    assert (await _built(PatientFilter(api).contains_fuzzy("dup")))[
        "$type"
    ] == "PatientByHealthcarePartyNameContainsFuzzyFilter"
    with pytest.raises(ValidationError, match="names needs a value"):
        await PatientFilter(SearchingApi()).contains_fuzzy("-").build()
