"""Blind indexes: an entity's `blindIndex` (its shape and bounds), the blind-index filter nodes (parse, matcher,
builders, weight), with tokens made by the crypto core as the SDK makes them."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medstream.crypto.blind_index import name_tokens, token
from medstream.delegations import server_metadata
from medstream.errors import ValidationError
from medstream.filters import (
    DataSampleByHealthcarePartyBlindIndexFilter,
    HealthcareElementByHealthcarePartyBlindIndexFilter,
    IndexConstraint,
    IntersectionFilter,
    PatientByHealthcarePartyBlindIndexFilter,
    PatientByHealthcarePartyFilter,
    entity_index_values,
    index_constraint,
    matches,
    parse_filter,
)
from medstream.filters.builders import DataSampleFilter, HealthcareElementFilter, PatientFilter
from medstream.filters.weight import INDEX_BYTES, filter_weight
from medstream.model import DataSample, HealthcareElement, HealthcareProfessional, Patient
from medstream.model.blind_index import MAX_BLIND_INDEX_FIELDS, MAX_TOKENS_PER_FIELD
from tests.filter_strategies import FilterPool, blind_index_filters_for, entities_for_filters
from tests.unit.test_filter_builders import FakeApi

INDEX_KEY = secrets.token_bytes(32)
OTHER_KEY = secrets.token_bytes(32)
SSIN = "85073003328"


def _random_token() -> str:
    return base64.b64encode(secrets.token_bytes(16)).decode()


def _helene(key: bytes = INDEX_KEY) -> Patient:
    """Hélène Dupré as the SDK writes her: names and ssin only as tokens, shared with hcp-1."""
    return Patient(
        id="p-helene",
        security_metadata=server_metadata(None, frozenset({"hcp-1"})),
        blind_index={
            "names": sorted(name_tokens(key, "names", "Hélène") | name_tokens(key, "names", "Dupré")),
            "ssin": [token(key, "ssin", SSIN)],
        },
    )


def _patients(field: str, *tokens: str, owner: str = "hcp-1") -> PatientByHealthcarePartyBlindIndexFilter:
    return PatientByHealthcarePartyBlindIndexFilter(healthcare_party_id=owner, field=field, tokens=frozenset(tokens))


# --- the entity's blindIndex ----------------------------------------------------------------------------------


def test_blind_index_travels_as_blind_index_and_is_absent_when_unset() -> None:
    helene = _helene()
    wire = helene.to_json_dict()
    assert wire["blindIndex"]["ssin"] == [token(INDEX_KEY, "ssin", SSIN)]
    assert Patient.model_validate(wire) == helene
    assert "blindIndex" not in Patient(first_name="x").to_json_dict()


@pytest.mark.parametrize(
    ("blind_index", "message"),
    [
        ({"ssn": ["q7DKMqwK7rdGBb2/O1z6dw=="]}, "Patient has no blind-index field 'ssn'"),
        ({"ssin": ["85073003328"]}, "blindIndex.ssin: '85073003328' is not a blind-index token"),
        ({"ssin": ["q7DKMqwK7rdGBb2/O1z6dx=="]}, "is not a blind-index token"),  # 2 bits too many
        ({"names": [_random_token()] * (MAX_TOKENS_PER_FIELD + 1)}, f"more than {MAX_TOKENS_PER_FIELD}"),
        ({f"f{i}": [] for i in range(MAX_BLIND_INDEX_FIELDS + 1)}, f"more than {MAX_BLIND_INDEX_FIELDS}"),
    ],
)
def test_a_bad_blind_index_is_refused_naming_what_is_wrong(blind_index: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        Patient.model_validate({"blindIndex": blind_index})


def test_kinds_without_blind_indexed_fields_refuse_one_and_the_others_take_their_fields() -> None:
    with pytest.raises(pydantic.ValidationError, match="HealthcareProfessional has no blind-index field 'names'"):
        HealthcareProfessional.model_validate({"blindIndex": {"names": [_random_token()]}})
    with pytest.raises(pydantic.ValidationError, match="DataSample has no blind-index field 'ssin'"):
        DataSample.model_validate({"blindIndex": {"ssin": [_random_token()]}})
    DataSample.model_validate({"blindIndex": {"identifiers": [_random_token()]}})
    HealthcareElement.model_validate({"blindIndex": {"identifiers": [_random_token()]}})


# --- the matcher ----------------------------------------------------------------------------------------------


def test_a_name_is_found_by_the_token_of_a_word_or_of_a_prefix_of_3_letters_or_more() -> None:
    helene = _helene()
    for search in ("helene", "Hélène", "DUP", "dupre", "hel"):
        assert matches(_patients("names", token(INDEX_KEY, "names", search)), helene), search
    for search in ("he", "lene", "helene dupre", "martin"):
        assert not matches(_patients("names", token(INDEX_KEY, "names", search)), helene), search


def test_the_ssin_is_found_by_its_token_and_never_by_another_keys_or_fields_token() -> None:
    helene = _helene()
    assert matches(_patients("ssin", token(INDEX_KEY, "ssin", SSIN)), helene)
    assert not matches(_patients("ssin", token(OTHER_KEY, "ssin", SSIN)), helene)
    assert not matches(_patients("names", token(INDEX_KEY, "ssin", SSIN)), helene), "the field is its own"
    assert not matches(_patients("ssin", token(INDEX_KEY, "names", "helene")), helene)
    assert matches(_patients("ssin", _random_token(), token(INDEX_KEY, "ssin", SSIN)), helene), "any of the tokens"


def test_no_token_no_index_and_another_data_owner_match_nothing() -> None:
    helene = _helene()
    assert not matches(_patients("ssin"), helene)
    assert not matches(
        _patients("ssin", token(INDEX_KEY, "ssin", SSIN)), helene.model_copy(update={"blind_index": None})
    )
    assert not matches(_patients("ssin", token(INDEX_KEY, "ssin", SSIN), owner="hcp-2"), helene)
    assert not matches(_patients("identifiers", token(INDEX_KEY, "ssin", SSIN)), helene)


def test_data_samples_and_healthcare_elements_are_found_by_identifier_tokens() -> None:
    metadata = server_metadata(None, frozenset({"hcp-1"}))
    mrn = token(INDEX_KEY, "identifiers", "https://hospital.example/mrn\x00A123")
    sample = DataSample(id="ds", security_metadata=metadata, blind_index={"identifiers": [mrn]})
    element = HealthcareElement(id="he", security_metadata=metadata, blind_index={"identifiers": [mrn]})
    assert matches(
        DataSampleByHealthcarePartyBlindIndexFilter(healthcare_party_id="hcp-1", field="identifiers", tokens={mrn}),
        sample,
    )
    node = HealthcareElementByHealthcarePartyBlindIndexFilter
    assert matches(node(healthcare_party_id="hcp-1", field="identifiers", tokens={mrn}), element)
    assert not matches(node(healthcare_party_id="hcp-1", field="identifiers", tokens={_random_token()}), element)


@settings(max_examples=100, deadline=None)
@given(kind=st.sampled_from(("Patient", "DataSample", "HealthcareElement")), data=st.data())
def test_a_blind_index_node_matches_exactly_the_shared_entities_holding_a_token_and_indexes_them(
    kind: str, data: st.DataObject
) -> None:
    entities = data.draw(st.lists(entities_for_filters(kind), min_size=1, max_size=6))
    pool = FilterPool.of(entities)
    for _ in range(5):
        node = data.draw(blind_index_filters_for(kind, pool))
        constraint = index_constraint(node)
        assert constraint is not None and constraint.key == "blind_index"
        for entity in entities:
            held = set((entity.blind_index or {}).get(node.field, ()))
            expected = node.healthcare_party_id in entity.readers and bool(held & node.tokens)
            assert matches(node, entity) == expected
            if expected:
                assert constraint.values & entity_index_values(entity, "blind_index"), "a candidate for the index"


# --- parse, index, weight -------------------------------------------------------------------------------------


def test_the_node_parses_from_its_wire_form_and_round_trips() -> None:
    tokens = sorted({_random_token(), _random_token()})
    wire = {
        "$type": "PatientByHealthcarePartyBlindIndexFilter",
        "healthcarePartyId": "h",
        "field": "names",
        "tokens": tokens,
    }
    node = parse_filter(wire, "Patient")
    assert node == _patients("names", *tokens, owner="h")
    assert node.to_json_dict() == wire


@pytest.mark.parametrize(
    ("entity_type", "fields", "field", "message"),
    [
        ("Patient", {"field": "firstName", "tokens": [_random_token()]}, "", "no blind-index field 'firstName'"),
        ("DataSample", {"field": "names", "tokens": [_random_token()]}, "", "DataSample has no blind-index field"),
        ("Patient", {"field": "ssin", "tokens": ["85073003328"]}, "tokens[0]", "should match pattern"),
        ("Patient", {"field": "ssin"}, "tokens", "Field required"),
    ],
)
def test_a_bad_node_is_a_validation_error_naming_the_field(
    entity_type: str, fields: dict[str, Any], field: str, message: str
) -> None:
    node_type = f"{entity_type}ByHealthcarePartyBlindIndexFilter"
    with pytest.raises(ValidationError) as caught:
        parse_filter({"$type": node_type, "healthcarePartyId": "h", **fields}, entity_type)
    assert message in caught.value.message
    assert caught.value.details[0]["field"] == field
    assert caught.value.details[0]["node"] == node_type


def test_the_subscription_index_keys_it_by_its_tokens_before_labels_patients_and_data_owners() -> None:
    helene = _helene()
    search = token(INDEX_KEY, "names", "dup")
    one = _patients("names", search)
    constraint = index_constraint(
        IntersectionFilter(filters=(PatientByHealthcarePartyFilter(healthcare_party_id="hcp-1"), one))
    )
    assert constraint == IndexConstraint("blind_index", frozenset({("names", search)}))
    assert constraint.values <= entity_index_values(helene, "blind_index"), "sound: Hélène is a candidate"
    assert ("ssin", search) not in entity_index_values(helene, "blind_index")
    assert entity_index_values(Patient(), "blind_index") == frozenset()
    many = _patients("names", *(_random_token() for _ in range(100)))
    assert filter_weight(many) - filter_weight(one) >= 99 * (24 + INDEX_BYTES)


# --- builders -------------------------------------------------------------------------------------------------


async def test_builders_take_tokens_for_a_blind_index_field() -> None:
    tokens = [token(INDEX_KEY, "names", "helene")]
    built = await PatientFilter(FakeApi()).by_blind_index("names", tokens).build()
    assert built == _patients("names", *tokens, owner="hcp-self")
    sample = await DataSampleFilter(FakeApi()).for_data_owner("d").by_blind_index("identifiers", tokens).build()
    assert sample.to_json_dict() == {
        "$type": "DataSampleByHealthcarePartyBlindIndexFilter",
        "healthcarePartyId": "d",
        "field": "identifiers",
        "tokens": tokens,
    }
    element = await HealthcareElementFilter(FakeApi()).by_blind_index("identifiers", tokens).build()
    assert isinstance(element, HealthcareElementByHealthcarePartyBlindIndexFilter)


def test_builders_refuse_a_bad_field_or_no_tokens_at_the_call() -> None:
    with pytest.raises(ValidationError, match=r"PatientFilter.by_blind_index: .*no blind-index field 'ssn'"):
        PatientFilter(FakeApi()).by_blind_index("ssn", [_random_token()])
    with pytest.raises(ValidationError, match=r"PatientFilter\.by_blind_index needs at least one token"):
        PatientFilter(FakeApi()).by_blind_index("ssin", [])
    with pytest.raises(ValidationError, match="not one string"):
        PatientFilter(FakeApi()).by_blind_index("ssin", _random_token())  # type: ignore[arg-type]
