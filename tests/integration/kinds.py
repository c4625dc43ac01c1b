"""The entity kinds as the integration tests drive them: a valid instance of each, and its SDK sub-API.

`KindOps` hides the two places where kinds differ in how they are written: data samples are written for a
patient (`create_or_modify_data_sample[s]_for`), and only an admin writes users.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select

from medstream.model import (
    ENTITY_KINDS,
    CodingReference,
    Contact,
    Content,
    DataSample,
    Entity,
    EntityKind,
    ExchangeData,
    HealthcareElement,
    HealthcareProfessional,
    MedicalDevice,
    Notification,
    NotificationStatus,
    NotificationType,
    Patient,
    User,
)
from medstream.sdk import MedTechApi
from medstream.sdk.entity_api import EntityApi
from medstream.store.database import Database
from medstream.store.keys import read_key
from medstream.store.schema import outbox
from tests.conftest import Professional


def _patient(patient_id: str | None) -> Entity:
    return Patient(first_name="John", last_name="Snow", note="Winter is coming", date_of_birth=19800131)


def _data_sample(patient_id: str | None) -> Entity:
    return DataSample(content={"en": Content(string_value="Hello world")}, comment="first reading", index=1)


def _contact(patient_id: str | None) -> Entity:
    return Contact(opening_date=20240101120000, description="consultation", location="room 3")


def _healthcare_element(patient_id: str | None) -> Entity:
    return HealthcareElement(patient_id=patient_id, description="Asthma", note="since childhood")


def _healthcare_professional(patient_id: str | None) -> Entity:
    return HealthcareProfessional(first_name="Gregory", last_name="House", speciality="diagnostics")


def _medical_device(patient_id: str | None) -> Entity:
    return MedicalDevice(name="Scale", brand="Withings", serial_number=f"SN-{uuid.uuid4().hex[:8]}")


def _notification(patient_id: str | None) -> Entity:
    return Notification(type=NotificationType.OTHER, status=NotificationStatus.pending)


def _user(patient_id: str | None) -> Entity:
    return User(login=f"user-{uuid.uuid4().hex[:12]}", name="Some One", password=f"pw-{uuid.uuid4().hex}")


def _exchange_data(patient_id: str | None) -> Entity:
    # Its delegator and delegate are the writer's data owner (KindOps.new): a data owner's exchange data with itself.
    return ExchangeData(exchange_key={"0123456789abcdef0123456789abcdef": "AQIDBA=="})


# Builds a new valid instance of each kind (no id, no rev); takes the id of a patient it may link to.
FACTORIES: dict[str, Callable[[str | None], Entity]] = {
    "Patient": _patient,
    "DataSample": _data_sample,
    "Contact": _contact,
    "HealthcareElement": _healthcare_element,
    "HealthcareProfessional": _healthcare_professional,
    "MedicalDevice": _medical_device,
    "Notification": _notification,
    "User": _user,
    "ExchangeData": _exchange_data,
}
assert set(FACTORIES) == {kind.name for kind in ENTITY_KINDS}, "a kind has no factory"

KIND_PARAMS = [pytest.param(kind, id=kind.name) for kind in ENTITY_KINDS]
# The kinds `give_access_to` shares: exchange data is read by its two parties only.
SHARABLE_KIND_PARAMS = [pytest.param(kind, id=kind.name) for kind in ENTITY_KINDS if not kind.is_exchange_data]


def sub_api(api: MedTechApi, kind: EntityKind) -> EntityApi[Any]:
    """`api.patient_api`, `api.data_sample_api`, ... for `kind`."""
    found: EntityApi[Any] = getattr(api, f"{kind.singular}_api")
    assert found.kind is kind
    return found


def relabel(entity: Entity, code: str) -> Entity:
    """A copy of `entity` with one more label: a change every kind accepts."""
    return entity.model_copy(update={"labels": {*entity.labels, CodingReference(type="TEST", code=code)}})


@dataclass
class KindOps:
    """Writes and reads one kind through the SDK, with its Medtech method names."""

    kind: EntityKind
    api: MedTechApi
    patient_id: str | None = None
    data_owner_id: str | None = None  # the writer's, for the kinds that name it (exchange data)

    @property
    def sub(self) -> EntityApi[Any]:
        return sub_api(self.api, self.kind)

    def _method(self, name: str) -> Any:
        return getattr(self.sub, name.format(s=self.kind.singular, p=self.kind.plural))

    def new(self, *, entity_id: str | None = None) -> Entity:
        entity = FACTORIES[self.kind.name](self.patient_id)
        if isinstance(entity, ExchangeData):
            entity = entity.model_copy(update={"delegator": self.data_owner_id, "delegate": self.data_owner_id})
        return entity.model_copy(update={"id": entity_id}) if entity_id else entity

    async def write(self, entity: Entity) -> Entity:
        if self.kind.name == "DataSample":
            assert self.patient_id is not None
            stored: Entity = await self.api.data_sample_api.create_or_modify_data_sample_for(self.patient_id, entity)  # type: ignore[arg-type]
        else:
            stored = await self._method("create_or_modify_{s}")(entity)
        return stored

    async def write_many(self, entities: Sequence[Entity]) -> list[Entity]:
        if self.kind.name == "DataSample":
            assert self.patient_id is not None
            stored: list[Entity] = await self.api.data_sample_api.create_or_modify_data_samples_for(
                self.patient_id,
                entities,  # type: ignore[arg-type]
            )
        else:
            stored = await self._method("create_or_modify_{p}")(entities)
        return stored

    async def create(self) -> Entity:
        return await self.write(self.new())

    async def get(self, entity_id: str) -> Entity:
        return await self._method("get_{s}")(entity_id)  # type: ignore[no-any-return]

    async def get_many(self, entity_ids: Sequence[str]) -> list[Entity]:
        return await self._method("get_{p}")(entity_ids)  # type: ignore[no-any-return]

    async def delete(self, entity_id: str) -> Entity:
        return await self._method("delete_{s}")(entity_id)  # type: ignore[no-any-return]

    async def delete_many(self, entity_ids: Sequence[str]) -> list[Entity]:
        return await self._method("delete_{p}")(entity_ids)  # type: ignore[no-any-return]

    async def listed_ids(self) -> set[str]:
        """The ids of every entity `list_page` gives, page after page."""
        ids: set[str] = set()
        start_after: str | None = None
        while page := await self.sub.list_page(start_after=start_after, limit=500):
            ids.update(str(e.id) for e in page)
            start_after = page[-1].id
        return ids


async def ops_for(kind: EntityKind, doctor: Professional, admin_api: MedTechApi) -> KindOps:
    """Who writes `kind` in a test: the doctor (with a patient of theirs for data samples), or the admin for users."""
    if kind.name == "User":
        return KindOps(kind, admin_api)
    patient = await doctor.api.patient_api.create_or_modify_patient(Patient(first_name="Pat", last_name="Ient"))
    return KindOps(kind, doctor.api, patient_id=patient.id, data_owner_id=doctor.id)


async def raw_get(server_url: str, token: str, kind: EntityKind, entity_id: str) -> bytes:
    """The exact bytes the server answers for GET of one entity."""
    async with httpx.AsyncClient(base_url=server_url) as client:
        response = await client.get(
            f"/rest/v1/{kind.collection}/{entity_id}", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200, response.text
    return response.content


async def events_of(database_url: str, entity_id: str) -> list[tuple[str, str]]:
    """(event type, rev) of every outbox row written for `entity_id`, in the order written."""
    database = Database(database_url)
    try:
        query = select(outbox.c.event_type, outbox.c.rev).where(outbox.c.entity_id == entity_id).order_by(outbox.c.id)
        rows = await database.run_read(lambda conn: conn.execute(query).all())
        return [(str(event_type), str(rev)) for event_type, rev in rows]
    finally:
        await database.close()


async def jwt_secret(database_url: str) -> str:
    """The key the server signs its tokens with, read from its database as every node does."""
    database = Database(database_url)
    try:
        return await read_key(database, "jwt_secret")
    finally:
        await database.close()


async def expired_access_token(database_url: str, token: str) -> str:
    """`token`'s claims, signed with the server's key, with an `exp` a minute in the past."""
    claims = jwt.decode(token, options={"verify_signature": False})
    now = int(time.time())
    return jwt.encode({**claims, "iat": now - 120, "exp": now - 60}, await jwt_secret(database_url), "HS256")
