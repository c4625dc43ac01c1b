"""One filter language for listings, searches and subscriptions (docs/filters.md).

A filter is a tree of nodes with a `$type`; `parse_filter` validates one from JSON. `matches` evaluates it on an
entity in memory (events), `compile_filter` turns it into a SQL WHERE clause (queries), with identical meaning;
`index_constraint` gives its most selective indexable constraint (the subscription index).
"""

from __future__ import annotations

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
from medstream.filters.sql import FilterTables, compile_filter
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
    "Filter",
    "FilterTables",
    "HealthcareElementByHealthcarePartyFilter",
    "HealthcareElementByHealthcarePartyIdentifiersFilter",
    "HealthcareElementByHealthcarePartyLabelCodeFilter",
    "HealthcareElementByHealthcarePartyPatientFilter",
    "HealthcareElementByIdsFilter",
    "HealthcareProfessionalByIdsFilter",
    "HealthcareProfessionalByLabelCodeFilter",
    "HealthcareProfessionalByNameFilter",
    "IndexConstraint",
    "IntersectionFilter",
    "MedicalDeviceByIdsFilter",
    "MedicalDeviceByLabelCodeFilter",
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
    "UnionFilter",
    "UserByIdsFilter",
    "UsersByPatientIdFilter",
    "compile_filter",
    "entity_index_values",
    "index_constraint",
    "matches",
    "parse_filter",
]
