"""The data model: camelCase JSON, strict input, stable output and the User's write-only password."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medstream.model as model
from medstream.model import (
    ENTITY_KINDS,
    MAX_STRING_LENGTH,
    CodingReference,
    Content,
    DataSample,
    Entity,
    EntityKind,
    Gender,
    HealthcareElement,
    HealthcareProfessional,
    Measure,
    MedicalDevice,
    Notification,
    NotificationStatus,
    NotificationType,
    Patient,
    SharedDataType,
    TimeSeries,
    User,
    kind_of,
)
from medstream.model.security import document_readers
from tests.strategies import codings, entities_of, entity_ids, passwords, users

KIND_IDS = [kind.name for kind in ENTITY_KINDS]
ENTITY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# One field per entity: (snake_case attribute, camelCase JSON key, a value).
TWO_WORD_FIELD: dict[str, tuple[str, str, Any]] = {
    "Patient": ("first_name", "firstName", "John"),
    "DataSample": ("patient_id", "patientId", "3f2c2a4e-0c7b-4c1e-9a55-2b1d3f1f0a11"),
    "HealthcareElement": ("healthcare_element_id", "healthcareElementId", "he-1"),
    "HealthcareProfessional": ("last_name", "lastName", "House"),
    "MedicalDevice": ("serial_number", "serialNumber", "SN-0042"),
    "Contact": ("opening_date", "openingDate", 20240101120000),
    "Notification": ("end_of_life", "endOfLife", 1_700_000_000_000),
    "User": ("mobile_phone", "mobilePhone", "+32470123456"),
    "ExchangeData": ("exchange_key", "exchangeKey", {"0123456789abcdef0123456789abcdef": "AQID"}),
}

# One free-text field per entity, to check the string bound.
TEXT_FIELD: dict[str, str] = {
    "Patient": "note",
    "DataSample": "comment",
    "HealthcareElement": "description",
    "HealthcareProfessional": "notes",
    "MedicalDevice": "brand",
    "Contact": "description",
    "Notification": "responsible",
    "User": "login",
    "ExchangeData": "responsible",
}


def error_locations(error: pydantic.ValidationError) -> list[tuple[str | int, ...]]:
    return [tuple(e["loc"]) for e in error.errors()]


# --- the public names ---------------------------------------------------------------------------------------


def test_every_exported_name_exists_and_the_seven_entities_are_exported() -> None:
    for name in model.__all__:
        assert hasattr(model, name), name
    entity_names = {name for name in model.__all__ if isinstance(getattr(model, name), type)}
    assert {kind.name for kind in ENTITY_KINDS} <= entity_names
    assert {"Content", "Measure", "TimeSeries", "EntityKind", "kind_of", "MedstreamModel", "Entity"} <= set(
        model.__all__
    )


@pytest.mark.parametrize("kind", ENTITY_KINDS, ids=KIND_IDS)
def test_each_entity_kind_names_a_model_whose_entity_type_is_that_name(kind: EntityKind) -> None:
    assert issubclass(kind.model, Entity)
    assert kind.model.entity_type == kind.name
    assert kind_of(kind.name) is kind


# --- camelCase on the wire, both spellings accepted in ------------------------------------------------------


def test_patient_first_name_is_first_name_in_camel_case_on_the_wire() -> None:
    data = Patient(first_name="John").to_json_dict()
    assert data["firstName"] == "John"
    assert "first_name" not in data


@pytest.mark.parametrize("kind", ENTITY_KINDS, ids=KIND_IDS)
def test_two_word_fields_serialise_in_camel_case(kind: EntityKind) -> None:
    snake, camel, value = TWO_WORD_FIELD[kind.name]
    data = kind.model(**{snake: value}).to_json_dict()
    assert data[camel] == value
    assert snake not in data
    assert orjson.loads(kind.model(**{snake: value}).to_json())[camel] == value


@pytest.mark.parametrize("kind", ENTITY_KINDS, ids=KIND_IDS)
def test_entities_are_built_alike_from_snake_case_keywords_camel_case_json_and_snake_case_dicts(
    kind: EntityKind,
) -> None:
    snake, camel, value = TWO_WORD_FIELD[kind.name]
    by_keyword = kind.model(**{snake: value})
    from_json = kind.model.model_validate({camel: value})
    from_snake_dict = kind.model.model_validate({snake: value})
    assert getattr(from_json, snake) == value
    assert by_keyword == from_json == from_snake_dict


def test_nested_values_are_camel_case_on_the_wire_and_parsed_back_into_their_models() -> None:
    wire = {
        "patientId": "p-1",
        "content": {
            "en": {
                "measureValue": {"value": 120, "unitCodes": [{"type": "UCUM", "code": "mm[Hg]"}]},
                "compoundValue": [{"content": {"en": {"stringValue": "left arm"}}}],
            }
        },
    }
    sample = DataSample.model_validate(wire)
    content = sample.content["en"]
    assert content.measure_value == Measure(value=120.0, unit_codes={CodingReference(type="UCUM", code="mm[Hg]")})
    assert isinstance(content.compound_value[0], DataSample)
    assert content.compound_value[0].content["en"].string_value == "left arm"
    out = sample.to_json_dict()["content"]["en"]
    assert out["measureValue"]["unitCodes"] == [{"type": "UCUM", "code": "mm[Hg]"}]
    assert out["compoundValue"][0]["content"]["en"]["stringValue"] == "left arm"


def test_unset_optional_fields_are_left_out_of_the_wire_form() -> None:
    data = HealthcareElement(description="Asthma").to_json_dict()
    assert "note" not in data
    assert "patientId" not in data
    assert data["relevant"] is True
    assert data["status"] == 0


# --- strict input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ENTITY_KINDS, ids=KIND_IDS)
def test_unknown_fields_are_rejected_naming_the_field(kind: EntityKind) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        kind.model.model_validate({"id": "e-1", "notAField": 1})
    assert error_locations(caught.value) == [("notAField",)]
    assert "notAField" in str(caught.value)


def test_unknown_fields_deep_inside_a_data_sample_are_rejected_with_their_path() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        DataSample.model_validate({"content": {"en": {"measureValue": {"value": 1, "unitt": "kg"}}}})
    assert error_locations(caught.value) == [("content", "en", "measureValue", "unitt")]


@pytest.mark.parametrize("kind", ENTITY_KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("bad_id", ["", "a/b", "../etc", "-leading-dash", "has space", "x" * 129, "é"])
def test_invalid_ids_are_rejected(kind: EntityKind, bad_id: str) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        kind.model.model_validate({"id": bad_id})
    assert error_locations(caught.value) == [("id",)]


@pytest.mark.parametrize("kind", ENTITY_KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("good_id", ["3f2c2a4e-0c7b-4c1e-9a55-2b1d3f1f0a11", "p1", "org.example:hcp_7", "x" * 128])
def test_uuids_and_short_url_safe_tokens_are_valid_ids(kind: EntityKind, good_id: str) -> None:
    assert kind.model.model_validate({"id": good_id}).id == good_id


@pytest.mark.parametrize(
    ("entity_model", "link"),
    [
        (DataSample, "patientId"),
        (HealthcareElement, "patientId"),
        (HealthcareElement, "healthcareElementId"),
        (HealthcareProfessional, "parentId"),
        (MedicalDevice, "parentId"),
        (User, "healthcarePartyId"),
        (User, "patientId"),
        (User, "deviceId"),
    ],
)
def test_links_to_other_entities_must_be_valid_ids(entity_model: type[Entity], link: str) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        entity_model.model_validate({link: "a/b"})
    assert error_locations(caught.value) == [(link,)]


@pytest.mark.parametrize("kind", ENTITY_KINDS, ids=KIND_IDS)
def test_strings_up_to_the_bound_are_accepted_and_longer_ones_rejected(kind: EntityKind) -> None:
    field = TEXT_FIELD[kind.name]
    assert len(getattr(kind.model(**{field: "a" * MAX_STRING_LENGTH}), field)) == MAX_STRING_LENGTH
    with pytest.raises(pydantic.ValidationError) as caught:
        kind.model(**{field: "a" * (MAX_STRING_LENGTH + 1)})
    assert caught.value.errors()[0]["type"] == "string_too_long"


def test_a_too_long_string_deep_inside_a_data_sample_is_rejected_with_its_path() -> None:
    too_long = "a" * (MAX_STRING_LENGTH + 1)
    with pytest.raises(pydantic.ValidationError) as caught:
        DataSample.model_validate({"content": {"en": {"compoundValue": [{"comment": too_long}]}}})
    assert error_locations(caught.value) == [("content", "en", "compoundValue", 0, "comment")]


@pytest.mark.parametrize("not_finite", [math.nan, math.inf, -math.inf])
def test_measures_numbers_and_time_series_refuse_nan_and_infinity(not_finite: float) -> None:
    with pytest.raises(pydantic.ValidationError):
        Measure(value=not_finite)
    with pytest.raises(pydantic.ValidationError):
        Content(number_value=not_finite)
    with pytest.raises(pydantic.ValidationError):
        TimeSeries(fields=["a"], samples=[[1.0], [not_finite]])


@pytest.mark.parametrize("bad", ["not base64!", "abc", "YWJj=", "YW Jj", "YWJjZA"])
def test_binary_values_and_pictures_must_be_padded_base64(bad: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        Content(binary_value=bad)
    with pytest.raises(pydantic.ValidationError):
        HealthcareProfessional(picture=bad)
    with pytest.raises(pydantic.ValidationError):
        MedicalDevice(picture=bad)


@pytest.mark.parametrize("good", ["", "YWJj", "YWJjZA==", "YWJjZGU=", "+/+/"])
def test_padded_base64_binary_values_are_accepted(good: str) -> None:
    assert Content(binary_value=good).binary_value == good
    assert MedicalDevice(picture=good).picture == good


def test_notification_enums_travel_as_their_icure_spelling_and_others_are_rejected() -> None:
    notification = Notification(type=NotificationType.KEY_PAIR_UPDATE, status=NotificationStatus.pending)
    assert notification.to_json_dict()["type"] == "KEY_PAIR_UPDATE"
    assert notification.to_json_dict()["status"] == "pending"
    parsed = Notification.model_validate({"type": "NEW_USER_OWN_DATA_ACCESS", "status": "completed"})
    assert parsed.type is NotificationType.NEW_USER_OWN_DATA_ACCESS
    assert parsed.status is NotificationStatus.completed
    with pytest.raises(pydantic.ValidationError):
        Notification.model_validate({"status": "PENDING"})
    with pytest.raises(pydantic.ValidationError):
        Notification.model_validate({"type": "key_pair_update"})


def test_healthcare_professionals_share_the_patient_gender_values() -> None:
    assert HealthcareProfessional.model_validate({"gender": "changedToFemale"}).gender is Gender.changedToFemale
    with pytest.raises(pydantic.ValidationError):
        HealthcareProfessional.model_validate({"gender": "woman"})


# --- JSON round trip ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ENTITY_KINDS, ids=KIND_IDS)
@ENTITY_SETTINGS
@given(data=st.data())
def test_every_entity_survives_a_json_round_trip_and_gives_the_same_bytes_again(
    kind: EntityKind, data: st.DataObject
) -> None:
    entity = data.draw(entities_of(kind.name))
    assert type(entity) is kind.model
    assert kind.model.model_validate(entity.to_json_dict()) == entity
    wire = entity.to_json()
    again = kind.model.model_validate(orjson.loads(wire))
    assert again == entity
    assert again.to_json() == wire
    # The JSON is written by pydantic's serializer, the dict by its dump: both are the one wire form.
    assert orjson.loads(wire) == entity.to_json_dict()


@pytest.mark.parametrize("kind", ENTITY_KINDS, ids=KIND_IDS)
@ENTITY_SETTINGS
@given(data=st.data())
def test_an_entity_s_readers_are_read_alike_from_its_json(kind: EntityKind, data: st.DataObject) -> None:
    # A read by id checks the readers of the stored JSON without building the entity (`document_readers`).
    entity = data.draw(entities_of(kind.name))
    assert document_readers(entity.to_json()) == entity.readers
    assert document_readers(entity.to_json().decode()) == entity.readers


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**64 - 1, 2**70])
def test_an_integer_beyond_64_bits_is_refused_by_every_model_that_holds_one(value: int) -> None:
    for build in (
        lambda: DataSample(index=value),
        lambda: DataSample(content={"en": Content(measure_value=Measure(severity=value))}),
        lambda: Patient(date_of_birth=value),
        lambda: HealthcareElement(status=value),
        lambda: Patient(created=value),
    ):
        with pytest.raises(pydantic.ValidationError, match="9223372036854775"):
            build()
    assert DataSample(index=2**63 - 1).to_json() == b'{"labels":[],"codes":[],"identifiers":[],' + (
        b'"healthcareElementIds":[],"canvasesIds":[],"index":9223372036854775807,"content":{},"qualifiedLinks":{}}'
    )


def test_entities_of_an_unknown_kind_is_a_key_error_listing_the_known_kinds() -> None:
    with pytest.raises(KeyError, match="DataSample"):
        entities_of("Prescription")


# --- sets serialise the same whatever the insertion order ---------------------------------------------------


@ENTITY_SETTINGS
@given(data=st.data())
def test_equal_sets_give_equal_json_whatever_the_insertion_order(data: st.DataObject) -> None:
    coding_list = data.draw(st.lists(codings, unique=True, max_size=8))
    other_codings = data.draw(st.permutations(coding_list))
    id_list = data.draw(st.lists(entity_ids, unique=True, max_size=8))
    other_ids = data.draw(st.permutations(id_list))

    def sample(cs: list[CodingReference], ids: list[str]) -> DataSample:
        return DataSample(
            labels=set(cs),
            codes=set(reversed(cs)),
            healthcare_element_ids=set(ids),
            content={"en": Content(measure_value=Measure(unit_codes=set(cs)))},
        )

    def professional(cs: list[CodingReference]) -> HealthcareProfessional:
        return HealthcareProfessional(speciality_codes=set(cs))

    def user(ids: list[str]) -> User:
        return User(roles=set(ids), sharing_data_with={SharedDataType.all: set(ids)})

    assert sample(coding_list, id_list).to_json() == sample(other_codings, other_ids).to_json()
    assert professional(coding_list).to_json() == professional(other_codings).to_json()
    assert user(id_list).to_json() == user(other_ids).to_json()


@ENTITY_SETTINGS
@given(coding_list=st.lists(codings, unique=True, max_size=8))
def test_a_coding_set_serialises_each_coding_as_pydantic_dumps_it(coding_list: list[CodingReference]) -> None:
    # The set's serialiser orders the codings and hands them back to pydantic: each must come out as the
    # model's own dump gives it, None fields left out by the entity's exclude_none as by the coding's.
    dumped = Patient(labels=set(coding_list)).to_json_dict()["labels"]
    assert sorted(map(orjson.dumps, dumped)) == sorted(
        orjson.dumps(c.model_dump(mode="json", by_alias=True, exclude_none=True)) for c in coding_list
    )


def test_a_coding_with_every_field_set_serialises_as_pydantic_dumps_it() -> None:
    # Every field of a coding reaches the entity's JSON, under its alias.
    full = CodingReference(**{name: f"value of {name}" for name in CodingReference.model_fields})
    (dumped,) = Patient(labels={full}).to_json_dict()["labels"]
    assert orjson.dumps(dumped) == orjson.dumps(full.model_dump(mode="json", by_alias=True, exclude_none=True))


def test_codings_differing_only_by_id_are_ordered_by_id() -> None:
    a, b = CodingReference(id="b", type="LOINC", code="1"), CodingReference(id="a", type="LOINC", code="1")
    assert [c["id"] for c in Patient(labels={a, b}).to_json_dict()["labels"]] == ["a", "b"]


# --- User ---------------------------------------------------------------------------------------------------


@ENTITY_SETTINGS
@given(user=users, password=passwords)
def test_a_user_password_is_only_in_the_write_form(user: User, password: str) -> None:
    with_password = User.model_validate({**user.to_json_dict(), "password": password})
    assert with_password.password == password
    assert "password" not in with_password.to_json_dict()
    assert with_password.to_json() == user.to_json()
    # The user's own fields may hold the word or the value (a property named "password"): the password adds nothing.
    without = with_password.model_copy(update={"password": None})
    assert repr(with_password) == repr(without)
    assert str(with_password) == str(without)
    written = with_password.to_write_dict()
    assert written["password"] == password
    assert User.model_validate(written) == with_password
    assert {k: v for k, v in written.items() if k != "password"} == with_password.to_json_dict()


def test_a_user_without_password_has_no_password_in_its_write_form() -> None:
    assert "password" not in User(login="jd").to_write_dict()


@pytest.mark.parametrize("kind", [k for k in ENTITY_KINDS if k.name != "User"], ids=lambda k: k.name)
def test_other_entities_write_exactly_their_wire_form(kind: EntityKind) -> None:
    snake, _, value = TWO_WORD_FIELD[kind.name]
    entity = kind.model(**{snake: value})
    assert entity.to_write_dict() == entity.to_json_dict()


def test_a_password_hash_is_never_accepted() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        User.model_validate({"login": "jd", "passwordHash": "$argon2id$v=19$..."})
    assert error_locations(caught.value) == [("passwordHash",)]


@pytest.mark.parametrize("bad", ["short7!", "x" * 1025])
def test_a_password_out_of_bounds_is_rejected_without_echoing_it(bad: str) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        User(login="jd", password=bad)
    assert error_locations(caught.value) == [("password",)]
    assert bad not in str(caught.value)


@pytest.mark.parametrize(
    ("links", "named"),
    [
        ({"healthcarePartyId": "h1", "patientId": "p1"}, ("healthcarePartyId", "patientId")),
        ({"patientId": "p1", "deviceId": "d1"}, ("patientId", "deviceId")),
        ({"healthcarePartyId": "h1", "deviceId": "d1"}, ("healthcarePartyId", "deviceId")),
        ({"healthcarePartyId": "h1", "patientId": "p1", "deviceId": "d1"}, ("healthcarePartyId", "deviceId")),
    ],
)
def test_a_user_acting_as_two_data_owners_is_rejected_naming_the_links(
    links: dict[str, str], named: tuple[str, ...]
) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        User.model_validate(links)
    message = str(caught.value)
    assert "at most one data owner" in message
    for name in named:
        assert name in message


@pytest.mark.parametrize(
    ("link", "value"),
    [("healthcare_party_id", "h1"), ("patient_id", "p1"), ("device_id", "d1"), (None, None)],
)
def test_a_user_data_owner_is_whichever_link_is_set(link: str | None, value: str | None) -> None:
    user = User(**({link: value} if link else {}))
    assert user.data_owner_id == value


def test_a_user_is_admin_exactly_when_it_has_the_admin_role() -> None:
    assert User(roles={"ADMIN", "HCP"}).is_admin
    assert not User(roles={"HCP", "admin"}).is_admin
    assert not User().is_admin


def test_sharing_data_with_accepts_only_shared_data_types_as_keys() -> None:
    user = User.model_validate({"sharingDataWith": {"medicalInformation": ["h2", "h1"]}})
    assert user.sharing_data_with == {SharedDataType.medicalInformation: {"h1", "h2"}}
    assert user.to_json_dict()["sharingDataWith"] == {"medicalInformation": ["h1", "h2"]}
    with pytest.raises(pydantic.ValidationError) as caught:
        User.model_validate({"sharingDataWith": {"everything": ["h1"]}})
    assert caught.value.errors()[0]["loc"][:2] == ("sharingDataWith", "everything")
