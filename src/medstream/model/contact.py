"""Contact: one encounter between a patient and their care givers, whose observations are data samples."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from medstream.model.common import (
    CodingReference,
    Entity,
    EntityId,
    FuzzyDateTime,
    Identifier,
    Int64,
    SecretLinks,
)


class Contact(Entity, SecretLinks):
    """An encounter (a consultation, a hospital stay...). What was observed in it are data samples whose
    `batchId` is the contact's id; `dataSampleIds` lists them in the contact's order. A contact made by an
    iCure client links to its patient through `secretForeignKeys` and shares its readers with its data
    samples (docs/icure.md)."""

    entity_type: ClassVar[str] = "Contact"

    identifiers: list[Identifier] = Field(default_factory=list)
    group_id: str | None = None  # the contact this one continues (iCure's groupId), its own id when none
    opening_date: FuzzyDateTime | None = None
    closing_date: FuzzyDateTime | None = None
    description: str | None = None
    location: str | None = None
    encounter_type: CodingReference | None = None
    end_of_life: Int64 | None = None
    data_sample_ids: list[EntityId] = Field(default_factory=list)
