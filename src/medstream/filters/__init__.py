"""One filter language for listings, searches and subscriptions (docs/filters.md).

A filter is a tree of nodes with a `$type`; `parse_filter` validates one from JSON. `matches` evaluates it on an
entity in memory (events); `index_constraint` gives its most selective indexable constraint (the subscription
index). Queries compile the same tree to SQL with identical meaning (`medstream.store.filter_sql`): this package
does no I/O and imports no database library.
"""

from __future__ import annotations

from medstream.filters.builders import (
    DataSampleFilter,
    FilterComposition,
    HealthcareElementFilter,
    HealthcareProfessionalFilter,
    MedicalDeviceFilter,
    NotificationFilter,
    PatientFilter,
    UserFilter,
)
from medstream.filters.index import IndexConstraint, entity_index_values, index_constraint
from medstream.filters.matcher import matches
from medstream.filters.nodes import (
    AllHealthcareProfessionalsFilter,
    AllMedicalDevicesFilter,
    AllUsersFilter,
    DataSampleByHealthcarePartyFilter,
    DataSampleByHealthcarePartyHealthcareElementIdsFilter,
    DataSampleByHealthcarePartyIdentifiersFilter,
    DataSampleByHealthcarePartyPatientFilter,
    DataSampleByHealthcarePartyTagCodeDateFilter,
    DataSampleByIdsFilter,
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
from medstream.filters.parse import parse_filter
from medstream.filters.tree import ComplementFilter, Filter, IntersectionFilter, UnionFilter

__all__ = [
    "AllHealthcareProfessionalsFilter",
    "AllMedicalDevicesFilter",
    "AllUsersFilter",
    "ComplementFilter",
    "DataSampleByHealthcarePartyFilter",
    "DataSampleByHealthcarePartyHealthcareElementIdsFilter",
    "DataSampleByHealthcarePartyIdentifiersFilter",
    "DataSampleByHealthcarePartyPatientFilter",
    "DataSampleByHealthcarePartyTagCodeDateFilter",
    "DataSampleByIdsFilter",
    "DataSampleFilter",
    "Filter",
    "FilterComposition",
    "HealthcareElementByHealthcarePartyFilter",
    "HealthcareElementByHealthcarePartyIdentifiersFilter",
    "HealthcareElementByHealthcarePartyLabelCodeFilter",
    "HealthcareElementByHealthcarePartyPatientFilter",
    "HealthcareElementByIdsFilter",
    "HealthcareElementFilter",
    "HealthcareProfessionalByIdsFilter",
    "HealthcareProfessionalByLabelCodeFilter",
    "HealthcareProfessionalByNameFilter",
    "HealthcareProfessionalFilter",
    "IndexConstraint",
    "IntersectionFilter",
    "MedicalDeviceByIdsFilter",
    "MedicalDeviceByLabelCodeFilter",
    "MedicalDeviceFilter",
    "NotificationFilter",
    "NotificationsAfterDateFilter",
    "NotificationsByHcPartyAndTypeFilter",
    "NotificationsByIdFilter",
    "PatientByHealthcarePartyDateOfBirthBetweenFilter",
    "PatientByHealthcarePartyFilter",
    "PatientByHealthcarePartyGenderEducationProfessionFilter",
    "PatientByHealthcarePartyIdentifiersFilter",
    "PatientByHealthcarePartyNameContainsFuzzyFilter",
    "PatientByHealthcarePartySsinsFilter",
    "PatientByIdsFilter",
    "PatientFilter",
    "UnionFilter",
    "UserByIdsFilter",
    "UserFilter",
    "UsersByPatientIdFilter",
    "entity_index_values",
    "index_constraint",
    "matches",
    "parse_filter",
]
