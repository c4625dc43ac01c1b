"""Who receives which events (docs/guarantees.md): whatever the filter says, never an event for an entity the
subscriber's data owner cannot read; the next write after it is shared arrives; admins receive everything.

Each test has two professionals (the owner who writes, a colleague who watches) and a patient user (a User
whose `patientId` links it to a Patient), each subscribed three ways: no filter ("everything I may read"), the
entity's id, and a filter that matches the entity by what it is (a label, or the owner as data owner).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from medstream.filters import (
    AllUsersFilter,
    ContactByIdsFilter,
    ContactByLabelCodeFilter,
    DataSampleByHealthcarePartyTagCodeDateFilter,
    DataSampleByIdsFilter,
    HealthcareElementByHealthcarePartyLabelCodeFilter,
    HealthcareElementByIdsFilter,
    HealthcareProfessionalByIdsFilter,
    HealthcareProfessionalByLabelCodeFilter,
    MedicalDeviceByIdsFilter,
    MedicalDeviceByLabelCodeFilter,
    NotificationsByHcPartyAndTypeFilter,
    NotificationsByIdFilter,
    PatientByHealthcarePartyFilter,
    PatientByIdsFilter,
    UserByIdsFilter,
)
from medstream.model import CodingReference, Entity, EntityKind, NotificationType, Patient, User
from medstream.sdk import MedTechApi
from tests.conftest import ProfessionalFactory, RunningServer
from tests.integration.events_support import ALL_TYPES, SETTLE, WAIT, Recorder, subscribe
from tests.integration.kinds import SHARABLE_KIND_PARAMS, ops_for, relabel

LABEL_TYPE = "ACCESS-TEST"

BY_IDS: dict[str, Callable[[str], Any]] = {
    "Patient": lambda i: PatientByIdsFilter(ids=frozenset({i})),
    "DataSample": lambda i: DataSampleByIdsFilter(ids=frozenset({i})),
    "HealthcareElement": lambda i: HealthcareElementByIdsFilter(ids=frozenset({i})),
    "HealthcareProfessional": lambda i: HealthcareProfessionalByIdsFilter(ids=frozenset({i})),
    "MedicalDevice": lambda i: MedicalDeviceByIdsFilter(ids=frozenset({i})),
    "Contact": lambda i: ContactByIdsFilter(ids=frozenset({i})),
    "Notification": lambda i: NotificationsByIdFilter(ids=frozenset({i})),
    "User": lambda i: UserByIdsFilter(ids=frozenset({i})),
}

# A filter that matches the owner's entity without naming it: by its label, or by the owner as its data owner.
MATCHING: dict[str, Callable[[str, str], Any]] = {
    "Patient": lambda owner, _code: PatientByHealthcarePartyFilter(healthcare_party_id=owner),
    "DataSample": lambda owner, code: DataSampleByHealthcarePartyTagCodeDateFilter(
        healthcare_party_id=owner, tag_type=LABEL_TYPE, tag_code=code
    ),
    "HealthcareElement": lambda owner, code: HealthcareElementByHealthcarePartyLabelCodeFilter(
        healthcare_party_id=owner, tag_type=LABEL_TYPE, tag_code=code
    ),
    "HealthcareProfessional": lambda _owner, code: HealthcareProfessionalByLabelCodeFilter(
        label_type=LABEL_TYPE, label_code=code
    ),
    "MedicalDevice": lambda _owner, code: MedicalDeviceByLabelCodeFilter(label_type=LABEL_TYPE, label_code=code),
    "Contact": lambda _owner, code: ContactByLabelCodeFilter(label_type=LABEL_TYPE, label_code=code),
    "Notification": lambda owner, _code: NotificationsByHcPartyAndTypeFilter(
        healthcare_party_id=owner, type=NotificationType.OTHER
    ),
    "User": lambda _owner, _code: AllUsersFilter(),
}


@dataclass
class Watcher:
    """One subscriber's three subscriptions to the kind under test."""

    everything: Recorder
    by_id: Recorder
    matching: Recorder

    @classmethod
    async def subscribe(cls, api: MedTechApi, kind: EntityKind, entity_id: str, owner_id: str, code: str) -> Watcher:
        watcher = cls(Recorder(), Recorder(), Recorder())
        await subscribe(api, kind, ALL_TYPES, watcher.everything, None)
        await subscribe(api, kind, ALL_TYPES, watcher.by_id, BY_IDS[kind.name](entity_id))
        await subscribe(api, kind, ALL_TYPES, watcher.matching, MATCHING[kind.name](owner_id, code))
        return watcher

    @property
    def recorders(self) -> dict[str, Recorder]:
        return {"no filter": self.everything, "by id": self.by_id, "matching filter": self.matching}

    async def wait_for(self, entity: Entity, count: int) -> None:
        for recorder in self.recorders.values():
            await recorder.wait_until(lambda events: len([e for e in events if e.entity.id == entity.id]) >= count)

    def received(self, entity_id: str) -> dict[str, list[tuple[str, str | None]]]:
        """Per subscription: (event type, rev) of each event about `entity_id`."""
        return {name: [(e.type.value, e.entity.rev) for e in r.of(entity_id)] for name, r in self.recorders.items()}

    def received_anything(self) -> dict[str, list[tuple[str, str | None, str | None]]]:
        return {name: r.summary() for name, r in self.recorders.items()}


def expect(*events: tuple[str, Entity]) -> dict[str, list[tuple[str, str | None]]]:
    return {name: [(t, e.rev) for t, e in events] for name in ("no filter", "by id", "matching filter")}


@pytest.mark.parametrize("kind", SHARABLE_KIND_PARAMS)
async def test_nobody_receives_events_for_an_entity_they_cannot_read_until_it_is_shared_with_them(
    kind: EntityKind, server: RunningServer, new_professional: ProfessionalFactory, admin_api: MedTechApi
) -> None:
    owner, colleague = await new_professional("Owner", "Doctor"), await new_professional("Colleague", "Doctor")
    ops = await ops_for(kind, owner, admin_api)  # users are written by the admin, the rest by the owner
    patient = await owner.api.patient_api.create_or_modify_patient(Patient(first_name="Patient", last_name="User"))
    assert patient.id is not None
    login, password = f"patient-{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
    await admin_api.user_api.create_or_modify_user(User(login=login, patient_id=patient.id, password=password))
    patient_api = await server.api(login, password)
    try:
        entity_id, code = str(uuid.uuid4()), uuid.uuid4().hex[:12]
        label = CodingReference(type=LABEL_TYPE, code=code)
        if kind.name == "User":  # a user acting as the owner: the owner reads it, nobody else
            new: Entity = User(login=f"u-{uuid.uuid4().hex[:10]}", healthcare_party_id=owner.id, labels={label})
        else:
            new = ops.new().model_copy(update={"labels": {label}})
        new = new.model_copy(update={"id": entity_id})
        colleague_sees = await Watcher.subscribe(colleague.api, kind, entity_id, owner.id, code)
        patient_sees = await Watcher.subscribe(patient_api, kind, entity_id, owner.id, code)
        admin_sees = await Watcher.subscribe(admin_api, kind, entity_id, owner.id, code)

        created = await ops.write(new)
        modified = await ops.write(relabel(created, "modified"))
        await admin_sees.wait_for(created, 2)
        await asyncio.sleep(SETTLE)
        nothing: dict[str, list[Any]] = {"no filter": [], "by id": [], "matching filter": []}
        assert colleague_sees.received_anything() == patient_sees.received_anything() == nothing, (
            "nothing about an entity they cannot read, whatever the filter"
        )

        shared_with_colleague = await ops.sub.give_access_to(created.id, colleague.id)
        await colleague_sees.wait_for(created, 1)
        shared_with_patient = await ops.sub.give_access_to(created.id, patient.id)
        await patient_sees.wait_for(created, 1)
        tombstone = await ops.delete(entity_id)
        await colleague_sees.wait_for(created, 3)
        await patient_sees.wait_for(created, 2)
        await admin_sees.wait_for(created, 5)
        await asyncio.sleep(SETTLE)

        assert colleague_sees.received(entity_id) == expect(
            ("UPDATE", shared_with_colleague), ("UPDATE", shared_with_patient), ("DELETE", tombstone)
        ), "from the share on, every write"
        assert patient_sees.received(entity_id) == expect(("UPDATE", shared_with_patient), ("DELETE", tombstone))
        assert admin_sees.received(entity_id) == expect(
            ("CREATE", created),
            ("UPDATE", modified),
            ("UPDATE", shared_with_colleague),
            ("UPDATE", shared_with_patient),
            ("DELETE", tombstone),
        ), "an admin receives every data owner's entities"
        for watcher in (colleague_sees, patient_sees):
            assert all(e.entity.id == entity_id for r in watcher.recorders.values() for e in r.events)
    finally:
        await patient_api.close()


async def test_a_patient_user_receives_events_for_their_own_record_but_not_for_other_patients(
    server: RunningServer, new_professional: ProfessionalFactory, admin_api: MedTechApi
) -> None:
    doctor = await new_professional()
    mine = await doctor.api.patient_api.create_or_modify_patient(Patient(first_name="Sansa", last_name="Stark"))
    other = await doctor.api.patient_api.create_or_modify_patient(Patient(first_name="Arya", last_name="Stark"))
    assert mine.id is not None and other.id is not None
    login, password = f"patient-{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
    await admin_api.user_api.create_or_modify_user(User(login=login, patient_id=mine.id, password=password))
    async with await server.api(login, password) as patient_api:
        # The patient's first login published its keys: the doctor gives it its record's key.
        mine = await doctor.api.patient_api.give_access_to(mine, mine.id)
        received = Recorder()
        await patient_api.patient_api.subscribe_to_patient_events(ALL_TYPES, None, received)

        await doctor.api.patient_api.create_or_modify_patient(other.model_copy(update={"note": "not yours"}))
        updated = await doctor.api.patient_api.create_or_modify_patient(mine.model_copy(update={"note": "yours"}))
        await received.wait_count(1)
        await asyncio.sleep(SETTLE)

        assert received.summary() == [("UPDATE", mine.id, updated.rev)]
        assert received.events[0].entity.note == "yours", "decrypted with the key it was given"


async def test_an_admin_subscribed_for_one_data_owner_receives_only_that_owners_entities(
    new_professional: ProfessionalFactory, admin_api: MedTechApi
) -> None:
    first, second = await new_professional(), await new_professional()
    received = Recorder()
    await admin_api.patient_api.subscribe_to_patient_events(
        ["CREATE"], PatientByHealthcarePartyFilter(healthcare_party_id=first.id), received
    )

    await second.api.patient_api.create_or_modify_patient(Patient(first_name="Not", last_name="First's"))
    wanted = await first.api.patient_api.create_or_modify_patient(Patient(first_name="First's", last_name="Patient"))
    await received.wait_count(1)
    await asyncio.sleep(SETTLE)

    assert received.summary() == [("CREATE", wanted.id, wanted.rev)]


async def _frames_until(socket: ClientConnection, done: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(WAIT):
            while not done(frames):
                frames.append(orjson.loads(await socket.recv()))
    except TimeoutError:
        pytest.fail(f"waited {WAIT} s; received {frames!r}")
    return frames


@pytest.mark.parametrize("kind", SHARABLE_KIND_PARAMS)
async def test_a_resumed_subscription_replays_only_what_its_data_owner_could_read_when_it_was_written(
    kind: EntityKind, server: RunningServer, new_professional: ProfessionalFactory, admin_api: MedTechApi
) -> None:
    owner, colleague = await new_professional("Owner", "Doctor"), await new_professional("Colleague", "Doctor")
    ops = await ops_for(kind, owner, admin_api)
    async with httpx.AsyncClient(base_url=server.url) as http:
        database = (await http.get("/health")).json()["database"]
    resume_after, epoch = database["lastSeq"], database["epoch"]

    # Written while the colleague's subscriptions are away: created and modified unshared, then shared, deleted.
    entity_id = str(uuid.uuid4())
    if kind.name == "User":
        new: Entity = User(id=entity_id, login=f"u-{uuid.uuid4().hex[:10]}", healthcare_party_id=owner.id)
    else:
        new = ops.new(entity_id=entity_id)
    created = await ops.write(new)
    await ops.write(relabel(created, "unshared"))
    shared = await ops.sub.give_access_to(entity_id, colleague.id)
    tombstone = await ops.delete(entity_id)

    url = server.url.replace("http", "ws", 1) + "/ws/v1/events"
    async with connect(url) as socket:
        await socket.send(
            orjson.dumps({"type": "auth", "token": await colleague.api.transport.access_token()}).decode()
        )
        for sub_id, filter_json in (("everything", None), ("by-id", BY_IDS[kind.name](entity_id).to_json_dict())):
            subscribe_message = {
                "type": "subscribe",
                "id": sub_id,
                "entity": kind.name,
                "events": ALL_TYPES,
                "filter": filter_json,
                "after": resume_after,
                "epoch": epoch,
            }
            await socket.send(orjson.dumps(subscribe_message).decode())
        # Until the last write has come in both: everything before it has been replayed by then.
        frames = await _frames_until(socket, lambda got: sum(f.get("event") == "DELETE" for f in got) == 2)

    events = [(f["id"], f["event"], f["entity"]["id"], f["entity"]["rev"]) for f in frames if f["type"] == "event"]
    expected = [("UPDATE", entity_id, shared.rev), ("DELETE", entity_id, tombstone.rev)]
    for sub_id in ("everything", "by-id"):
        assert [e[1:] for e in events if e[0] == sub_id] == expected, f"{sub_id}: from the share on, nothing before"
    assert {f["type"] for f in frames} == {"subscribed", "event"}
