"""The Medstream SDK: `await MedTechApi.builder().with_url(u).with_username(l).with_password(p).build()`."""

from medstream.errors import (
    AuthenticationError,
    ConflictError,
    ForbiddenError,
    MedstreamError,
    NotFoundError,
    ValidationError,
)
from medstream.sdk.apis import (
    DataSampleApi,
    HealthcareElementApi,
    HealthcareProfessionalApi,
    MedicalDeviceApi,
    NotificationApi,
    PatientApi,
    UserApi,
)
from medstream.sdk.connection import Connection, Gap, SubscriptionEvent, SubscriptionOptions
from medstream.sdk.medtech_api import DataOwnerWithType, MedTechApi, MedTechApiBuilder

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "Connection",
    "DataOwnerWithType",
    "DataSampleApi",
    "ForbiddenError",
    "Gap",
    "HealthcareElementApi",
    "HealthcareProfessionalApi",
    "MedTechApi",
    "MedTechApiBuilder",
    "MedicalDeviceApi",
    "MedstreamError",
    "NotFoundError",
    "NotificationApi",
    "PatientApi",
    "SubscriptionEvent",
    "SubscriptionOptions",
    "UserApi",
    "ValidationError",
]
