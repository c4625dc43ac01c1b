"""HealthcareProfessional: a doctor, nurse or care organisation, and a data owner."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from medstream.model.common import (
    Address,
    Base64Text,
    CodingSet,
    CryptoActorKeys,
    Entity,
    EntityId,
    PersonName,
    Property,
)
from medstream.model.patient import Gender
from medstream.model.security import CryptoKey


class HealthcareProfessional(Entity, CryptoActorKeys):
    """A person or organisation giving care; it owns the data it creates."""

    entity_type: ClassVar[str] = "HealthcareProfessional"

    name: str | None = None  # the full name, or the name of an organisation
    last_name: str | None = None
    first_name: str | None = None
    names: list[PersonName] = Field(default_factory=list)
    gender: Gender | None = None
    civility: str | None = None
    speciality: str | None = None
    speciality_codes: CodingSet = Field(default_factory=set)
    parent_id: EntityId | None = None  # the organisation it belongs to
    addresses: list[Address] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)
    picture: Base64Text | None = None
    notes: str | None = None
    properties: list[Property] = Field(default_factory=list)
    crypto_keys: list[CryptoKey] = Field(default_factory=list)  # its public keys (end-to-end encryption)
