"""The Medstream data model: the seven Medtech entities and the value types they are made of."""

from __future__ import annotations

from medstream.model.base import MAX_STRING_LENGTH, MedstreamModel
from medstream.model.common import (
    Address,
    AddressType,
    Base64Text,
    CodingReference,
    CodingSet,
    Delegation,
    Entity,
    EntityId,
    FuzzyDateTime,
    Identifier,
    PersonName,
    PersonNameUse,
    Property,
    PropertyType,
    PropertyTypeType,
    StringSet,
    SystemMetaData,
    Telecom,
    TelecomType,
    TypedValue,
)
from medstream.model.data_sample import Content, DataSample, Measure, TimeSeries
from medstream.model.entities import ENTITY_KINDS, KIND_BY_MODEL, KIND_BY_NAME, EntityKind, kind_of
from medstream.model.healthcare_element import HealthcareElement
from medstream.model.healthcare_professional import HealthcareProfessional
from medstream.model.medical_device import MedicalDevice
from medstream.model.notification import Notification, NotificationStatus, NotificationType
from medstream.model.patient import (
    DeactivationReason,
    FuzzyDate,
    Gender,
    Partnership,
    Patient,
    PatientHealthCareParty,
    PersonalStatus,
)
from medstream.model.user import SharedDataType, User

__all__ = [
    "ENTITY_KINDS",
    "KIND_BY_MODEL",
    "KIND_BY_NAME",
    "MAX_STRING_LENGTH",
    "Address",
    "AddressType",
    "Base64Text",
    "CodingReference",
    "CodingSet",
    "Content",
    "DataSample",
    "DeactivationReason",
    "Delegation",
    "Entity",
    "EntityId",
    "EntityKind",
    "FuzzyDate",
    "FuzzyDateTime",
    "Gender",
    "HealthcareElement",
    "HealthcareProfessional",
    "Identifier",
    "Measure",
    "MedicalDevice",
    "MedstreamModel",
    "Notification",
    "NotificationStatus",
    "NotificationType",
    "Partnership",
    "Patient",
    "PatientHealthCareParty",
    "PersonName",
    "PersonNameUse",
    "PersonalStatus",
    "Property",
    "PropertyType",
    "PropertyTypeType",
    "SharedDataType",
    "StringSet",
    "SystemMetaData",
    "Telecom",
    "TelecomType",
    "TimeSeries",
    "TypedValue",
    "User",
    "kind_of",
]
