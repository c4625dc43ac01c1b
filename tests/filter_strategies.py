"""Hypothesis strategies for filter trees that hit the entities under test.

`FilterPool.of(entities)` collects the values a filter can name (ids, readers, patients, identifiers, dates,
name fragments...) from the entities, plus a few that match nothing; `filters_for(kind, pool)` draws trees of
every node of that kind and of the three combinators, from that pool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from medstream.delegations import server_metadata
from medstream.filters import (
    AllContactsFilter,
    AllExchangeDataFilter,
    AllHealthcareProfessionalsFilter,
    AllMedicalDevicesFilter,
    AllUsersFilter,
    ComplementFilter,
    ContactByIdsFilter,
    ContactByLabelCodeFilter,
    DataSampleByHealthcarePartyBlindIndexFilter,
    DataSampleByHealthcarePartyFilter,
    DataSampleByHealthcarePartyHealthcareElementIdsFilter,
    DataSampleByHealthcarePartyIdentifiersFilter,
    DataSampleByHealthcarePartyPatientFilter,
    DataSampleByHealthcarePartyTagCodeDateFilter,
    DataSampleByIdsFilter,
    ExchangeDataByDelegateFilter,
    ExchangeDataByDelegatorFilter,
    ExchangeDataByIdsFilter,
    Filter,
    HealthcareElementByHealthcarePartyBlindIndexFilter,
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
    PatientByHealthcarePartyBlindIndexFilter,
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
)
from medstream.filters.names import search_name
from medstream.model import Entity, ExchangeData, Gender, Identifier, NotificationType
from medstream.model.blind_index import BLIND_INDEXED
from medstream.model.text import normalize_for_search
from tests.strategies import BLIND_TOKENS, CODE_TYPES, CODES, EDUCATIONS, PROFESSIONS, entities_of

# Values no generated entity has: filters naming them select nothing.
_NOWHERE = "no-such-value"
_NOWHERE_TOKEN = "bm8tc3VjaC10b2tlbiEhIQ=="
# A few data owners and patients shared by the entities of `entities_for_filters`, so that filters naming one
# select several entities, and some not.
DATA_OWNERS = ("hcp-a", "hcp-b", "pat-a")
PATIENTS = ("pat-a", "pat-b")


@st.composite
def entities_for_filters(draw: st.DrawFn, kind: str) -> Entity:
    """An entity of `kind` (as `entities_of`) shared with some of DATA_OWNERS, about one of PATIENTS if it links
    to a patient."""
    entity = draw(entities_of(kind))
    readers = draw(st.frozensets(st.sampled_from(DATA_OWNERS)))
    update: dict[str, Any] = {"security_metadata": server_metadata(None, readers)}
    if isinstance(entity, ExchangeData):
        update["delegator"] = draw(st.sampled_from(DATA_OWNERS))
        update["delegate"] = draw(st.sampled_from(DATA_OWNERS))
    if getattr(entity, "patient_id", None) is not None:
        update["patient_id"] = draw(st.sampled_from(PATIENTS))
    return entity.model_copy(update=update)


@dataclass(frozen=True)
class FilterPool:
    """The values generated filters name."""

    ids: tuple[str, ...]
    data_owners: tuple[str, ...]
    patients: tuple[str, ...]
    healthcare_elements: tuple[str, ...]
    identifiers: tuple[tuple[str | None, str | None], ...]
    dates: tuple[int, ...]
    names: tuple[str, ...]
    ssins: tuple[str, ...]
    codings: tuple[tuple[str, str | None], ...]  # (type, code) of the entities' labels and codes, then others
    blind_tokens: tuple[str, ...]  # the tokens of the entities' blind indexes (under any field), then others

    @classmethod
    def of(cls, entities: Iterable[Entity], *, data_owners: Iterable[str] = ()) -> FilterPool:
        # Values of storable entities only: the stores refuse text holding a NUL character (U+0000), so no filter
        # a client sends names one, and the server refuses a filter holding one (tested on its own). Named, such
        # a value would fail the round-trip property, and hypothesis would shrink it for minutes.
        entities = [e for e in entities if b"\\u0000" not in e.to_json()]
        attrs: Callable[[str], list[Any]] = lambda name: [getattr(e, name, None) for e in entities]  # noqa: E731
        # Not deduplicated: how many dates there are must not depend on their values, which the server sets
        # (two entities may or may not share a creation millisecond), or hypothesis could not replay a case.
        dates: list[int] = [0]
        for value in [*attrs("value_date"), *attrs("date_of_birth"), *attrs("created")]:
            if value is not None:
                dates.extend((value - 1, value, value + 1))
        names = {"Élodie", "åström", "o'brien"}
        for entity in entities:
            text = search_name(entity)
            if text:
                middle = len(text) // 2
                names.update((text, text[:middle], text[middle:], text[1:-1]))
        return cls(
            ids=_with_nowhere(e.id for e in entities),
            data_owners=_with_nowhere([*data_owners, *(r for e in entities for r in e.readers)]),
            patients=_with_nowhere(attrs("patient_id")),
            healthcare_elements=_with_nowhere(h for e in entities for h in getattr(e, "healthcare_element_ids", ())),
            identifiers=(
                *sorted({(i.system, i.value) for e in entities for i in getattr(e, "identifiers", ())}, key=repr),
                (None, _NOWHERE),
            ),
            dates=tuple(sorted(dates)),
            names=tuple(sorted(n for n in names if normalize_for_search(n))),
            ssins=_with_nowhere(attrs("ssin")),
            codings=(
                *sorted({(c.type, c.code) for e in entities for c in (*e.labels, *e.codes) if c.type}, key=repr),
                *((t, c) for t in CODE_TYPES for c in (*CODES, None)),
            ),
            blind_tokens=(
                *sorted({t for e in entities for tokens in (e.blind_index or {}).values() for t in tokens}),
                *BLIND_TOKENS[:2],
                _NOWHERE_TOKEN,
            ),
        )


def _with_nowhere(values: Iterable[str | None]) -> tuple[str, ...]:
    # Last: hypothesis draws the first elements of a sample most often, and those should select something.
    return (*sorted({v for v in values if v} - {_NOWHERE}), _NOWHERE)


def _sets(values: tuple[str, ...]) -> SearchStrategy[frozenset[str]]:
    """Mostly small non-empty sets of pool values; sometimes empty (which matches nothing)."""
    return st.frozensets(st.sampled_from(values), min_size=1, max_size=3) | st.just(frozenset())


def _node(cls: type[Any], **fields: SearchStrategy[Any]) -> SearchStrategy[Any]:
    """A node of `cls` with fields drawn from `fields` (by Python name; builds() would also infer the aliases)."""
    return st.fixed_dictionaries(fields).map(lambda values: cls(**values))


def _node_with_parts(
    cls: type[Any], parts: SearchStrategy[dict[str, Any]], **fields: SearchStrategy[Any]
) -> SearchStrategy[Any]:
    """A node whose label and code fields are drawn together by `parts`."""
    return st.tuples(parts, st.fixed_dictionaries(fields)).map(lambda drawn: cls(**drawn[0], **drawn[1]))


def _optional(strategy: SearchStrategy[Any]) -> SearchStrategy[Any]:
    return st.none() | strategy


@st.composite
def _coding_parts(draw: st.DrawFn, pool: FilterPool, label_names: tuple[str, str]) -> dict[str, str | None]:
    """A label part and a code part, at least one given, each code with its type; mostly codings the pool's
    entities carry (as labels or as codes, so that a label filter sometimes meets only a code)."""
    codings = st.sampled_from(pool.codings)
    part = codings | codings.map(lambda coding: (coding[0], None)) | st.none()
    label, code = draw(part), draw(part)
    if label is None and code is None:
        label = draw(codings)
    return {
        label_names[0]: label[0] if label else None,
        label_names[1]: label[1] if label else None,
        "code_type": code[0] if code else None,
        "code_code": code[1] if code else None,
    }


def _leaves(kind: str, pool: FilterPool) -> list[SearchStrategy[Any]]:
    owner = st.sampled_from(pool.data_owners)
    ids = _sets(pool.ids)
    identifier = st.sampled_from(pool.identifiers).map(lambda p: Identifier(system=p[0], value=p[1]))
    identifiers = st.lists(identifier, min_size=1, max_size=2).map(tuple) | st.just(())
    date = _optional(st.sampled_from(pool.dates))
    names = st.sampled_from(pool.names)
    tags = _coding_parts(pool, ("tag_type", "tag_code"))
    labels = _coding_parts(pool, ("label_type", "label_code"))

    by_kind: dict[str, list[SearchStrategy[Any]]] = {
        "DataSample": [
            _node(DataSampleByIdsFilter, ids=ids),
            _node(DataSampleByHealthcarePartyFilter, hcp_id=owner),
            _node(DataSampleByHealthcarePartyIdentifiersFilter, healthcare_party_id=owner, identifiers=identifiers),
            blind_index_filters_for("DataSample", pool),
            _node_with_parts(
                DataSampleByHealthcarePartyTagCodeDateFilter,
                tags,
                healthcare_party_id=owner,
                start_value_date=date,
                end_value_date=date,
                descending=st.booleans(),
            ),
            _node(
                DataSampleByHealthcarePartyPatientFilter, healthcare_party_id=owner, patient_ids=_sets(pool.patients)
            ),
            _node(
                DataSampleByHealthcarePartyHealthcareElementIdsFilter,
                healthcare_party_id=owner,
                healthcare_element_ids=_sets(pool.healthcare_elements),
            ),
        ],
        "Patient": [
            _node(PatientByIdsFilter, ids=ids),
            _node(PatientByHealthcarePartyFilter, healthcare_party_id=owner),
            _node(PatientByHealthcarePartyIdentifiersFilter, healthcare_party_id=owner, identifiers=identifiers),
            blind_index_filters_for("Patient", pool),
            _node(
                PatientByHealthcarePartyGenderEducationProfessionFilter,
                healthcare_party_id=owner,
                gender=st.sampled_from(Gender),
                education=_optional(st.sampled_from(EDUCATIONS)),
                profession=_optional(st.sampled_from(PROFESSIONS)),
            ),
            _node(PatientByHealthcarePartySsinsFilter, healthcare_party_id=owner, ssins=_sets(pool.ssins)),
            _node(
                PatientByHealthcarePartyDateOfBirthBetweenFilter,
                healthcare_party_id=owner,
                min_date_of_birth=date,
                max_date_of_birth=date,
            ),
            _node(PatientByHealthcarePartyNameContainsFuzzyFilter, healthcare_party_id=owner, search_string=names),
        ],
        "HealthcareElement": [
            _node(HealthcareElementByIdsFilter, ids=ids),
            _node(HealthcareElementByHealthcarePartyFilter, hcp_id=owner),
            _node(
                HealthcareElementByHealthcarePartyIdentifiersFilter, healthcare_party_id=owner, identifiers=identifiers
            ),
            blind_index_filters_for("HealthcareElement", pool),
            _node_with_parts(
                HealthcareElementByHealthcarePartyLabelCodeFilter,
                tags,
                healthcare_party_id=owner,
            ),
            _node(
                HealthcareElementByHealthcarePartyPatientFilter,
                healthcare_party_id=owner,
                patient_ids=_sets(pool.patients),
            ),
        ],
        "HealthcareProfessional": [
            _node(HealthcareProfessionalByIdsFilter, ids=ids),
            _node(AllHealthcareProfessionalsFilter),
            _node_with_parts(HealthcareProfessionalByLabelCodeFilter, labels),
            _node(HealthcareProfessionalByNameFilter, search_string=names),
        ],
        "Contact": [
            _node(ContactByIdsFilter, ids=ids),
            _node(AllContactsFilter),
            _node_with_parts(ContactByLabelCodeFilter, labels),
        ],
        "MedicalDevice": [
            _node(MedicalDeviceByIdsFilter, ids=ids),
            _node(AllMedicalDevicesFilter),
            _node_with_parts(MedicalDeviceByLabelCodeFilter, labels),
        ],
        "Notification": [
            _node(NotificationsByIdFilter, ids=ids),
            _node(
                NotificationsByHcPartyAndTypeFilter, healthcare_party_id=owner, type=st.sampled_from(NotificationType)
            ),
            _node(NotificationsAfterDateFilter, healthcare_party_id=owner, date=st.sampled_from(pool.dates)),
        ],
        "User": [
            _node(UserByIdsFilter, ids=ids),
            _node(UsersByPatientIdFilter, patient_id=st.sampled_from(pool.patients)),
            _node(AllUsersFilter),
        ],
        "ExchangeData": [
            _node(ExchangeDataByIdsFilter, ids=ids),
            _node(ExchangeDataByDelegatorFilter, delegator_id=owner),
            _node(ExchangeDataByDelegateFilter, delegate_id=owner),
            _node(AllExchangeDataFilter),
        ],
    }
    return by_kind[kind]


BLIND_INDEX_NODES: dict[str, type[Any]] = {
    "Patient": PatientByHealthcarePartyBlindIndexFilter,
    "DataSample": DataSampleByHealthcarePartyBlindIndexFilter,
    "HealthcareElement": HealthcareElementByHealthcarePartyBlindIndexFilter,
}


def blind_index_filters_for(kind: str, pool: FilterPool) -> SearchStrategy[Any]:
    """A blind-index node of `kind` on one of its blind-index fields, naming pool tokens (held under any field)."""
    return _node(
        BLIND_INDEX_NODES[kind],
        healthcare_party_id=st.sampled_from(pool.data_owners),
        field=st.sampled_from(tuple(BLIND_INDEXED[kind])),
        tokens=_sets(pool.blind_tokens),
    )


def leaf_filters_for(kind: str, pool: FilterPool) -> SearchStrategy[Filter]:
    """One leaf node of `kind`, of any of its node types."""
    return st.one_of(_leaves(kind, pool))


def filters_for(
    kind: str, pool: FilterPool, *, max_leaves: int = 6, leaves: SearchStrategy[Filter] | None = None
) -> SearchStrategy[Filter]:
    """Filter trees of `kind`: leaves (`leaf_filters_for`'s unless given) combined by intersections, unions and
    complements."""

    def combine(children: SearchStrategy[Filter]) -> SearchStrategy[Filter]:
        return st.one_of(
            st.lists(children, min_size=1, max_size=3).map(lambda fs: IntersectionFilter(filters=tuple(fs))),
            st.lists(children, min_size=1, max_size=3).map(lambda fs: UnionFilter(filters=tuple(fs))),
            _node(ComplementFilter, super_set=children, sub_set=children),
        )

    return st.recursive(leaf_filters_for(kind, pool) if leaves is None else leaves, combine, max_leaves=max_leaves)
