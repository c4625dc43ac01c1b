"""Patient: a person receiving care, and a data owner."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from medstream.model.base import MedstreamModel
from medstream.model.common import (
    Address,
    CodingReference,
    Entity,
    Identifier,
    Int64,
    PersonName,
    Property,
    SecretLinks,
    StringSet,
)
from medstream.model.security import CryptoKey


class Gender(StrEnum):
    male = "male"
    female = "female"
    indeterminate = "indeterminate"
    changed = "changed"
    changedToMale = "changedToMale"
    changedToFemale = "changedToFemale"
    unknown = "unknown"


class DeactivationReason(StrEnum):
    deceased = "deceased"
    moved = "moved"
    other_doctor = "other_doctor"
    retired = "retired"
    no_contact = "no_contact"
    unknown = "unknown"
    none = "none"


class PersonalStatus(StrEnum):
    single = "single"
    in_couple = "in_couple"
    married = "married"
    separated = "separated"
    divorced = "divorced"
    divorcing = "divorcing"
    widowed = "widowed"
    widower = "widower"
    complicated = "complicated"
    unknown = "unknown"
    contract = "contract"
    other = "other"


class Partnership(MedstreamModel):
    type: str | None = None
    status: str | None = None
    partner_id: str | None = None


class PatientHealthCareParty(MedstreamModel):
    type: str | None = None
    healthcare_party_id: str | None = None


# A date as iCure writes it: the integer YYYYMMDD (19800131); 0 parts mean unknown (19800000).
FuzzyDate = Int64


class Patient(Entity, SecretLinks):
    entity_type: ClassVar[str] = "Patient"

    identifiers: list[Identifier] = Field(default_factory=list)
    end_of_life: Int64 | None = None
    first_name: str | None = None
    last_name: str | None = None
    names: list[PersonName] = Field(default_factory=list)
    company_name: str | None = None
    languages: list[str] = Field(default_factory=list)
    addresses: list[Address] = Field(default_factory=list)
    civility: str | None = None
    gender: Gender | None = None
    birth_sex: Gender | None = None
    merge_to_patient_id: str | None = None
    merged_ids: StringSet = Field(default_factory=set)
    alias: str | None = None
    active: bool = True
    deactivation_reason: DeactivationReason = DeactivationReason.none
    ssin: str | None = None
    maiden_name: str | None = None
    spouse_name: str | None = None
    partner_name: str | None = None
    personal_status: PersonalStatus | None = None
    date_of_birth: FuzzyDate | None = None
    date_of_death: FuzzyDate | None = None
    place_of_birth: str | None = None
    place_of_death: str | None = None
    deceased: bool | None = None
    education: str | None = None
    profession: str | None = None
    note: str | None = None
    administrative_note: str | None = None
    nationality: str | None = None
    race: str | None = None
    ethnicity: str | None = None
    external_id: str | None = None
    partnerships: list[Partnership] = Field(default_factory=list)
    patient_health_care_parties: list[PatientHealthCareParty] = Field(default_factory=list)
    patient_professions: list[CodingReference] = Field(default_factory=list)
    parameters: dict[str, list[str]] = Field(default_factory=dict)
    properties: list[Property] = Field(default_factory=list)
    crypto_keys: list[CryptoKey] = Field(default_factory=list)  # its public keys (end-to-end encryption)
