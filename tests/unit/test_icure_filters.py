"""iCure's filter combinators (UnionFilter, IntersectionFilter, ComplementFilter, as cardinal's `union`,
`intersection` and `difference` send them) compiled to Medstream's nodes: the translation, its refusals and
bounds, and a property test that the compiled filter selects exactly what the combinators' set semantics says,
leaf by leaf evaluated here on the iCure JSON itself."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medstream.delegations import server_metadata
from medstream.errors import PayloadTooLargeError, ValidationError
from medstream.filters import (
    ComplementFilter,
    DataSampleByHealthcarePartyTagCodeDateFilter,
    IntersectionFilter,
    PatientByHealthcarePartyDateOfBirthBetweenFilter,
    PatientByHealthcarePartyFilter,
    PatientByHealthcarePartyGenderEducationProfessionFilter,
    PatientByIdsFilter,
    UnionFilter,
    matches,
)
from medstream.filters.parse import MAX_DEPTH, MAX_NODES
from medstream.icure.filters import medstream_filter
from medstream.model import Gender, Patient

HCP, OTHER = "hcp-1", "hcp-2"


def by_hcp(owner: str = HCP) -> dict[str, Any]:
    return {"$type": "PatientByHcPartyFilter", "healthcarePartyId": owner}


def by_gender(gender: str, profession: str | None = None, owner: str = HCP) -> dict[str, Any]:
    # As cardinal 2.14 serialises it: every field, null when not given.
    return {"$type": "PatientByHcPartyGenderEducationProfession", "desc": None, "healthcarePartyId": owner,
            "gender": gender, "education": None, "profession": profession}  # fmt: skip


def born(low: int | None, high: int | None, owner: str = HCP) -> dict[str, Any]:
    return {"$type": "PatientByHcPartyDateOfBirthBetweenFilter", "healthcarePartyId": owner,
            "minDateOfBirth": low, "maxDateOfBirth": high}  # fmt: skip


def tagged(owner: str = HCP) -> dict[str, Any]:
    return {"$type": "ServiceByHcPartyTagCodeDateFilter", "healthcarePartyId": owner, "tagType": "IC-TEST"}


def union(*filters: dict[str, Any]) -> dict[str, Any]:
    return {"$type": "UnionFilter", "desc": None, "filters": list(filters)}


def intersection(*filters: dict[str, Any]) -> dict[str, Any]:
    return {"$type": "IntersectionFilter", "filters": list(filters)}


def difference(of: dict[str, Any], subtracting: dict[str, Any]) -> dict[str, Any]:
    return {"$type": "ComplementFilter", "superSet": of, "subSet": subtracting}


# -- translation -------------------------------------------------------------------------------------------------


def test_each_combinator_becomes_medstreams_over_the_translated_leaves() -> None:
    tree = difference(union(by_gender("female"), born(19600101, 19691231)), intersection(by_gender("female", "knight")))
    assert medstream_filter(tree, "Patient") == ComplementFilter(
        super_set=UnionFilter(
            filters=(
                PatientByHealthcarePartyGenderEducationProfessionFilter(
                    healthcare_party_id=HCP, gender=Gender("female")
                ),
                PatientByHealthcarePartyDateOfBirthBetweenFilter(
                    healthcare_party_id=HCP, min_date_of_birth=19600101, max_date_of_birth=19691231
                ),
            )
        ),
        sub_set=IntersectionFilter(
            filters=(
                PatientByHealthcarePartyGenderEducationProfessionFilter(
                    healthcare_party_id=HCP, gender=Gender("female"), profession="knight"
                ),
            )
        ),
    )
    services = medstream_filter(union(tagged(), tagged(OTHER)), "DataSample")
    assert services == UnionFilter(
        filters=(
            DataSampleByHealthcarePartyTagCodeDateFilter(healthcare_party_id=HCP, tag_type="IC-TEST"),
            DataSampleByHealthcarePartyTagCodeDateFilter(healthcare_party_id=OTHER, tag_type="IC-TEST"),
        )
    )


def test_the_patient_leaves_cardinal_sends_for_its_clear_fields() -> None:
    assert medstream_filter({"$type": "PatientByIdsFilter", "ids": ["a", "b"]}, "Patient") == PatientByIdsFilter(
        ids=frozenset({"a", "b"})
    )
    one_day = {"$type": "PatientByHcPartyDateOfBirthFilter", "healthcarePartyId": HCP, "dateOfBirth": 19800101}
    assert medstream_filter(one_day, "Patient") == PatientByHealthcarePartyDateOfBirthBetweenFilter(
        healthcare_party_id=HCP, min_date_of_birth=19800101, max_date_of_birth=19800101
    )
    assert medstream_filter(by_hcp(), "Patient") == PatientByHealthcarePartyFilter(healthcare_party_id=HCP)


NO_GENDER = {"$type": "PatientByHcPartyGenderEducationProfession", "healthcarePartyId": HCP}
NO_OWNER = {"$type": "PatientByHcPartyDateOfBirthBetweenFilter", "minDateOfBirth": 1}
NOT_SERVED = {"$type": "PatientByHcPartyAndActiveFilter"}
BY_NAME = {"$type": "PatientByHcPartyNameFilter", "healthcarePartyId": HCP}


@pytest.mark.parametrize(
    ("data", "entity_type", "named"),
    [
        # A leaf of another entity class, at any depth, names the leaf and where it is.
        (
            union(by_hcp(), tagged()),
            "Patient",
            r"ServiceByHcParty\w+ selects DataSamples, not Patients \(at filters\[1\]\)",
        ),
        (difference(tagged(), union(tagged(), by_hcp())), "DataSample", r"Patients.*\(at subSet\.filters\[1\]\)"),
        # An unknown leaf: named, with what is served.
        (
            intersection(by_hcp(), NOT_SERVED),
            "Patient",
            r"'PatientByHcPartyAndActiveFilter' not served; served: .*PatientByIdsFilter, and UnionFilter/",
        ),
        (union(BY_NAME), "Patient", "names is encrypted"),
        (union(), "Patient", "UnionFilter needs at least one filter"),
        (intersection(), "Patient", "IntersectionFilter needs at least one filter"),
        ({"$type": "ComplementFilter", "superSet": by_hcp()}, "Patient", "subSet"),
        ({**union(by_hcp()), "color": "red"}, "Patient", "color"),
        (union(by_hcp(), "PatientByHcPartyFilter"), "Patient", r"a JSON object with its \$type \(at filters\[1\]\)"),
        (union(NO_GENDER), "Patient", "needs its gender"),
        (union(by_gender("elf")), "Patient", "gender"),
        (union(NO_OWNER), "Patient", "needs its healthcarePartyId"),
    ],
)
def test_a_combinator_medstream_cannot_evaluate_is_refused_naming_it(
    data: dict[str, Any], entity_type: str, named: str
) -> None:
    with pytest.raises(ValidationError, match=named) as refused:
        medstream_filter(data, entity_type)
    assert not isinstance(refused.value, PayloadTooLargeError)


def test_a_tree_is_bounded_as_medstreams_own_filters_are() -> None:
    deep: dict[str, Any] = by_hcp()
    for _ in range(MAX_DEPTH - 1):
        deep = union(deep)
    assert isinstance(medstream_filter(deep, "Patient"), UnionFilter)
    with pytest.raises(PayloadTooLargeError, match=f"deeper than {MAX_DEPTH} levels"):
        medstream_filter(union(deep), "Patient")
    wide = union(*[by_hcp()] * (MAX_NODES - 1))
    assert isinstance(medstream_filter(wide, "Patient"), UnionFilter)
    with pytest.raises(PayloadTooLargeError, match=f"more than {MAX_NODES} nodes"):
        medstream_filter(union(*[by_hcp()] * MAX_NODES), "Patient")
    many_ids = [{"$type": "PatientByIdsFilter", "ids": [f"p{i}" for i in range(6000)]}] * 2
    with pytest.raises(PayloadTooLargeError, match="more than 10000 values"):
        medstream_filter(union(*many_ids), "Patient")


# -- semantics ---------------------------------------------------------------------------------------------------

OWNERS = (HCP, OTHER)
IDS = ("p1", "p2", "p3")
GENDERS = ("male", "female")
PROFESSIONS = ("knight", "smith")
DATES = (19600101, 19650615, 19691231, 19800101)


def _in(value: Any, low: Any, high: Any) -> bool:
    return value is not None and (low is None or low <= value) and (high is None or value <= high)


def icure_selects(data: dict[str, Any], patient: Patient) -> bool:
    """What the iCure filter `data` selects, read from its JSON: the semantics the translation must keep."""
    kind = data["$type"]
    if kind == "UnionFilter":
        return any(icure_selects(child, patient) for child in data["filters"])
    if kind == "IntersectionFilter":
        return all(icure_selects(child, patient) for child in data["filters"])
    if kind == "ComplementFilter":
        return icure_selects(data["superSet"], patient) and not icure_selects(data["subSet"], patient)
    if kind == "PatientByIdsFilter":
        return patient.id in data["ids"]
    if data["healthcarePartyId"] not in patient.readers:
        return False
    if kind == "PatientByHcPartyFilter":
        return True
    if kind == "PatientByHcPartyGenderEducationProfession":
        gender = patient.gender.value if patient.gender is not None else None
        wanted_profession = data.get("profession")
        return gender == data["gender"] and (wanted_profession is None or patient.profession == wanted_profession)
    if kind == "PatientByHcPartyDateOfBirthBetweenFilter":
        return _in(patient.date_of_birth, data.get("minDateOfBirth"), data.get("maxDateOfBirth"))
    raise AssertionError(kind)


owners = st.sampled_from(OWNERS)
leaves = st.one_of(
    st.builds(by_hcp, owners),
    st.builds(lambda ids: {"$type": "PatientByIdsFilter", "ids": ids}, st.lists(st.sampled_from(IDS), max_size=2)),
    st.builds(by_gender, st.sampled_from(GENDERS), st.none() | st.sampled_from(PROFESSIONS), owners),
    st.builds(
        born,
        st.none() | st.sampled_from(DATES),
        st.none() | st.sampled_from(DATES),
        owners,
    ),
)
trees = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.builds(lambda fs: union(*fs), st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda fs: intersection(*fs), st.lists(children, min_size=1, max_size=3)),
        st.builds(difference, children, children),
    ),
    max_leaves=8,
)
patients = st.builds(
    lambda patient_id, readers, gender, profession, date: Patient(
        id=patient_id,
        gender=Gender(gender) if gender else None,
        profession=profession,
        date_of_birth=date,
        security_metadata=server_metadata(None, readers),
    ),
    st.sampled_from(IDS),
    st.frozensets(owners),
    st.none() | st.sampled_from(GENDERS),
    st.none() | st.sampled_from(PROFESSIONS),
    st.none() | st.sampled_from(DATES),
)


@settings(max_examples=300, deadline=None)
@given(tree=trees, population=st.lists(patients, min_size=1, max_size=6))
def test_the_compiled_filter_selects_what_the_combinators_mean(tree: dict[str, Any], population: list[Patient]) -> None:
    compiled = medstream_filter(tree, "Patient")
    for patient in population:
        assert matches(compiled, patient) == icure_selects(tree, patient), (tree, patient)
