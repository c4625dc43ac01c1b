"""The table every per-entity piece of code is generated from: entity type -> model and names."""

from __future__ import annotations

from dataclasses import dataclass

from medstream.model.common import Entity
from medstream.model.contact import Contact
from medstream.model.data_sample import DataSample
from medstream.model.exchange_data import ExchangeData
from medstream.model.healthcare_element import HealthcareElement
from medstream.model.healthcare_professional import HealthcareProfessional
from medstream.model.medical_device import MedicalDevice
from medstream.model.notification import Notification
from medstream.model.patient import Patient
from medstream.model.user import User


@dataclass(frozen=True)
class EntityKind:
    """One entity type and the names it goes by in each layer."""

    name: str  # wire name and event entity type: "DataSample"
    model: type[Entity]
    singular: str  # snake_case, for SDK method names: "data_sample"
    plural: str  # snake_case plural: "data_samples"
    collection: str  # REST collection: "data-samples"
    is_data_owner: bool = False  # its instances are data owners (readable by themselves)
    is_exchange_data: bool = False  # read by its delegator and delegate only (model/exchange_data.py)


ENTITY_KINDS: tuple[EntityKind, ...] = (
    EntityKind("Patient", Patient, "patient", "patients", "patients", is_data_owner=True),
    EntityKind("DataSample", DataSample, "data_sample", "data_samples", "data-samples"),
    EntityKind("Contact", Contact, "contact", "contacts", "contacts"),
    EntityKind(
        "HealthcareElement",
        HealthcareElement,
        "healthcare_element",
        "healthcare_elements",
        "healthcare-elements",
    ),
    EntityKind(
        "HealthcareProfessional",
        HealthcareProfessional,
        "healthcare_professional",
        "healthcare_professionals",
        "healthcare-professionals",
        is_data_owner=True,
    ),
    EntityKind(
        "MedicalDevice",
        MedicalDevice,
        "medical_device",
        "medical_devices",
        "medical-devices",
        is_data_owner=True,
    ),
    EntityKind("Notification", Notification, "notification", "notifications", "notifications"),
    EntityKind("User", User, "user", "users", "users"),
    EntityKind(
        "ExchangeData", ExchangeData, "exchange_data", "exchange_data_records", "exchange-data", is_exchange_data=True
    ),
)

KIND_BY_NAME: dict[str, EntityKind] = {kind.name: kind for kind in ENTITY_KINDS}
KIND_BY_MODEL: dict[type[Entity], EntityKind] = {kind.model: kind for kind in ENTITY_KINDS}


def kind_of(name: str) -> EntityKind:
    """The kind named `name`; KeyError with the known names otherwise."""
    try:
        return KIND_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown entity type {name!r}; known: {', '.join(KIND_BY_NAME)}") from None
