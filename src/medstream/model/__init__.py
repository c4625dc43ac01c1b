"""The Medstream data model: the Medtech entities, exchange data and the value types they are made of."""

from __future__ import annotations

from medstream.model.base import MAX_STRING_LENGTH, MedstreamModel
from medstream.model.common import (
    Address,
    AddressType,
    Base64Text,
    CodingReference,
    CodingSet,
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
    Telecom,
    TelecomType,
    TypedValue,
)
from medstream.model.contact import Contact
from medstream.model.data_sample import Content, DataSample, Measure, TimeSeries
from medstream.model.entities import ENTITY_KINDS, KIND_BY_MODEL, KIND_BY_NAME, EntityKind, kind_of
from medstream.model.exchange_data import ExchangeData
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
from medstream.model.security import (
    AccessLevel,
    CryptoKey,
    KeyStatus,
    SecureDelegation,
    SecurityMetadata,
    server_delegation_key,
)
from medstream.model.user import SharedDataType, User

__all__ = [
    "ENTITY_KINDS",
    "KIND_BY_MODEL",
    "KIND_BY_NAME",
    "MAX_STRING_LENGTH",
    "AccessLevel",
    "Address",
    "AddressType",
    "Base64Text",
    "CodingReference",
    "CodingSet",
    "Contact",
    "Content",
    "CryptoKey",
    "DataSample",
    "DeactivationReason",
    "Entity",
    "EntityId",
    "EntityKind",
    "ExchangeData",
    "FuzzyDate",
    "FuzzyDateTime",
    "Gender",
    "HealthcareElement",
    "HealthcareProfessional",
    "Identifier",
    "KeyStatus",
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
    "SecureDelegation",
    "SecurityMetadata",
    "SharedDataType",
    "StringSet",
    "Telecom",
    "TelecomType",
    "TimeSeries",
    "TypedValue",
    "User",
    "kind_of",
    "server_delegation_key",
]
