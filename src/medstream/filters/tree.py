"""The filter tree: the three combinators, `Filter` (the union of every node, discriminated by `$type`) and
the registry from `$type` to node class.

A combinator has the entity type of its children, which must all agree.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from medstream.filters.base import MAX_LIST_SIZE, FilterNode
from medstream.filters.nodes import (
    LEAF_TYPES,
    AllContactsFilter,
    AllExchangeDataFilter,
    AllHealthcareProfessionalsFilter,
    AllMedicalDevicesFilter,
    AllUsersFilter,
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
    HealthcareElementByHealthcarePartyBlindIndexFilter,
    HealthcareElementByHealthcarePartyFilter,
    HealthcareElementByHealthcarePartyIdentifiersFilter,
    HealthcareElementByHealthcarePartyLabelCodeFilter,
    HealthcareElementByHealthcarePartyPatientFilter,
    HealthcareElementByIdsFilter,
    HealthcareProfessionalByIdsFilter,
    HealthcareProfessionalByLabelCodeFilter,
    HealthcareProfessionalByNameFilter,
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
    UserByIdsFilter,
    UsersByPatientIdFilter,
)


def _same_entity_type(children: tuple[Filter, ...], combinator: str) -> None:
    types = list(dict.fromkeys(child.entity_type for child in children))
    if len(types) > 1:
        raise ValueError(f"{combinator} mixes entity types {' and '.join(types)}; its filters must share one")


class IntersectionFilter(FilterNode):
    """The entities every filter of `filters` matches."""

    filter_type: Literal["IntersectionFilter"] = Field("IntersectionFilter", alias="$type")
    filters: tuple[Filter, ...] = Field(min_length=1, max_length=MAX_LIST_SIZE)

    @model_validator(mode="after")
    def _check_entity_types(self) -> Self:
        _same_entity_type(self.filters, "IntersectionFilter")
        return self

    @cached_property
    def entity_type(self) -> str:
        return self.filters[0].entity_type


class UnionFilter(FilterNode):
    """The entities at least one filter of `filters` matches."""

    filter_type: Literal["UnionFilter"] = Field("UnionFilter", alias="$type")
    filters: tuple[Filter, ...] = Field(min_length=1, max_length=MAX_LIST_SIZE)

    @model_validator(mode="after")
    def _check_entity_types(self) -> Self:
        _same_entity_type(self.filters, "UnionFilter")
        return self

    @cached_property
    def entity_type(self) -> str:
        return self.filters[0].entity_type


class ComplementFilter(FilterNode):
    """The entities `superSet` matches and `subSet` does not."""

    filter_type: Literal["ComplementFilter"] = Field("ComplementFilter", alias="$type")
    super_set: Filter
    sub_set: Filter

    @model_validator(mode="after")
    def _check_entity_types(self) -> Self:
        _same_entity_type((self.super_set, self.sub_set), "ComplementFilter")
        return self

    @cached_property
    def entity_type(self) -> str:
        return self.super_set.entity_type


Combinator = IntersectionFilter | UnionFilter | ComplementFilter

Filter = Annotated[
    DataSampleByIdsFilter
    | DataSampleByHealthcarePartyFilter
    | DataSampleByHealthcarePartyIdentifiersFilter
    | DataSampleByHealthcarePartyBlindIndexFilter
    | DataSampleByHealthcarePartyTagCodeDateFilter
    | DataSampleByHealthcarePartyPatientFilter
    | DataSampleByHealthcarePartyHealthcareElementIdsFilter
    | PatientByIdsFilter
    | PatientByHealthcarePartyFilter
    | PatientByHealthcarePartyIdentifiersFilter
    | PatientByHealthcarePartyBlindIndexFilter
    | PatientByHealthcarePartyGenderEducationProfessionFilter
    | PatientByHealthcarePartySsinsFilter
    | PatientByHealthcarePartyDateOfBirthBetweenFilter
    | PatientByHealthcarePartyNameContainsFuzzyFilter
    | HealthcareElementByIdsFilter
    | HealthcareElementByHealthcarePartyFilter
    | HealthcareElementByHealthcarePartyIdentifiersFilter
    | HealthcareElementByHealthcarePartyBlindIndexFilter
    | HealthcareElementByHealthcarePartyLabelCodeFilter
    | HealthcareElementByHealthcarePartyPatientFilter
    | HealthcareProfessionalByIdsFilter
    | AllHealthcareProfessionalsFilter
    | HealthcareProfessionalByLabelCodeFilter
    | HealthcareProfessionalByNameFilter
    | MedicalDeviceByIdsFilter
    | AllMedicalDevicesFilter
    | MedicalDeviceByLabelCodeFilter
    | ContactByIdsFilter
    | AllContactsFilter
    | ContactByLabelCodeFilter
    | NotificationsByIdFilter
    | NotificationsByHcPartyAndTypeFilter
    | NotificationsAfterDateFilter
    | UserByIdsFilter
    | UsersByPatientIdFilter
    | AllUsersFilter
    | ExchangeDataByIdsFilter
    | ExchangeDataByDelegatorFilter
    | ExchangeDataByDelegateFilter
    | AllExchangeDataFilter
    | IntersectionFilter
    | UnionFilter
    | ComplementFilter,
    Field(discriminator="filter_type"),
]

for _combinator in (IntersectionFilter, UnionFilter, ComplementFilter):
    _combinator.model_rebuild()

COMBINATOR_TYPES: tuple[type[FilterNode], ...] = (IntersectionFilter, UnionFilter, ComplementFilter)

# `$type` -> node class, for every node.
NODE_TYPES: dict[str, type[FilterNode]] = {
    str(cls.model_fields["filter_type"].default): cls for cls in (*LEAF_TYPES, *COMBINATOR_TYPES)
}
