"""Nothing lost (docs/guarantees.md): across a server killed mid-stream and restarted, every committed event reaches
the subscriber exactly once and in seq order; a resume point the server cannot honour (another event log, or
below the retention floor) is a `gap`, never a silent hole; one it can honour replays exactly what was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from sqlalchemy import Connection, delete, select, update

from medstream.filters import PatientByHealthcarePartyFilter
from medstream.model import Patient
from medstream.sdk import MedTechApi
from medstream.sdk.connection import Gap, SubscriptionEvent, SubscriptionOptions
from medstream.store.database import Database
from medstream.store.schema import outbox, outbox_tail
from tests.conftest import (
    ADMIN_LOGIN,
    ADMIN_PASSWORD,
    ProfessionalFactory,
    RunningServer,
    database_url_for,
    unused_port,
)
from tests.integration.raw_events import (
    WAIT,
    DedicatedServer,
    RawClient,
    create_patients,
    dedicated_server,
    login,
)

MEDSTREAM = str(Path(sys.executable).with_name("medstream"))


async def outbox_rows(database_url: str, after: int, entity_type: str = "Patient") -> list[tuple[int, str, list[str]]]:
    """(seq, entity id, readers) of every committed event of `entity_type` above `after`, in seq order."""
    database = Database(database_url)
    try:
        query = (
            select(outbox.c.seq, outbox.c.entity_id, outbox.c.readers)
            .where(outbox.c.seq > after, outbox.c.entity_type == entity_type)
            .order_by(outbox.c.seq)
        )
        rows = await database.run_read(lambda conn: conn.execute(query).all())
        return [(int(seq), str(entity_id), orjson.loads(readers)) for seq, entity_id, readers in rows]
    finally:
        await database.close()


# -- a server killed mid-stream -------------------------------------------------------------------------------


@dataclass
class ServerProcess:
    """`medstream serve` in a process of its own, that a test can SIGKILL and start again on the same port."""

    database_url: str
    log_path: Path
    port: int = field(default_factory=unused_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: ASYNC220 - starting it does not wait for it
                [
                    *(MEDSTREAM, "serve", "--host", "127.0.0.1", "--port", str(self.port)),
                    *("--database", self.database_url, "--log-level", "warning"),
                    *("--admin-login", ADMIN_LOGIN, "--admin-password", ADMIN_PASSWORD),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        async with httpx.AsyncClient(base_url=self.url, timeout=1) as http:
            async with asyncio.timeout(30):
                while True:
                    assert self.process.poll() is None, self.log_path.read_text()[-3000:]
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get("/health")).status_code == 200:
                            return
                    await asyncio.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


@contextlib.contextmanager
def killed_at_exit(server: ServerProcess) -> Iterator[ServerProcess]:
    try:
        yield server
    finally:
        server.kill()


@dataclass
class Writer:
    """Creates patients one at a time through REST, each with an id of its own; knows which calls failed."""

    url: str
    token: str
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as http:
            while not stop.is_set():
                patient_id = str(uuid.uuid4())
                try:
                    response = await http.post(
                        "/rest/v1/patients",
                        json={"id": patient_id, "dateOfBirth": 19700101},  # clear fields only: no key needed
                        headers={"Authorization": f"Bearer {self.token}"},
                    )
                    response.raise_for_status()
                    self.succeeded.append(patient_id)
                except httpx.HTTPError:
                    self.failed.append(patient_id)  # in doubt: the server may have committed it before dying
                    await asyncio.sleep(0.02)


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` (state another task or process changes) every 20 ms, for at most 2 * WAIT seconds."""
    for _ in range(int(2 * WAIT / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_server_killed_mid_stream_loses_no_event_and_repeats_none(backend: str, tmp_path: Path) -> None:
    async with database_url_for(backend, tmp_path) as database_url:
        server = ServerProcess(database_url, tmp_path / "server.log")
        with killed_at_exit(server):
            await server.start()
            api = (
                await MedTechApi.builder()
                .with_url(server.url)
                .with_username(ADMIN_LOGIN)
                .with_password(ADMIN_PASSWORD)
                .build()
            )
            delivered: list[tuple[int, str]] = []

            def on_event(patient: Patient, event: SubscriptionEvent[Patient]) -> None:
                assert patient.id is not None
                delivered.append((event.seq, patient.id))

            options = SubscriptionOptions(connection_retry_interval_ms=100, connection_max_retry=20)
            connection = await api.patient_api.subscribe_to_patient_events(["CREATE"], None, on_event, options)
            reconnections: list[int] = []
            connection.on_reconnecting(reconnections.append)
            start = connection.tracker.last_seq
            assert start is not None
            # Three writers at once: on PostgreSQL their transactions commit in another order than they began.
            token = (await login(server.url, ADMIN_LOGIN, ADMIN_PASSWORD))["token"]
            writers = [Writer(server.url, token) for _ in range(3)]
            stop = asyncio.Event()
            writing = [asyncio.create_task(writer.run(stop)) for writer in writers]

            def succeeded() -> int:
                return sum(len(writer.succeeded) for writer in writers)

            def failed() -> int:
                return sum(len(writer.failed) for writer in writers)

            try:
                await wait_until(lambda: succeeded() >= 30, "30 writes before the crash")
                server.kill()  # mid-stream: the writers are writing, the dispatcher dispatching
                failed_while_down = failed()
                await wait_until(lambda: failed() > failed_while_down, "a write failing while down")
                await server.start()
                written_before_restart = succeeded()
                await wait_until(lambda: succeeded() >= written_before_restart + 30, "30 writes after the restart")
            finally:
                stop.set()
                await asyncio.gather(*writing)
            committed = await outbox_rows(database_url, start)
            await wait_until(lambda: len(delivered) >= len(committed), f"{len(committed)} events delivered")
            await connection.wait_delivered()
            await api.close()
            assert reconnections, "the subscriber lost its socket with the server, and came back"

            assert delivered == [(seq, entity_id) for seq, entity_id, _ in committed], (
                "every committed event, exactly once, in seq order"
            )
            seqs = [seq for seq, _ in delivered]
            assert seqs == list(range(start + 1, start + 1 + len(seqs))), "no gap in the positions"
            delivered_ids = {entity_id for _, entity_id in delivered}
            all_succeeded = {i for writer in writers for i in writer.succeeded}
            in_doubt = {i for writer in writers for i in writer.failed}
            assert all_succeeded <= delivered_ids, "every write that was answered was delivered"
            assert delivered_ids <= all_succeeded | in_doubt, "nothing was delivered that nobody wrote"
            async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as http:
                for patient_id in in_doubt:  # a write in doubt is all there (stored and delivered) or not at all
                    stored = (await http.get(f"/rest/v1/patients/{patient_id}")).status_code == 200
                    assert stored == (patient_id in delivered_ids), patient_id


# -- gaps: a resume point the server cannot honour ---------------------------------------------------------------


async def test_a_resume_point_from_another_event_log_gets_a_gap_then_live_events(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    token = (await login(server.url, doctor.login, doctor.password))["token"]
    async with RawClient.opened(server.url, token) as client:
        foreign = uuid.uuid4().hex
        await client.send(
            {"type": "subscribe", "id": "s", "entity": "Patient", "events": ["CREATE"], "after": 3, "epoch": foreign}
        )
        subscribed = await client.recv_until(lambda f: f["type"] == "subscribed")
        gap = await client.recv()
        assert gap["type"] == "gap" and gap["id"] == "s" and gap["from"] == 3
        assert gap["epoch"] == subscribed["epoch"] != foreign and gap["position"] == subscribed["position"]
        assert foreign in gap["reason"]
        [patient] = await create_patients(server.url, token)
        event = await client.event_for("s", patient["id"])
        assert event["seq"] > gap["position"]
        assert [f["type"] for f in client.frames] == ["subscribed", "gap", "event"]


@pytest_asyncio.fixture
async def own_server(tmp_path: Path) -> AsyncIterator[DedicatedServer]:
    """A server of the test's own: these tests rewrite its event log under it."""
    async with dedicated_server(tmp_path) as server:
        yield server


async def test_the_sdk_resuming_into_a_restored_event_log_gets_on_gap_then_live_events(
    own_server: DedicatedServer,
) -> None:
    api = await own_server.admin_api()
    seen: list[str] = []
    gaps: list[Gap] = []
    arrived = asyncio.Event()

    def on_event(patient: Patient) -> None:
        assert patient.id is not None
        seen.append(patient.id)
        arrived.set()

    async def next_event(patient_id: str) -> None:
        async with asyncio.timeout(WAIT):
            while patient_id not in seen:
                arrived.clear()
                await arrived.wait()

    try:
        options = SubscriptionOptions(connection_retry_interval_ms=50, connection_max_retry=20)
        connection = await api.patient_api.subscribe_to_patient_events(["CREATE"], None, on_event, options)
        connection.on_gap(gaps.append)
        first = await api.patient_api.create_or_modify_patient(Patient(first_name="Before"))
        await next_event(str(first.id))
        last_seq, old_epoch = connection.tracker.resume_point()

        # The database is restored from elsewhere: a new epoch. Then the socket drops and the SDK resumes.
        new_epoch = uuid.uuid4().hex
        await rewrite_log(own_server.database_url, update(outbox_tail).values(epoch=new_epoch))
        dispatcher = own_server.server.app.state.medstream.dispatcher
        await wait_until(lambda: dispatcher.epoch == new_epoch, "the server to see the new epoch")
        for socket_of_node in list(own_server.hub.connections):
            socket_of_node.close_soon(1012, "restarting")

        await wait_until(lambda: gaps != [], "on_gap")
        assert gaps[0].from_seq == last_seq and old_epoch != new_epoch and "epoch" in gaps[0].reason
        assert connection.tracker.epoch == new_epoch
        after = await api.patient_api.create_or_modify_patient(Patient(first_name="After"))
        await next_event(str(after.id))
        assert seen == [first.id, after.id] and len(gaps) == 1
    finally:
        await api.close()


async def rewrite_log(database_url: str, *statements: Any) -> None:
    database = Database(database_url)
    try:

        def run(conn: Connection) -> None:
            for statement in statements:
                conn.execute(statement)

        await database.run_write(run)
    finally:
        await database.close()


@pytest.mark.parametrize("raise_floor", [True, False], ids=["floor-raised", "rows-gone-floor-not-raised"])
async def test_a_resume_point_below_the_retention_floor_gets_a_gap_never_a_silent_hole(
    own_server: DedicatedServer, raise_floor: bool
) -> None:
    token = await own_server.admin_token()
    async with RawClient.opened(own_server.url, token) as client:
        subscribed = await client.subscribe("s")
        [first] = await create_patients(own_server.url, token)
        last = (await client.event_for("s", first["id"]))["seq"]
    missed = [p["id"] for p in await create_patients(own_server.url, token, 6)]
    rows = await outbox_rows(own_server.database_url, last)
    assert [entity_id for _, entity_id, _ in rows] == missed
    floor = rows[3][0]  # the first three missed events are trimmed
    trim = [delete(outbox).where(outbox.c.seq < floor)]
    if raise_floor:
        trim.append(update(outbox_tail).values(floor_seq=floor))
    await rewrite_log(own_server.database_url, *trim)
    dispatcher = own_server.server.app.state.medstream.dispatcher
    await wait_until(lambda: dispatcher.floor_seq == (floor if raise_floor else 0), "the server to see the floor")

    async with RawClient.opened(own_server.url, token) as client:
        await client.send(
            {"type": "subscribe", "id": "s", "entity": "Patient", "events": ["CREATE"]}
            | {"after": last, "epoch": subscribed["epoch"]}
        )
        gap = await client.recv_until(lambda f: f["type"] == "gap")
        assert gap["from"] == last and "retention" in gap["reason"]
        [later] = await create_patients(own_server.url, token)
        await client.event_for("s", later["id"])
        events = client.events("s")
        assert all(e["seq"] > gap["position"] for e in events), "nothing at or below the gap's position follows it"
        if raise_floor:
            # Below the floor: the server says so at once and goes on from its head; the client re-syncs by query.
            assert [e["entity"]["id"] for e in events] == [later["id"]]
        else:
            # Rows gone without the floor raised: the replay finds the hole, says so, and replays what is left.
            assert gap["position"] == floor - 1
            assert [e["entity"]["id"] for e in events] == [*missed[3:], later["id"]]


# -- a resume point within retention: exactly the missed events ------------------------------------------------


async def test_a_resume_within_retention_replays_exactly_the_missed_matching_events_with_no_seam(
    server: RunningServer, admin_api: MedTechApi, new_professional: ProfessionalFactory
) -> None:
    """Admin subscribes to the patients shared with doctor A while A and B write; A's patients match, B's not."""
    a, b = await new_professional("Alice"), await new_professional("Bob")
    token = (await login(server.url, server.admin_login, server.admin_password))["token"]
    tokens = {
        "a": (await login(server.url, a.login, a.password))["token"],
        "b": (await login(server.url, b.login, b.password))["token"],
    }
    matching_filter = PatientByHealthcarePartyFilter(healthcare_party_id=a.id).to_json_dict()

    async def write_both(rounds: int) -> None:
        for _ in range(rounds):
            await create_patients(server.url, tokens["a"])
            await create_patients(server.url, tokens["b"])

    async with RawClient.opened(server.url, token) as client:
        subscribed = await client.subscribe("a-patients", filter=matching_filter)
        await write_both(3)
        await client.recv_until(lambda f: len(client.events("a-patients")) == 3)
        first_session = client.events("a-patients")
    last = first_session[-1]["seq"]

    await write_both(3)  # missed while away
    async with RawClient.opened(server.url, token) as client:
        # Writes keep coming while the subscription replays and goes live: the seam is crossed under load.
        concurrent = asyncio.create_task(write_both(5))
        await client.send(
            {"type": "subscribe", "id": "a-patients", "entity": "Patient", "events": ["CREATE"]}
            | {"filter": matching_filter, "after": last, "epoch": subscribed["epoch"]}
        )
        await concurrent
        expected = [
            (seq, entity_id)
            for seq, entity_id, readers in await outbox_rows(server.database_url, subscribed["position"])
            if a.id in readers
        ]
        assert len(expected) == 3 + 3 + 5
        await client.event_for("a-patients", expected[-1][1])
        second_session = client.events("a-patients")
        assert [f["type"] for f in client.frames[:1]] == ["subscribed"]

    received = [(f["seq"], f["entity"]["id"]) for f in first_session + second_session]
    assert received == expected, "the missed matching events, then live ones: no gap, no duplicate at the seam"
    assert not any(f["type"] == "gap" for f in client.frames)
