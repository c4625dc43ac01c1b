"""A subscription's life: acknowledged before `subscribe_to_..._events` returns (no race at subscribe time),
closed by `connection.close()` or `MedTechApi.close()` with the server's state freed, carried across a server
restart (1001, reconnect, resume, nothing lost or doubled), and ended loudly when the server never comes back.

Tests that count the server's connections or restart it run a server of their own (`events_support.node`), on
the session server's database or on a fresh one, so that no other test's sockets are counted.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect

from medstream.access import Actor
from medstream.errors import UnavailableError
from medstream.filters import PatientByIdsFilter
from medstream.model import KIND_BY_NAME, EntityKind, Patient
from medstream.sdk import MedTechApi
from medstream.sdk.connection import Connection, SubscriptionOptions
from medstream.store.database import Database
from medstream.store.repository import EntityRepository
from tests.conftest import (
    ADMIN_LOGIN,
    ADMIN_PASSWORD,
    Professional,
    ProfessionalFactory,
    RunningServer,
    database_url_for,
    unused_port,
)
from tests.integration.events_support import (
    ALL_TYPES,
    SETTLE,
    Calls,
    Node,
    Recorder,
    eventually,
    health_events,
    node,
    readable_new,
    subscribe,
    wait_for_condition,
)
from tests.integration.kinds import KIND_PARAMS, ops_for

# Reconnect fast in tests: 50 ms, doubling, at most 200 ms between attempts.
FAST_RETRY = SubscriptionOptions(
    connection_max_retry=50, connection_retry_interval_ms=50, connection_retry_max_interval_ms=200
)


async def login(url: str, who: Professional | None = None) -> MedTechApi:
    """An SDK on the node at `url`; a professional's uses the key store its first login made (through the shared
    server's URL: the default place is named after the URL the SDK is given)."""
    login_, password = (who.login, who.password) if who is not None else (ADMIN_LOGIN, ADMIN_PASSWORD)
    builder = MedTechApi.builder().with_url(url).with_username(login_).with_password(password)
    if who is not None:
        builder.with_key_store(who.api.crypto.key_store_path)
    return await builder.build()


def server_state(running: Node) -> Any:
    assert running.server is not None
    return running.server.app.state.medstream


async def counts(running: Node) -> tuple[int, int, int]:
    """(connections, subscriptions) as GET /health tells them, and the dispatcher index's size."""
    events = await health_events(running.url)
    return events["connections"], events["subscriptions"], len(server_state(running).dispatcher.index)


async def until_counts(running: Node, expected: tuple[int, int, int]) -> None:
    async def check() -> bool:
        return await counts(running) == expected

    await eventually(check, f"(connections, subscriptions, index) == {expected}")


@pytest.mark.parametrize("kind", KIND_PARAMS)
async def test_an_entity_written_right_after_subscribe_returns_is_always_delivered_and_one_before_never(
    kind: EntityKind, new_professional: ProfessionalFactory, admin_api: MedTechApi
) -> None:
    doctor = await new_professional()
    ops = await ops_for(kind, doctor, admin_api)
    noisy = await new_professional("Noisy", "Neighbour")
    stop = asyncio.Event()

    async def keep_the_dispatcher_busy() -> None:  # with writes the doctor may not read
        while not stop.is_set():
            await noisy.api.patient_api.create_or_modify_patient(Patient(first_name="Noise"))

    noise = asyncio.create_task(keep_the_dispatcher_busy())
    try:
        for attempt in range(6):
            # Even attempts share the doctor's default socket; odd ones open a socket of their own.
            options = SubscriptionOptions(heartbeat_ms=20_000 + attempt) if attempt % 2 else None
            received = Recorder()
            await ops.write(readable_new(ops, doctor))  # answered before the subscribe: never delivered
            connection = await subscribe(doctor.api, kind, ["CREATE"], received, None, options)
            created = await ops.write(readable_new(ops, doctor))
            await received.wait_count(1)
            assert received.summary() == [("CREATE", created.id, created.rev)], f"attempt {attempt}"
            await connection.close()
    finally:
        stop.set()
        await noise


async def test_closing_connections_unsubscribes_and_frees_the_servers_state(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    async with node(server.database_url) as running:  # a second node on the same database: only our sockets
        assert await counts(running) == (0, 0, 0)
        api = await login(running.url, doctor)
        try:
            first_patients, samples, second_patients = Recorder(), Recorder(), Recorder()
            first = await api.patient_api.subscribe_to_patient_events(ALL_TYPES, None, first_patients)
            second = await api.data_sample_api.subscribe_to_data_sample_events(ALL_TYPES, None, samples)
            third = await api.patient_api.subscribe_to_patient_events(
                ALL_TYPES, None, second_patients, SubscriptionOptions(heartbeat_ms=10_000)
            )
            assert await counts(running) == (2, 3, 3), "equal options share a socket"

            await first.close()
            await until_counts(running, (2, 2, 2))
            written = await api.patient_api.create_or_modify_patient(Patient(first_name="After", last_name="First"))
            await second_patients.wait_count(1)
            await asyncio.sleep(SETTLE)
            assert first_patients.events == [], "no callback after close"
            assert second_patients.summary() == [("CREATE", written.id, written.rev)], "the others go on"

            await second.close()
            await until_counts(running, (1, 1, 1))  # the shared socket went with its last subscription
            await third.close()
            await until_counts(running, (0, 0, 0))
            await doctor.api.patient_api.create_or_modify_patient(Patient(first_name="After", last_name="All"))
            await asyncio.sleep(SETTLE)
            assert len(first_patients.events) + len(samples.events) + len(second_patients.events) == 1
        finally:
            await api.close()


async def test_a_subscribe_while_the_last_subscription_of_its_socket_closes_gets_a_working_subscription(
    new_professional: ProfessionalFactory,
) -> None:
    doctor = await new_professional()
    for attempt in range(3):
        old = await doctor.api.patient_api.subscribe_to_patient_events(ALL_TYPES, None, Recorder())
        received = Recorder()
        # The close takes the socket down (its last subscription) while the new one wants the same socket.
        _, new = await asyncio.gather(
            old.close(), doctor.api.patient_api.subscribe_to_patient_events(ALL_TYPES, None, received)
        )
        written = await doctor.api.patient_api.create_or_modify_patient(Patient(first_name=f"Attempt {attempt}"))
        await received.wait_count(1)

        assert old.is_closed and new.is_connected and not new.is_closed
        assert received.summary() == [("CREATE", written.id, written.rev)]
        await new.close()


async def test_on_closed_fires_exactly_once_and_closing_again_is_harmless(
    new_professional: ProfessionalFactory,
) -> None:
    doctor = await new_professional()
    connection = await doctor.api.patient_api.subscribe_to_patient_events(ALL_TYPES, None, Recorder())
    without_reason: list[None] = []
    reasons: list[str] = []
    from_coroutine: list[str] = []
    errors: list[BaseException] = []
    changed = asyncio.Event()

    async def closed_coroutine(reason: str) -> None:
        from_coroutine.append(reason)
        changed.set()

    connection.on_closed(lambda: without_reason.append(None)).on_closed(reasons.append).on_closed(closed_coroutine)
    connection.on_error(errors.append)

    await connection.close()
    await connection.close()
    await asyncio.gather(connection.close(), connection.close())
    await wait_for_condition(lambda: bool(from_coroutine), changed, "the coroutine on_closed")
    late: list[str] = []
    connection.on_closed(late.append)

    assert without_reason == [None]
    assert len(reasons) == 1 and reasons[0], "once, with a reason"
    assert from_coroutine == reasons
    assert late == reasons, "registered after the close, it fires at once"
    assert errors == [], "a client close is not an error"
    assert connection.is_closed and not connection.is_connected


async def test_on_connected_registered_once_the_connection_is_up_fires_at_once(
    new_professional: ProfessionalFactory,
) -> None:
    doctor = await new_professional()
    connection = await doctor.api.patient_api.subscribe_to_patient_events(ALL_TYPES, None, Recorder())
    fired: list[str] = []
    changed = asyncio.Event()

    async def connected_coroutine() -> None:
        fired.append("coroutine")
        changed.set()

    connection.on_connected(lambda: fired.append("plain"))
    assert fired == ["plain"], "a plain callback runs before on_connected returns"
    connection.on_connected(connected_coroutine)
    await wait_for_condition(lambda: "coroutine" in fired, changed, "the coroutine on_connected")

    assert fired == ["plain", "coroutine"]
    await connection.close()


async def test_coroutine_lifecycle_handlers_run_one_after_the_other_in_the_order_fired(
    new_professional: ProfessionalFactory,
) -> None:
    """An async on_closed does not start before the async on_connected fired ahead of it has finished, and a
    handler that fails does not stop those behind it."""
    doctor = await new_professional()
    connection = await doctor.api.patient_api.subscribe_to_patient_events(ALL_TYPES, None, Recorder())
    order: list[str] = []
    gate = asyncio.Event()
    changed = asyncio.Event()

    async def slow_connected() -> None:
        order.append("connected: start")
        await gate.wait()
        order.append("connected: end")

    async def failing_connected() -> None:
        order.append("failing")
        raise RuntimeError("a handler that fails")

    async def closed(reason: str) -> None:
        order.append(f"closed: {reason}")
        changed.set()

    connection.on_connected(slow_connected).on_connected(failing_connected).on_closed(closed)
    await connection.close()
    await asyncio.sleep(SETTLE)
    assert order == ["connected: start"], "the handlers fired after it wait for the first to finish"
    gate.set()
    await wait_for_condition(lambda: len(order) == 4, changed, "the on_closed coroutine", lambda: order)
    assert order == ["connected: start", "connected: end", "failing", "closed: closed by the client"]


async def test_a_callback_that_closes_its_own_subscription_runs_to_its_end(
    new_professional: ProfessionalFactory,
) -> None:
    doctor = await new_professional()
    finished: list[str | None] = []
    closed: list[str] = []
    changed = asyncio.Event()
    connections: list[Connection[Patient]] = []

    async def first_one_only(patient: Patient) -> None:
        await connections[0].close()
        await asyncio.sleep(0.01)  # the callback's work after the close is not cancelled
        finished.append(patient.id)
        changed.set()

    connections.append(await doctor.api.patient_api.subscribe_to_patient_events(["CREATE"], None, first_one_only))
    connections[0].on_closed(closed.append)
    created = await doctor.api.patient_api.create_or_modify_patient(Patient(first_name="Only", last_name="One"))
    await wait_for_condition(lambda: bool(finished), changed, "the callback to finish")
    await doctor.api.patient_api.create_or_modify_patient(Patient(first_name="Too", last_name="Late"))
    await asyncio.sleep(SETTLE)

    assert finished == [created.id]
    assert len(closed) == 1 and connections[0].is_closed


async def test_medtech_api_close_closes_every_subscription_on_every_socket(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    async with node(server.database_url) as running:
        api = await login(running.url, doctor)
        closed: dict[str, list[str]] = {}
        connections: list[Connection[Any]] = []
        for name, options in (
            ("patients", None),
            ("samples", None),
            ("own socket", SubscriptionOptions(heartbeat_ms=10_000)),
        ):
            sub = api.data_sample_api if name == "samples" else api.patient_api
            connection = await sub.subscribe_to_events(ALL_TYPES, None, Recorder(), options)
            connection.on_closed(closed.setdefault(name, []).append)
            connections.append(connection)
        assert await counts(running) == (2, 3, 3)

        await api.close()

        assert all(c.is_closed for c in connections)
        assert {name: len(reasons) for name, reasons in closed.items()} == {
            "patients": 1,
            "samples": 1,
            "own socket": 1,
        }
        await until_counts(running, (0, 0, 0))
        await api.close()  # again: harmless
        assert all(len(reasons) == 1 for reasons in closed.values())


async def write_while_no_server_runs(database_url: str, patient: Patient) -> Patient:
    """A write committed to the event log while no server is running (as another node would)."""
    database = Database(database_url)
    try:
        admin = Actor(user_id="test", data_owner_id=None, is_admin=True)
        [stored] = await EntityRepository(database).create_or_modify(KIND_BY_NAME["Patient"], [patient], admin)
    finally:
        await database.close()
    assert isinstance(stored, Patient)
    return stored


async def test_a_server_shutdown_closes_with_1001_and_the_sdk_reconnects_and_resumes_with_nothing_lost_or_doubled(
    server: RunningServer, tmp_path: Path
) -> None:
    async with database_url_for(server.backend, tmp_path) as database_url:
        running = Node(database_url, unused_port())
        await running.start()
        api = await login(running.url)
        try:
            received, connected, reconnecting, closed = Recorder(), Calls(), Calls(), Calls()
            connection = await api.patient_api.subscribe_to_patient_events(ALL_TYPES, None, received, FAST_RETRY)
            while_down_id = str(uuid.uuid4())
            only_while_down = Recorder()  # nothing delivered before the restart: it resumes from its subscribe
            await api.patient_api.subscribe_to_patient_events(
                ALL_TYPES, PatientByIdsFilter(ids=frozenset({while_down_id})), only_while_down, FAST_RETRY
            )
            connection.on_connected(connected).on_reconnecting(reconnecting).on_closed(closed)
            assert connected.values == [None], "already connected: at once"
            raw = await connect(running.url.replace("http", "ws", 1) + "/ws/v1/events")
            await raw.send(orjson.dumps({"type": "auth", "token": await api.transport.access_token()}).decode())
            await raw.send(
                orjson.dumps({"type": "subscribe", "id": "raw", "entity": "Patient", "events": ["CREATE"]}).decode()
            )
            assert orjson.loads(await raw.recv())["type"] == "subscribed"

            before = [
                await api.patient_api.create_or_modify_patient(Patient(first_name=f"Before {n}")) for n in range(3)
            ]
            await received.wait_count(3)

            await running.stop()
            await raw.wait_closed()
            assert (raw.close_code, raw.close_reason) == (1001, "server going away")
            await reconnecting.wait_count(1, "on_reconnecting")
            assert not connection.is_connected
            while_down = await write_while_no_server_runs(
                database_url, Patient(id=while_down_id, first_name="While", last_name="Down")
            )
            await running.start()  # same port, same database
            await connected.wait_count(2, "on_connected again")
            after = [await api.patient_api.create_or_modify_patient(Patient(first_name=f"After {n}")) for n in range(3)]
            await received.wait_count(7)
            await only_while_down.wait_count(1)
            await asyncio.sleep(SETTLE)

            written = [*before, while_down, *after]
            assert received.summary() == [("CREATE", p.id, p.rev) for p in written], "each once, in order"
            seqs = [e.seq for e in received.events]
            assert seqs == sorted(set(seqs))
            assert only_while_down.summary() == [("CREATE", while_down.id, while_down.rev)]
            assert closed.values == [], "a restart is not the end of the subscription"
            await connection.close()
        finally:
            await api.close()
            await running.stop()


async def test_a_session_the_server_ends_is_renewed_and_the_subscription_resumes_with_nothing_lost(
    new_professional: ProfessionalFactory,
) -> None:
    """The user's own password change ends its sessions: the server closes its socket with 4001, and the SDK
    logs in again with the new password (its refused token was far from its expiry) and resumes."""
    doctor = await new_professional()
    recorder, connected, reconnections, errors = Recorder(), Calls(), Calls(), Calls()
    connection = await doctor.api.patient_api.subscribe_to_patient_events(["CREATE"], None, recorder, FAST_RETRY)
    connection.on_connected(connected).on_reconnecting(reconnections).on_error(errors)
    first = await doctor.api.patient_api.create_or_modify_patient(Patient())
    await recorder.wait_count(1)

    user = await doctor.api.user_api.get_logged_user()
    await doctor.api.user_api.create_or_modify_user(user.model_copy(update={"password": f"pw-{uuid.uuid4().hex}"}))
    await reconnections.wait_count(1, "reconnections")
    # Connected again before any REST call of this SDK: the socket renewed the token itself.
    await connected.wait_count(2, "connections (registered while up, then after the 4001)")
    second = await doctor.api.patient_api.create_or_modify_patient(Patient())
    await recorder.wait_count(2)
    assert [e.entity.id for e in recorder.events] == [first.id, second.id]
    assert errors.values == [] and not connection.is_closed
    await connection.close()


async def test_closing_while_reconnecting_stops_the_retries_and_fires_on_closed_once(server: RunningServer) -> None:
    running = Node(server.database_url, unused_port())  # another node: stopping it stops only this test's sockets
    await running.start()
    api = await login(running.url)
    try:
        attempts, reasons, errors = Calls(), Calls(), Calls()
        connection = await api.patient_api.subscribe_to_patient_events(ALL_TYPES, None, Recorder(), FAST_RETRY)
        connection.on_reconnecting(attempts).on_closed(reasons).on_error(errors)

        await running.stop()
        await attempts.wait_count(1, "on_reconnecting")
        await connection.close()
        retries = len(attempts.values)
        await asyncio.sleep(SETTLE)  # several retry intervals

        assert len(attempts.values) == retries, "no retry after the close"
        assert len(reasons.values) == 1 and connection.is_closed
        assert errors.values == []
    finally:
        await api.close()
        await running.stop()


async def test_a_subscribe_call_that_times_out_leaves_nothing_subscribed(server: RunningServer) -> None:
    running = Node(server.database_url, unused_port())  # another node: stopping it stops only this test's sockets
    await running.start()
    api = await login(running.url)
    try:
        await running.stop()
        abandoned = Recorder()
        with pytest.raises(TimeoutError):  # the server is down: the call is still retrying when it times out
            async with asyncio.timeout(0.2):
                await api.patient_api.subscribe_to_patient_events(ALL_TYPES, None, abandoned, FAST_RETRY)
        await running.start()
        control = Recorder()
        await api.patient_api.subscribe_to_patient_events(ALL_TYPES, None, control, FAST_RETRY)
        assert await counts(running) == (1, 1, 1), "only the subscription that was acknowledged"
        written = await api.patient_api.create_or_modify_patient(Patient(first_name="After", last_name="Timeout"))
        await control.wait_count(1)
        await asyncio.sleep(SETTLE)

        assert control.summary() == [("CREATE", written.id, written.rev)]
        assert abandoned.events == [], "the callback of a subscribe call that failed is never called"
    finally:
        await api.close()
        await running.stop()


async def test_when_the_server_never_comes_back_on_error_and_on_closed_fire_with_a_reason(
    server: RunningServer,
) -> None:
    running = Node(server.database_url, unused_port())  # another node: stopping it stops only this test's sockets
    await running.start()
    api = await login(running.url)
    try:
        options = SubscriptionOptions(connection_max_retry=2, connection_retry_interval_ms=50)
        errors, reasons, attempts = Calls(), Calls(), Calls()
        connection = await api.patient_api.subscribe_to_patient_events(ALL_TYPES, None, Recorder(), options)
        connection.on_error(errors).on_closed(reasons).on_reconnecting(attempts)

        await running.stop()
        await reasons.wait_count(1, "on_closed")
        await asyncio.sleep(SETTLE)

        assert attempts.values == [1, 2], "connection_max_retry retries, then it gives up"
        assert len(errors.values) == 1 and len(reasons.values) == 1, (errors.values, reasons.values)
        assert "2 retries" in reasons.values[0], reasons.values
        assert connection.is_closed and not connection.is_connected
        assert isinstance(errors.values[0], UnavailableError), "an SDK error, whatever the socket said"
        # A new subscription to the server that is gone raises once its retries run out: it neither hangs
        # nor returns a connection that will never deliver.
        with pytest.raises(UnavailableError, match="2 retries"):
            await api.patient_api.subscribe_to_patient_events(ALL_TYPES, None, Recorder(), options)
    finally:
        await api.close()
        await running.stop()
