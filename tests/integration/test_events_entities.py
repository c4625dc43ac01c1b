"""Live events for every entity kind and every event type, through the SDK, against a real server.

Each sub-API's `subscribe_to_<entity>_events` delivers CREATE, UPDATE and DELETE (the tombstone); one
subscription may take several event types and the callback can tell them apart; plain and coroutine callbacks
with one or two parameters all work; a failing callback is reported to `on_error` and the subscription goes on;
events arrive in `seq` order, and per entity in revision order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from medstream.events.types import EventType
from medstream.model import Entity, EntityKind, Patient
from medstream.sdk import MedTechApi
from medstream.sdk.connection import SubscriptionEvent
from tests.conftest import ProfessionalFactory
from tests.integration.events_support import (
    ALL_TYPES,
    SETTLE,
    Calls,
    Recorder,
    readable_new,
    subscribe,
    wait_for_condition,
)
from tests.integration.kinds import KIND_PARAMS, ops_for, relabel


@pytest.mark.parametrize("kind", KIND_PARAMS)
async def test_create_update_and_delete_of_every_kind_reach_the_subscriber_with_their_type_and_seq(
    kind: EntityKind, new_professional: ProfessionalFactory, admin_api: MedTechApi
) -> None:
    doctor = await new_professional()
    ops = await ops_for(kind, doctor, admin_api)  # the doctor writes, but users are written by the admin
    every, creates, updates, deletes, creates_and_deletes = Recorder(), Recorder(), Recorder(), Recorder(), Recorder()
    await subscribe(doctor.api, kind, ALL_TYPES, every, None, None)
    await subscribe(doctor.api, kind, ["CREATE"], creates)
    await subscribe(doctor.api, kind, ["UPDATE"], updates)
    await subscribe(doctor.api, kind, ["DELETE"], deletes)
    await subscribe(doctor.api, kind, ["CREATE", "DELETE"], creates_and_deletes)

    created = await ops.write(readable_new(ops, doctor))
    assert created.id is not None
    updated = await ops.write(relabel(created, "updated"))
    tombstone = await ops.delete(created.id)
    await every.wait_count(3)
    for recorder, count in ((creates, 1), (updates, 1), (deletes, 1), (creates_and_deletes, 2)):
        await recorder.wait_count(count)
    await asyncio.sleep(SETTLE)  # nothing else may follow

    assert every.summary() == [
        ("CREATE", created.id, created.rev),
        ("UPDATE", created.id, updated.rev),
        ("DELETE", created.id, tombstone.rev),
    ]
    assert [e.entity for e in every.events] == [created, updated, tombstone], "each event carries the stored entity"
    assert tombstone.deletion_date is not None and every.events[2].entity.deletion_date == tombstone.deletion_date
    assert every.events[1].entity.deletion_date is None
    assert all(e.entity_type == kind.name and isinstance(e.entity, kind.model) for e in every.events)
    seqs = [e.seq for e in every.events]
    assert seqs == sorted(set(seqs)), f"seq strictly increasing: {seqs}"
    create, update, delete = every.events
    assert [(e.type, e.seq) for e in creates.events] == [(EventType.CREATE, create.seq)]
    assert [(e.type, e.seq) for e in updates.events] == [(EventType.UPDATE, update.seq)]
    assert [(e.type, e.seq) for e in deletes.events] == [(EventType.DELETE, delete.seq)]
    assert [(e.type, e.seq) for e in creates_and_deletes.events] == [
        (EventType.CREATE, create.seq),
        (EventType.DELETE, delete.seq),
    ]
    if kind.name == "User":
        assert all(e.entity.password is None for e in every.events), "an event never carries a password"


Record = Callable[[tuple[Any, ...]], None]


def _plain_entity_only(record: Record) -> Callable[..., Any]:
    def callback(entity: Patient) -> None:
        record((entity,))

    return callback


def _plain_with_event(record: Record) -> Callable[..., Any]:
    def callback(entity: Patient, event: SubscriptionEvent[Patient]) -> None:
        record((entity, event))

    return callback


def _coroutine_entity_only(record: Record) -> Callable[..., Any]:
    async def callback(entity: Patient) -> None:
        await asyncio.sleep(0)
        record((entity,))

    return callback


def _coroutine_with_event(record: Record) -> Callable[..., Any]:
    async def callback(entity: Patient, event: SubscriptionEvent[Patient]) -> None:
        await asyncio.sleep(0)
        record((entity, event))

    return callback


def _variadic(record: Record) -> Callable[..., Any]:
    return lambda *args: record(args)


class _Handler:
    def __init__(self, record: Record) -> None:
        self.record = record

    async def on_patient(self, entity: Patient, event: SubscriptionEvent[Patient]) -> None:
        self.record((entity, event))


def _bound_method(record: Record) -> Callable[..., Any]:
    return _Handler(record).on_patient


@pytest.mark.parametrize(
    ("make_callback", "takes_event"),
    [
        pytest.param(_plain_entity_only, False, id="plain-entity"),
        pytest.param(_plain_with_event, True, id="plain-entity-event"),
        pytest.param(_coroutine_entity_only, False, id="coroutine-entity"),
        pytest.param(_coroutine_with_event, True, id="coroutine-entity-event"),
        pytest.param(_variadic, True, id="variadic"),
        pytest.param(_bound_method, True, id="bound-coroutine-method"),
    ],
)
async def test_a_callback_gets_the_entity_and_if_it_takes_a_second_parameter_the_event(
    make_callback: Callable[[Record], Callable[..., Any]],
    takes_event: bool,
    new_professional: ProfessionalFactory,
) -> None:
    doctor = await new_professional()
    calls: list[tuple[Any, ...]] = []
    changed = asyncio.Event()

    def record(args: tuple[Any, ...]) -> None:
        calls.append(args)
        changed.set()

    await doctor.api.patient_api.subscribe_to_patient_events(["CREATE", "UPDATE"], None, make_callback(record))
    created = await doctor.api.patient_api.create_or_modify_patient(Patient(first_name="Ned", last_name="Stark"))
    updated = await doctor.api.patient_api.create_or_modify_patient(created.model_copy(update={"note": "headless"}))
    await wait_for_condition(lambda: len(calls) >= 2, changed, "two callbacks", lambda: calls)

    assert [args[0] for args in calls] == [created, updated]
    if takes_event:
        assert [len(args) for args in calls] == [2, 2]
        events = [args[1] for args in calls]
        assert [(e.type, e.entity_type) for e in events] == [
            (EventType.CREATE, "Patient"),
            (EventType.UPDATE, "Patient"),
        ]
        assert events[0].seq < events[1].seq
        assert [e.entity for e in events] == [created, updated]
    else:
        assert [len(args) for args in calls] == [1, 1]


@pytest.mark.parametrize("is_coroutine", [pytest.param(False, id="plain"), pytest.param(True, id="coroutine")])
async def test_an_exception_in_a_callback_goes_to_on_error_and_the_log_and_the_next_event_still_arrives(
    is_coroutine: bool, new_professional: ProfessionalFactory, caplog: pytest.LogCaptureFixture
) -> None:
    doctor = await new_professional()
    received = Recorder()
    failure = RuntimeError("the application's callback broke")
    errors = Calls()

    def plain(entity: Patient, event: SubscriptionEvent[Patient]) -> None:
        received(entity, event)
        if event.type is EventType.CREATE:
            raise failure

    async def coroutine(entity: Patient, event: SubscriptionEvent[Patient]) -> None:
        await asyncio.sleep(0)
        plain(entity, event)

    connection = await doctor.api.patient_api.subscribe_to_patient_events(
        ALL_TYPES, None, coroutine if is_coroutine else plain
    )
    connection.on_error(errors)
    with caplog.at_level(logging.ERROR, logger="medstream.sdk"):
        created = await doctor.api.patient_api.create_or_modify_patient(Patient(first_name="Jon"))
        updated = await doctor.api.patient_api.create_or_modify_patient(created.model_copy(update={"note": "later"}))
        await received.wait_count(2)
        await errors.wait_count(1, "on_error")

    assert received.summary() == [("CREATE", created.id, created.rev), ("UPDATE", updated.id, updated.rev)]
    await asyncio.sleep(SETTLE)
    assert errors.values == [failure], "on_error gets the callback's own exception, once"
    assert any(r.exc_info is not None and r.exc_info[1] is failure for r in caplog.records), "and it is logged"
    assert connection.is_connected and not connection.is_closed


@pytest.mark.parametrize("kind", KIND_PARAMS)
async def test_events_arrive_in_seq_order_and_per_entity_in_revision_order_under_concurrent_writes(
    kind: EntityKind, new_professional: ProfessionalFactory, admin_api: MedTechApi
) -> None:
    doctor = await new_professional()
    ops = await ops_for(kind, doctor, admin_api)
    received = Recorder()
    running = 0
    overlapped = False

    async def callback(entity: Entity, event: SubscriptionEvent[Any]) -> None:
        nonlocal running, overlapped
        running += 1
        overlapped |= running > 1
        await asyncio.sleep(0)  # give a second callback the chance to start, were they run concurrently
        received(entity, event)
        running -= 1

    await subscribe(doctor.api, kind, ALL_TYPES, callback)
    entities, updates = 4, 3

    async def history() -> list[Entity]:
        """Create one entity, modify it `updates` times, delete it; the stored versions, in order."""
        versions = [await ops.write(readable_new(ops, doctor))]
        for n in range(updates):
            versions.append(await ops.write(relabel(versions[-1], f"v{n}")))
        versions.append(await ops.delete(str(versions[0].id)))
        return versions

    histories = await asyncio.gather(*(history() for _ in range(entities)))
    await received.wait_count(entities * (updates + 2))
    await asyncio.sleep(SETTLE)

    assert len(received.events) == entities * (updates + 2), "each write once, nothing else"
    seqs = [e.seq for e in received.events]
    assert seqs == sorted(set(seqs)), f"one subscription: strictly increasing seq, got {seqs}"
    for versions in histories:
        got = [(e.type.value, e.entity.rev) for e in received.of(versions[0].id)]
        expected = [("CREATE", versions[0].rev)] + [("UPDATE", v.rev) for v in versions[1:-1]]
        assert got == [*expected, ("DELETE", versions[-1].rev)], "per entity: revision order"
    assert not overlapped, "callbacks of one subscription run one at a time"


@pytest.mark.parametrize("kind", KIND_PARAMS)
async def test_a_batch_delivers_one_event_per_entity_in_the_order_of_the_batch(
    kind: EntityKind, new_professional: ProfessionalFactory, admin_api: MedTechApi
) -> None:
    doctor = await new_professional()
    ops = await ops_for(kind, doctor, admin_api)
    received = Recorder()
    await subscribe(doctor.api, kind, ALL_TYPES, received)

    created = await ops.write_many([readable_new(ops, doctor) for _ in range(5)])
    tombstones = await ops.delete_many([str(e.id) for e in reversed(created)])
    await received.wait_count(10)
    await asyncio.sleep(SETTLE)

    assert received.summary() == [("CREATE", e.id, e.rev) for e in created] + [
        ("DELETE", e.id, e.rev) for e in tombstones
    ]
    seqs = [e.seq for e in received.events]
    for batch in (seqs[:5], seqs[5:]):
        assert batch == list(range(batch[0], batch[0] + 5)), f"one transaction, consecutive positions: {seqs}"
