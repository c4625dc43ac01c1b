"""parse_filter: the JSON tree in, nodes out, or an error naming the bad node and its path."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medstream.errors import PayloadTooLargeError, ValidationError
from medstream.filters import (
    ComplementFilter,
    DataSampleByHealthcarePartyTagCodeDateFilter,
    Filter,
    IntersectionFilter,
    PatientByHealthcarePartyNameContainsFuzzyFilter,
    PatientByIdsFilter,
    UnionFilter,
    parse_filter,
)
from medstream.filters.tree import NODE_TYPES
from medstream.model import ENTITY_KINDS
from tests.filter_strategies import FilterPool, filters_for
from tests.strategies import entities_of

KIND_NAMES = [kind.name for kind in ENTITY_KINDS]


def _error(data: Any, entity_type: str = "Patient") -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        parse_filter(data, entity_type)
    return caught.value


def _ids(*ids: str) -> dict[str, Any]:
    return {"$type": "PatientByIdsFilter", "ids": list(ids)}


@st.composite
def _kind_and_filter(draw: st.DrawFn) -> tuple[str, Filter]:
    kind = draw(st.sampled_from(KIND_NAMES))
    pool = FilterPool.of(draw(st.lists(entities_of(kind), max_size=3)))
    return kind, draw(filters_for(kind, pool))


# FilterPool names values of storable entities only: a filter naming a value with a NUL character (which no
# stored text holds) is refused, as it must be, so drawing one would fail the property and leave hypothesis
# shrinking it for minutes.
@settings(max_examples=150, deadline=None)
@given(_kind_and_filter())
def test_every_generated_filter_round_trips_through_its_wire_form(kind_and_filter: tuple[str, Filter]) -> None:
    kind, tree = kind_and_filter
    wire = tree.to_json_dict()
    assert wire["$type"] == type(tree).model_fields["filter_type"].default
    assert parse_filter(wire, kind) == tree
    assert parse_filter(wire, kind).to_json_dict() == wire


def test_every_node_type_is_registered_under_its_medtech_name() -> None:
    for type_name, cls in NODE_TYPES.items():
        assert cls.__name__ == type_name
    assert len(NODE_TYPES) == 44


def test_wire_form_is_camel_case_with_type_first_and_sorted_sets() -> None:
    tree = parse_filter(
        {
            "subSet": _ids("b", "a", "b"),
            "$type": "ComplementFilter",
            "description": "all but a and b",
            "superSet": {"$type": "PatientByHealthcarePartyFilter", "healthcarePartyId": "hcp-1"},
        },
        "Patient",
    )
    assert isinstance(tree, ComplementFilter)
    assert tree.entity_type == "Patient"
    assert tree.to_json_dict() == {
        "$type": "ComplementFilter",
        "description": "all but a and b",
        "superSet": {"$type": "PatientByHealthcarePartyFilter", "healthcarePartyId": "hcp-1"},
        "subSet": {"$type": "PatientByIdsFilter", "ids": ["a", "b"]},
    }


def test_bad_node_deep_in_the_tree_is_named_with_its_path() -> None:
    data = {
        "$type": "UnionFilter",
        "filters": [
            _ids("a"),
            {"$type": "ComplementFilter", "superSet": _ids("a"), "subSet": {"$type": "PatientByIdsFilter", "ids": 7}},
        ],
    }
    error = _error(data)
    assert "PatientByIdsFilter at filters[1].subSet" in error.message
    assert error.details == [
        {
            "path": "filters[1].subSet",
            "node": "PatientByIdsFilter",
            "field": "ids",
            "message": "Input should be a list",
            "type": "frozen_set_type",
        }
    ]
    assert error.to_payload()["error"] == "validation_error"


def test_bad_list_item_names_its_index_inside_the_node() -> None:
    error = _error({"$type": "IntersectionFilter", "filters": [{"$type": "PatientByIdsFilter", "ids": ["a", 3]}]})
    assert error.details[0]["path"] == "filters[0]"
    assert error.details[0]["field"] == "ids[1]"


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        ({"$type": "NoSuchFilter"}, "", "unknown $type NoSuchFilter"),
        ({"$type": "UnionFilter", "filters": [{"$type": "PatientByIdFilter"}]}, "filters[0]", "unknown $type"),
        ({"$type": "UnionFilter", "filters": [{"ids": ["a"]}]}, "filters[0]", "missing $type"),
        ({"$type": "ComplementFilter", "superSet": _ids(), "subSet": ["a"]}, "subSet", "JSON object"),
        ({"$type": 3}, "", "unknown $type 3"),
        ("PatientByIdsFilter", "", "JSON object"),
    ],
)
def test_unknown_missing_or_malformed_type_is_rejected_with_its_path(data: Any, path: str, message: str) -> None:
    error = _error(data)
    assert message in error.message
    assert error.details[0]["path"] == path


def test_node_of_another_entity_type_is_rejected_where_it_stands() -> None:
    data = {"$type": "IntersectionFilter", "filters": [_ids("a"), {"$type": "DataSampleByIdsFilter", "ids": ["a"]}]}
    error = _error(data)
    assert "DataSampleByIdsFilter at filters[1]" in error.message
    assert "a DataSample filter where a Patient filter is expected" in error.message


def test_combinators_built_in_python_refuse_to_mix_entity_types() -> None:
    from medstream.filters import DataSampleByIdsFilter

    with pytest.raises(ValueError, match="mixes entity types Patient and DataSample"):
        UnionFilter(filters=(PatientByIdsFilter(ids=frozenset({"a"})), DataSampleByIdsFilter(ids=frozenset({"a"}))))


def test_combinator_needs_at_least_one_filter() -> None:
    error = _error({"$type": "IntersectionFilter", "filters": []})
    assert "IntersectionFilter at the root: filters: List should have at least 1 item" in error.message


def test_unknown_field_is_rejected() -> None:
    error = _error({"$type": "PatientByIdsFilter", "ids": [], "hcpId": "x"})
    assert error.details[0]["field"] == "hcpId"
    assert error.details[0]["type"] == "extra_forbidden"


def test_unknown_entity_type_is_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown entity type 'Encounter'"):
        parse_filter(_ids("a"), "Encounter")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "give tagType or codeType (or both)"),
        ({"tagCode": "I10"}, "tagCode needs tagType"),
        ({"tagType": "ICD", "codeCode": "I10"}, "codeCode needs codeType"),
        ({"tagType": ""}, "at least 1 character"),
    ],
)
def test_label_and_code_parts_need_their_type(fields: dict[str, str], message: str) -> None:
    data = {"$type": "DataSampleByHealthcarePartyTagCodeDateFilter", "healthcarePartyId": "h", **fields}
    error = _error(data, "DataSample")
    assert message in error.message
    assert error.details[0]["node"] == "DataSampleByHealthcarePartyTagCodeDateFilter"


def test_label_part_alone_or_code_part_alone_is_enough() -> None:
    for fields in ({"tagType": "ICD"}, {"codeType": "LOINC", "codeCode": "8302-2"}):
        data = {"$type": "DataSampleByHealthcarePartyTagCodeDateFilter", "healthcarePartyId": "h", **fields}
        assert isinstance(parse_filter(data, "DataSample"), DataSampleByHealthcarePartyTagCodeDateFilter)


def test_blank_search_string_is_rejected() -> None:
    data = {
        "$type": "PatientByHealthcarePartyNameContainsFuzzyFilter",
        "healthcarePartyId": "h",
        "searchString": " \u0301 ",
    }
    assert "searchString" in _error(data).message
    ok = {**data, "searchString": "Åström"}
    assert isinstance(parse_filter(ok, "Patient"), PatientByHealthcarePartyNameContainsFuzzyFilter)


@pytest.mark.parametrize(
    ("data", "path", "field"),
    [
        (
            {
                "$type": "PatientByHealthcarePartyNameContainsFuzzyFilter",
                "healthcarePartyId": "h",
                "searchString": "a\x00",
            },
            "",
            "searchString",
        ),
        (
            {
                "$type": "UnionFilter",
                "filters": [
                    {
                        "$type": "PatientByHealthcarePartyIdentifiersFilter",
                        "healthcarePartyId": "h",
                        "identifiers": [{"system": "s", "value": "\x00"}],
                    }
                ],
            },
            "filters[0]",
            "identifiers[0].value",
        ),
        ({"$type": "UnionFilter", "description": "\x00", "filters": [_ids("a")]}, "", "description"),
        (_ids("a", "b\x00"), "", "ids[1]"),
    ],
)
def test_nul_characters_are_refused_where_they_stand(data: dict[str, Any], path: str, field: str) -> None:
    # No stored text holds one, and PostgreSQL cannot even compare one: refused here rather than a 500 there.
    error = _error(data)
    assert "NUL character" in error.message
    assert (error.details[0]["path"], error.details[0]["field"]) == (path, field)


def test_snake_case_names_are_accepted_as_everywhere_in_the_model() -> None:
    data = {"$type": "ComplementFilter", "super_set": _ids("a"), "sub_set": _ids("b")}
    assert parse_filter(data, "Patient") == ComplementFilter(
        super_set=PatientByIdsFilter(ids=frozenset({"a"})), sub_set=PatientByIdsFilter(ids=frozenset({"b"}))
    )


# --- bounds -------------------------------------------------------------------------------------------------


def _nested(depth: int) -> dict[str, Any]:
    tree = _ids("a")
    for _ in range(depth - 1):
        tree = {"$type": "IntersectionFilter", "filters": [tree]}
    return tree


def test_tree_of_depth_32_is_accepted_and_33_is_too_deep() -> None:
    assert isinstance(parse_filter(_nested(32), "Patient"), IntersectionFilter)
    with pytest.raises(PayloadTooLargeError, match="deeper than 32 levels") as caught:
        parse_filter(_nested(33), "Patient")
    assert caught.value.details[0]["path"] == "filters[0]" + ".filters[0]" * 31
    assert caught.value.http_status == 413


def test_tree_of_1000_nodes_is_accepted_and_1001_is_too_many() -> None:
    assert isinstance(parse_filter({"$type": "UnionFilter", "filters": [_ids("a")] * 999}, "Patient"), UnionFilter)
    with pytest.raises(PayloadTooLargeError, match="more than 1000 nodes") as caught:
        parse_filter({"$type": "UnionFilter", "filters": [_ids("a")] * 1000}, "Patient")
    assert caught.value.details[0]["path"] == "filters[999]"


def test_list_over_10000_values_is_too_large() -> None:
    ids = [f"id-{i}" for i in range(10_001)]
    assert parse_filter(_ids(*ids[:10_000]), "Patient")
    with pytest.raises(PayloadTooLargeError, match="more than 10000 values") as caught:
        parse_filter(_ids(*ids), "Patient")
    assert caught.value.details[0]["field"] == "ids"


def test_lists_of_a_tree_hold_at_most_10000_values_together() -> None:
    half = [f"id-{i}" for i in range(5_001)]
    with pytest.raises(PayloadTooLargeError, match="more than 10000 values together") as caught:
        parse_filter({"$type": "UnionFilter", "filters": [_ids(*half), _ids(*half)]}, "Patient")
    assert caught.value.details[0]["path"] == "filters[1]"
