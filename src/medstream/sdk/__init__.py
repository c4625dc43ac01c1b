"""The Medstream SDK: `await MedTechApi.builder().with_url(u).with_username(l).with_password(p).build()`."""

from medstream.crypto.key_pair_update import KeyPairUpdateAnswer, KeyPairUpdateOutcome
from medstream.errors import (
    AuthenticationError,
    ConflictError,
    DecryptionError,
    ForbiddenError,
    KeyVerificationError,
    MedstreamError,
    MissingKeysError,
    NotFoundError,
    ValidationError,
)
from medstream.filters.builders import (
    ContactFilter,
    DataSampleFilter,
    ExchangeDataFilter,
    FilterComposition,
    HealthcareElementFilter,
    HealthcareProfessionalFilter,
    MedicalDeviceFilter,
    NotificationFilter,
    PatientFilter,
    UserFilter,
)
from medstream.sdk.apis import (
    ContactApi,
    DataSampleApi,
    ExchangeDataApi,
    HealthcareElementApi,
    HealthcareProfessionalApi,
    MedicalDeviceApi,
    NotificationApi,
    PatientApi,
    UserApi,
)
from medstream.sdk.connection import Connection
from medstream.sdk.crypto_api import CryptoApi
from medstream.sdk.entity_api import PaginatedList
from medstream.sdk.medtech_api import DataOwnerWithType, MedTechApi, MedTechApiBuilder
from medstream.sdk.subscription_types import Gap, Position, SubscriptionEvent, SubscriptionOptions

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "Connection",
    "ContactApi",
    "ContactFilter",
    "CryptoApi",
    "DataOwnerWithType",
    "DataSampleApi",
    "DataSampleFilter",
    "DecryptionError",
    "ExchangeDataApi",
    "ExchangeDataFilter",
    "FilterComposition",
    "ForbiddenError",
    "Gap",
    "HealthcareElementApi",
    "HealthcareElementFilter",
    "HealthcareProfessionalApi",
    "HealthcareProfessionalFilter",
    "KeyPairUpdateAnswer",
    "KeyPairUpdateOutcome",
    "KeyVerificationError",
    "MedTechApi",
    "MedTechApiBuilder",
    "MedicalDeviceApi",
    "MedicalDeviceFilter",
    "MedstreamError",
    "MissingKeysError",
    "NotFoundError",
    "NotificationApi",
    "NotificationFilter",
    "PaginatedList",
    "PatientApi",
    "PatientFilter",
    "Position",
    "SubscriptionEvent",
    "SubscriptionOptions",
    "UserApi",
    "UserFilter",
    "ValidationError",
]
