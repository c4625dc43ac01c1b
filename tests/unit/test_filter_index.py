"""index_constraint: the subscription index may look events up by it and never miss a match (soundness)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medstream.delegations import server_metadata
from medstream.filters import (
    AllHealthcareProfessionalsFilter,
    ComplementFilter,
    DataSampleByHealthcarePartyFilter,
    DataSampleByHealthcarePartyPatientFilter,
    DataSampleByHealthcarePartyTagCodeDateFilter,
    DataSampleByIdsFilter,
    HealthcareProfessionalByLabelCodeFilter,
    HealthcareProfessionalByNameFilter,
    IndexConstraint,
    IntersectionFilter,
    UnionFilter,
    UsersByPatientIdFilter,
    entity_index_values,
    index_constraint,
    matches,
)
from medstream.model import ENTITY_KINDS, CodingReference, DataSample, User
from tests.filter_strategies import FilterPool, entities_for_filters, filters_for

KIND_NAMES = [kind.name for kind in ENTITY_KINDS]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(kind=st.sampled_from(KIND_NAMES), data=st.data())
def test_every_entity_a_filter_matches_has_one_of_its_index_values(kind: str, data: st.DataObject) -> None:
    entities = data.draw(st.lists(entities_for_filters(kind), min_size=1, max_size=6), label="entities")
    pool = FilterPool.of(entities)
    for _ in range(10):
        tree = data.draw(filters_for(kind, pool), label="filter")
        constraint = index_constraint(tree)
        for entity in entities:
            if matches(tree, entity) and constraint is not None:
                assert constraint.values & entity_index_values(entity, constraint.key), (tree, entity)


def ids(*values: str) -> DataSampleByIdsFilter:
    return DataSampleByIdsFilter(ids=frozenset(values))


def test_ids_are_preferred_over_label_patient_and_data_owner() -> None:
    tagged = DataSampleByHealthcarePartyTagCodeDateFilter(healthcare_party_id="h", tag_type="T", tag_code="c")
    by_patient = DataSampleByHealthcarePartyPatientFilter(healthcare_party_id="h", patient_ids=frozenset({"p"}))
    assert index_constraint(tagged) == IndexConstraint("label", frozenset({("T", "c")}))
    assert index_constraint(by_patient) == IndexConstraint("patient", frozenset({"p"}))
    assert index_constraint(IntersectionFilter(filters=(by_patient, tagged))) == IndexConstraint(
        "label", frozenset({("T", "c")})
    )
    assert index_constraint(IntersectionFilter(filters=(tagged, ids("a")))) == IndexConstraint("id", frozenset({"a"}))
    assert index_constraint(DataSampleByHealthcarePartyFilter(hcp_id="h")) == IndexConstraint(
        "data_owner", frozenset({"h"})
    )


def test_label_without_code_is_type_and_none() -> None:
    node = HealthcareProfessionalByLabelCodeFilter(label_type="SPECIALITY")
    assert index_constraint(node) == IndexConstraint("label", frozenset({("SPECIALITY", None)}))
    assert index_constraint(HealthcareProfessionalByLabelCodeFilter(code_type="CD")) is None


def test_intersection_of_id_sets_keeps_the_common_ids() -> None:
    constraint = index_constraint(IntersectionFilter(filters=(ids("a", "b"), ids("b", "c"))))
    assert constraint == IndexConstraint("id", frozenset({"b"}))
    assert index_constraint(IntersectionFilter(filters=(ids("a"), ids("c")))) == IndexConstraint("id", frozenset())


def test_intersection_of_labels_keeps_the_smaller_set_not_their_intersection() -> None:
    # One entity may carry both labels: intersecting {T1} and {T2} would wrongly promise it matches nothing.
    first = DataSampleByHealthcarePartyTagCodeDateFilter(healthcare_party_id="h", tag_type="T1")
    second = DataSampleByHealthcarePartyTagCodeDateFilter(healthcare_party_id="h", tag_type="T2")
    constraint = index_constraint(IntersectionFilter(filters=(first, second)))
    assert constraint is not None and constraint.key == "label" and len(constraint.values) == 1


def test_union_needs_a_key_shared_by_every_member() -> None:
    tagged = DataSampleByHealthcarePartyTagCodeDateFilter(healthcare_party_id="h1", tag_type="T")
    assert index_constraint(UnionFilter(filters=(ids("a"), ids("b")))) == IndexConstraint("id", frozenset({"a", "b"}))
    # ids and a label share no key but both name a data owner... only the label member does, so: none.
    assert index_constraint(UnionFilter(filters=(ids("a"), tagged))) is None
    # Both name a data owner: the union is indexed by either.
    assert index_constraint(
        UnionFilter(filters=(tagged, DataSampleByHealthcarePartyFilter(hcp_id="h2")))
    ) == IndexConstraint("data_owner", frozenset({"h1", "h2"}))


def test_complement_is_indexed_by_its_super_set() -> None:
    node = ComplementFilter(super_set=ids("a", "b"), sub_set=ids("a"))
    assert index_constraint(node) == IndexConstraint("id", frozenset({"a", "b"}))


def test_filters_without_an_indexable_constraint() -> None:
    assert index_constraint(AllHealthcareProfessionalsFilter()) is None
    assert index_constraint(HealthcareProfessionalByNameFilter(search_string="x")) is None


def test_users_by_patient_are_indexed_by_patient() -> None:
    node = UsersByPatientIdFilter(patient_id="p")
    assert index_constraint(node) == IndexConstraint("patient", frozenset({"p"}))
    assert entity_index_values(User(id="u", patient_id="p"), "patient") == {"p"}


def test_entity_index_values() -> None:
    sample = DataSample(
        id="ds",
        patient_id="p",
        labels={CodingReference(type="T", code="c"), CodingReference(type="U"), CodingReference(code="orphan")},
        security_metadata=server_metadata(None, frozenset({"h"})),
    )
    assert entity_index_values(sample, "id") == {"ds"}
    assert entity_index_values(sample, "patient") == {"p"}
    assert entity_index_values(sample, "data_owner") == {"h"}
    assert entity_index_values(sample, "label") == {("T", "c"), ("T", None), ("U", None)}
    assert entity_index_values(DataSample(), "id") == frozenset()
    with pytest.raises(ValueError, match="unknown index key"):
        entity_index_values(sample, "colour")
