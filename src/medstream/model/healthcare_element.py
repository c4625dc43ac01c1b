"""HealthcareElement: a lasting medical condition of a patient (a diagnosis, an allergy, a risk...)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from medstream.model.common import Entity, EntityId, FuzzyDateTime, Identifier, Int64, SecretLinks


class HealthcareElement(Entity, SecretLinks):
    """A medical condition of a patient, followed over time. One written by an iCure client links to its patient
    through `secretForeignKeys` instead of `patientId`."""

    entity_type: ClassVar[str] = "HealthcareElement"

    identifiers: list[Identifier] = Field(default_factory=list)
    patient_id: EntityId | None = None  # the patient it is about; set by the server from the URL on create
    healthcare_element_id: EntityId | None = None  # shared by every version of the same condition
    medical_location_id: str | None = None
    end_of_life: Int64 | None = None
    value_date: FuzzyDateTime | None = None
    opening_date: FuzzyDateTime | None = None
    closing_date: FuzzyDateTime | None = None
    description: str | None = None
    note: str | None = None
    relevant: bool = True
    status: Int64 = 0
