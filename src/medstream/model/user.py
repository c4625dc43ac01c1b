"""User: a login, acting as at most one data owner (a healthcare professional, a patient or a device)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar, Self

from pydantic import ConfigDict, Field, model_validator

from medstream.model.common import Entity, EntityId, Property, StringSet


class SharedDataType(StrEnum):
    """The kinds of data a user may automatically share with other data owners."""

    all = "all"
    administrativeData = "administrativeData"
    generalInformation = "generalInformation"
    financialInformation = "financialInformation"
    medicalInformation = "medicalInformation"
    sensitiveInformation = "sensitiveInformation"
    confidentialInformation = "confidentialInformation"


class User(Entity):
    """A login; the server never returns a password or a password hash."""

    # A validation error must not echo what was sent: it may be a password.
    model_config = ConfigDict(hide_input_in_errors=True)

    entity_type: ClassVar[str] = "User"

    name: str | None = None
    login: str | None = None
    email: str | None = None
    mobile_phone: str | None = None
    roles: StringSet = Field(default_factory=set)
    healthcare_party_id: EntityId | None = None
    patient_id: EntityId | None = None
    device_id: EntityId | None = None
    sharing_data_with: dict[SharedDataType, StringSet] = Field(default_factory=dict)
    properties: list[Property] = Field(default_factory=list)
    # True when an admin disabled the user (`medstream user disable`): it cannot log in and its tokens stop
    # working, as for a deleted user, but it keeps its login and can be enabled again. Absent otherwise.
    disabled: bool | None = None
    # Write-only: sent by the SDK to set a new password, never serialised, never returned by the server.
    password: str | None = Field(default=None, exclude=True, repr=False, min_length=8, max_length=1024)

    @model_validator(mode="after")
    def _at_most_one_data_owner(self) -> Self:
        links = {
            "healthcarePartyId": self.healthcare_party_id,
            "patientId": self.patient_id,
            "deviceId": self.device_id,
        }
        set_links = [name for name, value in links.items() if value is not None]
        if len(set_links) > 1:
            raise ValueError(f"a user acts as at most one data owner, but {' and '.join(set_links)} are set; keep one")
        return self

    @property
    def data_owner_id(self) -> str | None:
        """The data owner this user acts as: its healthcare professional, patient or device, if any."""
        return self.healthcare_party_id or self.patient_id or self.device_id

    @property
    def is_admin(self) -> bool:
        return "ADMIN" in self.roles

    def to_write_dict(self) -> dict[str, Any]:
        """The form sent to the server when writing: the wire form plus `password` when one is set."""
        data = self.to_json_dict()
        if self.password is not None:
            data["password"] = self.password
        return data
