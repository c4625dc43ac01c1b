"""iCure's filters (`$type`s) as Medstream filter nodes, for the subscriptions of `/ws/v2` and its match calls.

Each iCure leaf filter served is parsed with exactly its field set, and becomes the Medstream node with the same
meaning (filters.md); any other `$type` is refused, naming the ones served, or, for iCure's patient searches by
a field Medstream keeps encrypted (names, ssin, identifiers), saying so: the server cannot read those values.

iCure's combinators (`UnionFilter`, `IntersectionFilter`, `ComplementFilter`, what cardinal's `union`,
`intersection` and `difference` of filter options send) become Medstream's combinators of the same names over
the translated children, for whichever leaves are registered in `FILTERS`; every leaf must select the entity type
asked for. A tree is bounded as Medstream's own filters are (`medstream.filters.parse`): too deep or too large
is a PayloadTooLargeError.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import pydantic
from pydantic import Field

from medstream.errors import PayloadTooLargeError, ValidationError
from medstream.filters.nodes import (
    DataSampleByHealthcarePartyTagCodeDateFilter,
    HealthcareElementByHealthcarePartyFilter,
    HealthcareElementByHealthcarePartyLabelCodeFilter,
    HealthcareElementByIdsFilter,
    PatientByHealthcarePartyDateOfBirthBetweenFilter,
    PatientByHealthcarePartyFilter,
    PatientByHealthcarePartyGenderEducationProfessionFilter,
    PatientByIdsFilter,
)
from medstream.filters.parse import MAX_DEPTH, MAX_NODES, MAX_VALUES
from medstream.filters.tree import ComplementFilter, Filter, IntersectionFilter, UnionFilter
from medstream.icure.shapes import IcureModel


class ServiceByHcPartyTagCodeDateFilter(IcureModel):
    """Services shared with a data owner, by tag and/or code, and value date."""

    type_: Literal["ServiceByHcPartyTagCodeDateFilter"] = Field(alias="$type")
    desc: str | None = None
    healthcare_party_id: str | None = None
    patient_secret_foreign_keys: list[str] | None = None
    tag_type: str | None = None
    tag_code: str | None = None
    code_type: str | None = None
    code_code: str | None = None
    start_value_date: int | None = None
    end_value_date: int | None = None
    descending: bool = False


class PatientByHcPartyFilter(IcureModel):
    """Every patient shared with a data owner."""

    type_: Literal["PatientByHcPartyFilter"] = Field(alias="$type")
    desc: str | None = None
    healthcare_party_id: str | None = None


class IcurePatientByIdsFilter(IcureModel):
    """The patients with these ids."""

    type_: Literal["PatientByIdsFilter"] = Field(alias="$type")
    desc: str | None = None
    ids: list[str]


class PatientByHcPartyGenderEducationProfession(IcureModel):
    """Patients shared with a data owner, of a gender, and of an education and a profession when given."""

    type_: Literal["PatientByHcPartyGenderEducationProfession"] = Field(alias="$type")
    desc: str | None = None
    healthcare_party_id: str | None = None
    gender: str | None = None
    education: str | None = None
    profession: str | None = None


class PatientByHcPartyDateOfBirthBetweenFilter(IcureModel):
    """Patients shared with a data owner, born within the bounds (YYYYMMDD, inclusive; an absent one is open)."""

    type_: Literal["PatientByHcPartyDateOfBirthBetweenFilter"] = Field(alias="$type")
    desc: str | None = None
    healthcare_party_id: str | None = None
    min_date_of_birth: int | None = None
    max_date_of_birth: int | None = None


class PatientByHcPartyDateOfBirthFilter(IcureModel):
    """Patients shared with a data owner, born on a date (YYYYMMDD): what cardinal sends for equal bounds."""

    type_: Literal["PatientByHcPartyDateOfBirthFilter"] = Field(alias="$type")
    desc: str | None = None
    healthcare_party_id: str | None = None
    date_of_birth: int | None = None


def _data_owner(type_name: str, healthcare_party_id: str | None) -> str:
    if healthcare_party_id is None:
        raise ValidationError(f"{type_name}: Medstream needs its healthcarePartyId")
    return healthcare_party_id


def _patient_by_ids(data: Mapping[str, Any]) -> Filter:
    return PatientByIdsFilter(ids=frozenset(IcurePatientByIdsFilter.model_validate(data).ids))


def _patient_by_gender(data: Mapping[str, Any]) -> Filter:
    parsed = PatientByHcPartyGenderEducationProfession.model_validate(data)
    owner = _data_owner(parsed.type_, parsed.healthcare_party_id)
    if parsed.gender is None:
        raise ValidationError(f"{parsed.type_}: Medstream needs its gender")
    return PatientByHealthcarePartyGenderEducationProfessionFilter.model_validate(
        {
            "healthcare_party_id": owner,
            "gender": parsed.gender,
            "education": parsed.education,
            "profession": parsed.profession,
        }
    )


def _patient_by_birth_between(data: Mapping[str, Any]) -> Filter:
    parsed = PatientByHcPartyDateOfBirthBetweenFilter.model_validate(data)
    unbounded = parsed.min_date_of_birth is None and parsed.max_date_of_birth is None
    return PatientByHealthcarePartyDateOfBirthBetweenFilter(
        healthcare_party_id=_data_owner(parsed.type_, parsed.healthcare_party_id),
        # A range selects dates: with no bound at all, the patients with a date of birth (Medstream's node without
        # bounds has no date condition).
        min_date_of_birth=0 if unbounded else parsed.min_date_of_birth,
        max_date_of_birth=parsed.max_date_of_birth,
    )


def _patient_by_birth(data: Mapping[str, Any]) -> Filter:
    parsed = PatientByHcPartyDateOfBirthFilter.model_validate(data)
    if parsed.date_of_birth is None:
        raise ValidationError(f"{parsed.type_}: Medstream needs its dateOfBirth")
    return PatientByHealthcarePartyDateOfBirthBetweenFilter(
        healthcare_party_id=_data_owner(parsed.type_, parsed.healthcare_party_id),
        min_date_of_birth=parsed.date_of_birth,
        max_date_of_birth=parsed.date_of_birth,
    )


class HealthElementByHcPartyFilter(IcureModel):
    """Every health element shared with a data owner (cardinal's `HealthElementFilters` "for self" and "for data
    owner")."""

    type_: Literal["HealthElementByHcPartyFilter"] = Field(alias="$type")
    desc: str | None = None
    hcp_id: str = Field(min_length=1)


class HealthElementByHcPartyTagCodeFilter(IcureModel):
    """Health elements shared with a data owner, by tag and/or code (`by_tag_...`, `by_code_...`)."""

    type_: Literal["HealthElementByHcPartyTagCodeFilter"] = Field(alias="$type")
    desc: str | None = None
    healthcare_party_id: str = Field(min_length=1)
    code_type: str | None = None
    code_code: str | None = None
    tag_type: str | None = None
    tag_code: str | None = None
    status: int | None = None


class HealthElementByIdsFilter(IcureModel):
    """The health elements with one of `ids`."""

    type_: Literal["HealthElementByIdsFilter"] = Field(alias="$type")
    desc: str | None = None
    ids: list[str] = Field(max_length=10_000)


def _patient_by_hc_party(data: Mapping[str, Any]) -> Filter:
    parsed = PatientByHcPartyFilter.model_validate(data)
    if parsed.healthcare_party_id is None:
        raise ValidationError("PatientByHcPartyFilter: Medstream needs its healthcarePartyId")
    return PatientByHealthcarePartyFilter(healthcare_party_id=parsed.healthcare_party_id)


def _service_by_tag_code_date(data: Mapping[str, Any]) -> Filter:
    parsed = ServiceByHcPartyTagCodeDateFilter.model_validate(data)
    if parsed.healthcare_party_id is None:
        raise ValidationError("ServiceByHcPartyTagCodeDateFilter: Medstream needs its healthcarePartyId")
    if parsed.patient_secret_foreign_keys is not None:
        raise ValidationError(
            "ServiceByHcPartyTagCodeDateFilter: Medstream does not select services by patientSecretForeignKeys"
        )
    return DataSampleByHealthcarePartyTagCodeDateFilter(
        healthcare_party_id=parsed.healthcare_party_id,
        tag_type=parsed.tag_type,
        tag_code=parsed.tag_code,
        code_type=parsed.code_type,
        code_code=parsed.code_code,
        start_value_date=parsed.start_value_date,
        end_value_date=parsed.end_value_date,
        descending=parsed.descending,
    )


def _health_element_by_hc_party(data: Mapping[str, Any]) -> Filter:
    parsed = HealthElementByHcPartyFilter.model_validate(data)
    return HealthcareElementByHealthcarePartyFilter(hcp_id=parsed.hcp_id)


def _health_element_by_tag_code(data: Mapping[str, Any]) -> Filter:
    parsed = HealthElementByHcPartyTagCodeFilter.model_validate(data)
    if parsed.status is not None:
        raise ValidationError("HealthElementByHcPartyTagCodeFilter: Medstream does not select by status")
    return HealthcareElementByHealthcarePartyLabelCodeFilter(
        healthcare_party_id=parsed.healthcare_party_id,
        tag_type=parsed.tag_type,
        tag_code=parsed.tag_code,
        code_type=parsed.code_type,
        code_code=parsed.code_code,
    )


def _health_element_by_ids(data: Mapping[str, Any]) -> Filter:
    return HealthcareElementByIdsFilter(ids=set(HealthElementByIdsFilter.model_validate(data).ids))


# `$type` -> (Medstream entity type, translation).
FILTERS: Mapping[str, tuple[str, Callable[[Mapping[str, Any]], Filter]]] = {
    "ServiceByHcPartyTagCodeDateFilter": ("DataSample", _service_by_tag_code_date),
    "PatientByHcPartyFilter": ("Patient", _patient_by_hc_party),
    "PatientByIdsFilter": ("Patient", _patient_by_ids),
    "PatientByHcPartyGenderEducationProfession": ("Patient", _patient_by_gender),
    "PatientByHcPartyDateOfBirthBetweenFilter": ("Patient", _patient_by_birth_between),
    "PatientByHcPartyDateOfBirthFilter": ("Patient", _patient_by_birth),
    "HealthElementByHcPartyFilter": ("HealthcareElement", _health_element_by_hc_party),
    "HealthElementByHcPartyTagCodeFilter": ("HealthcareElement", _health_element_by_tag_code),
    "HealthElementByIdsFilter": ("HealthcareElement", _health_element_by_ids),
}


# iCure filters that search a field Medstream's encryption configuration keeps in `encryptedSelf` (its iCure name).
READS_ENCRYPTED: Mapping[str, str] = {
    "PatientByHcPartyNameContainsFuzzyFilter": "names",
    "PatientByHcPartyNameFilter": "names",
    "PatientByHcPartyAndSsinsFilter": "ssin",
    "PatientByHcPartyAndIdentifiersFilter": "identifier",
    "PatientByHcPartyAndExternalIdFilter": "externalId",
    "HealthElementByHcPartyIdentifiersFilter": "identifiers",
}


class IcureUnionFilter(IcureModel):
    """The entities at least one of `filters` selects."""

    type_: Literal["UnionFilter"] = Field(alias="$type")
    desc: str | None = None
    filters: list[Any] = Field(default_factory=list)


class IcureIntersectionFilter(IcureModel):
    """The entities every one of `filters` selects."""

    type_: Literal["IntersectionFilter"] = Field(alias="$type")
    desc: str | None = None
    filters: list[Any] = Field(default_factory=list)


class IcureComplementFilter(IcureModel):
    """The entities `superSet` selects and `subSet` does not."""

    type_: Literal["ComplementFilter"] = Field(alias="$type")
    desc: str | None = None
    super_set: Any
    sub_set: Any


COMBINATORS: Mapping[str, type[IcureModel]] = {
    "UnionFilter": IcureUnionFilter,
    "IntersectionFilter": IcureIntersectionFilter,
    "ComplementFilter": IcureComplementFilter,
}


def medstream_filter(data: Mapping[str, Any], entity_type: str) -> Filter:
    """The Medstream node of an iCure filter (a leaf or a combinator of leaves) on `entity_type`; ValidationError
    saying what is wrong, and where in the tree when it is below the root."""
    return _Translation(entity_type).node(data, "", 1)


def _join(path: str, step: str) -> str:
    return f"{path}.{step}" if path and not step.startswith("[") else f"{path}{step}"


def _at(message: str, path: str) -> str:
    # The place comes last: a websocket close reason holds 123 bytes, and what is wrong matters most.
    return f"{message} (at {path})" if path else message


class _Translation:
    """One tree's walk: the nodes and list values met so far, against MAX_NODES and MAX_VALUES."""

    def __init__(self, entity_type: str) -> None:
        self.entity_type = entity_type
        self.nodes = 0
        self.values = 0

    def node(self, data: Any, path: str, depth: int) -> Filter:
        if depth > MAX_DEPTH:
            raise PayloadTooLargeError(_at(f"the filter is deeper than {MAX_DEPTH} levels", path))
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise PayloadTooLargeError(_at(f"the filter has more than {MAX_NODES} nodes", path))
        if not isinstance(data, Mapping):
            raise ValidationError(_at("a filter is a JSON object with its $type", path))
        type_name = data.get("$type")
        combinator = COMBINATORS.get(type_name) if isinstance(type_name, str) else None
        if combinator is None:
            self.values += sum(len(value) for value in data.values() if isinstance(value, list))
            if self.values > MAX_VALUES:
                raise PayloadTooLargeError(_at(f"the filter's lists hold more than {MAX_VALUES} values", path))
            try:
                return _leaf(data, self.entity_type)
            except ValidationError as exc:
                raise type(exc)(_at(exc.message, path)) from None
        parsed = _parsed(combinator, data, str(type_name), path)
        if isinstance(parsed, IcureComplementFilter):
            return ComplementFilter(
                super_set=self.node(parsed.super_set, _join(path, "superSet"), depth + 1),
                sub_set=self.node(parsed.sub_set, _join(path, "subSet"), depth + 1),
            )
        assert isinstance(parsed, IcureUnionFilter | IcureIntersectionFilter)
        if not parsed.filters:
            raise ValidationError(_at(f"{type_name} needs at least one filter", path))
        children = tuple(
            self.node(child, _join(path, f"filters[{i}]"), depth + 1) for i, child in enumerate(parsed.filters)
        )
        if isinstance(parsed, IcureUnionFilter):
            return UnionFilter(filters=children)
        return IntersectionFilter(filters=children)


def _parsed(model: type[IcureModel], data: Mapping[str, Any], type_name: str, path: str) -> IcureModel:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ValidationError(_at(_problems(exc, type_name), path)) from None


def _problems(exc: pydantic.ValidationError, type_name: str) -> str:
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or type_name}: {e['msg']}" for e in exc.errors())
    return f"{type_name}: {problems}"


def _leaf(data: Mapping[str, Any], entity_type: str) -> Filter:
    """The Medstream node of one iCure leaf filter on `entity_type`."""
    type_name = data.get("$type")
    served = FILTERS.get(type_name) if isinstance(type_name, str) else None
    if served is None and isinstance(type_name, str) and type_name in READS_ENCRYPTED:
        # Short: it is also a websocket close reason (123 bytes at most).
        field = READS_ENCRYPTED[type_name]
        raise ValidationError(f"{type_name} not served: {field} is encrypted, the server cannot read it")
    if served is None:
        known = ", ".join(sorted(name for name, (served_type, _) in FILTERS.items() if served_type == entity_type))
        # Short, what matters first: it is also a websocket close reason (123 bytes at most).
        raise ValidationError(f"$type {type_name!r} not served; served: {known}, and {'/'.join(COMBINATORS)} of them")
    if served[0] != entity_type:
        raise ValidationError(f"filter {type_name} selects {served[0]}s, not {entity_type}s")
    try:
        return served[1](data)
    except pydantic.ValidationError as exc:
        raise ValidationError(_problems(exc, str(type_name))) from None
