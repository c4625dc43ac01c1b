"""MedicalDevice: a device that produces or records medical data, and a data owner."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from medstream.model.common import Base64Text, Entity, EntityId, Identifier, Int64, Property
from medstream.model.security import CryptoKey


class MedicalDevice(Entity):
    """A device (a scale, a glucose meter, a lab analyser...) that owns the data it records."""

    entity_type: ClassVar[str] = "MedicalDevice"

    identifiers: list[Identifier] = Field(default_factory=list)
    end_of_life: Int64 | None = None
    external_id: str | None = None
    name: str | None = None
    type: str | None = None
    brand: str | None = None
    model: str | None = None
    serial_number: str | None = None
    parent_id: EntityId | None = None  # the healthcare professional responsible for it
    picture: Base64Text | None = None
    properties: list[Property] = Field(default_factory=list)
    crypto_keys: list[CryptoKey] = Field(default_factory=list)  # its public keys (end-to-end encryption)
