"""An application that stores the position of each event it handles, alongside what it made of it, gets every
event after that position exactly once when it starts again, however it ended; `on_gap` when that is impossible.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from medstream.errors import ValidationError
from medstream.model import Patient
from medstream.sdk import Gap, MedTechApi, Position, SubscriptionEvent
from tests.conftest import ADMIN_LOGIN, ADMIN_PASSWORD, RunningServer
from tests.integration.raw_events import WAIT, create_patients, login

ROOT = Path(__file__).parents[2]
KILLS = 2  # the subscriber is killed this many times, each while the writers write
EVENTS_BETWEEN_KILLS = 25
PAUSE = 0.02  # between a writer's writes: the test is about order and count, not volume


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` (state another task or process changes) every 20 ms, for at most 2 * WAIT seconds."""
    for _ in range(int(2 * WAIT / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


async def at_least(count: Callable[[], int], target: int, what: str) -> None:
    await eventually(lambda: count() >= target, what)


@contextlib.asynccontextmanager
async def subscriber(url: str, store: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """The subscriber application in a process of its own, once it is subscribed; SIGKILLed when done."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "tests.integration.resuming_subscriber", url, str(store)),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(2 * WAIT):
            assert await process.stdout.readline() == b"subscribed\n", "the subscriber ended before subscribing"
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def write_patients(url: str, token: str, written: list[str], stop: asyncio.Event) -> None:
    """Create patients one at a time, each with an id of its own, until `stop`; `written` the ids stored."""
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as http:
        while not stop.is_set():
            patient_id = str(uuid.uuid4())
            body = {"id": patient_id, "firstName": "Restart", "lastName": "Test"}
            response = await http.post("/rest/v1/patients", json=body, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, response.text
            written.append(patient_id)
            await asyncio.sleep(PAUSE)


def stored_count(store: Path) -> int:
    return store.read_bytes().count(b"\n") if store.exists() else 0


def stored_lines(store: Path) -> list[tuple[str, Position]]:
    """(patient id, position) of each line the subscriber stored."""
    if not store.exists():
        return []
    return [
        (what, Position.parse(position))
        for what, position in (line.split(" ") for line in store.read_text().splitlines())
    ]


async def test_a_subscriber_process_killed_and_restarted_from_its_stored_position_gets_each_event_once(
    server: RunningServer, tmp_path: Path
) -> None:
    store = tmp_path / "store.txt"
    token = (await login(server.url, ADMIN_LOGIN, ADMIN_PASSWORD))["token"]
    written: list[str] = []
    stop = asyncio.Event()
    writers: list[asyncio.Task[None]] = []
    try:
        async with subscriber(server.url, store):
            # Two writers: on PostgreSQL their transactions commit in another order than they began.
            writers = [asyncio.create_task(write_patients(server.url, token, written, stop)) for _ in "ab"]
            await at_least(lambda: stored_count(store), EVENTS_BETWEEN_KILLS, "events")
        for restart in range(1, KILLS + 1):  # killed (by leaving `subscriber`) while the writers write
            await at_least(lambda: len(written), len(written) + EVENTS_BETWEEN_KILLS, "writes while it is down")
            async with subscriber(server.url, store):  # resumes after the position it stored last
                if restart == KILLS:
                    stop.set()
                    await asyncio.gather(*writers)
                await at_least(lambda: stored_count(store), len(written) + 1, "the events written")
            await asyncio.sleep(0.2)  # anything more (a duplicate) would have come now
    finally:
        stop.set()
        await asyncio.gather(*writers, return_exceptions=True)

    lines = stored_lines(store)
    assert lines[0][0] == "-"  # the position the first run started from
    events = lines[1:]
    assert [what for what, _ in events if what == "gap"] == []
    received = [patient_id for patient_id, _ in events]
    assert len(received) == len(set(received)), "an event was delivered twice"
    assert sorted(received) == sorted(written), f"{len(set(written) - set(received))} events lost"
    positions = [position for _, position in lines]
    assert len({position.epoch for position in positions}) == 1
    assert [p.seq for p in positions] == sorted({p.seq for p in positions}), "positions do not increase"


async def test_resuming_from_a_stored_position_delivers_what_was_written_since_then_the_live_events(
    admin_api: MedTechApi, server: RunningServer
) -> None:
    token = (await login(server.url, ADMIN_LOGIN, ADMIN_PASSWORD))["token"]
    seen: list[tuple[str, Position]] = []

    def on_event(patient: Patient, event: SubscriptionEvent[Patient]) -> None:
        seen.append((str(patient.id), event.position))

    first = await admin_api.patient_api.subscribe_to_patient_events(["CREATE"], None, on_event)
    before = [p["id"] for p in await create_patients(server.url, token, 3)]
    await eventually(lambda: len(seen) == 3, "the first events")
    await first.wait_delivered()
    stored = str(first.position)  # as an application keeps it in a text column
    assert first.position == seen[-1][1]
    await first.close()

    missed = [p["id"] for p in await create_patients(server.url, token, 4)]
    again = await admin_api.patient_api.subscribe_to_patient_events(["CREATE"], None, on_event, resume_from=stored)
    await eventually(lambda: len(seen) == 7, "the missed events")
    live = [p["id"] for p in await create_patients(server.url, token, 2)]
    await eventually(lambda: len(seen) == 9, "the live events")
    await asyncio.sleep(0.1)
    assert [patient_id for patient_id, _ in seen] == before + missed + live
    assert again.position == seen[-1][1] and again.position.seq > Position.parse(stored).seq
    await again.close()


async def test_a_stored_position_of_another_event_log_gets_on_gap_then_the_live_events(
    admin_api: MedTechApi, server: RunningServer
) -> None:
    token = (await login(server.url, ADMIN_LOGIN, ADMIN_PASSWORD))["token"]
    seen: list[str] = []
    gaps: list[Gap] = []
    connection = await admin_api.patient_api.subscribe_to_patient_events(
        ["CREATE"], None, lambda patient: seen.append(str(patient.id)), resume_from=Position(1, "another-log")
    )
    connection.on_gap(gaps.append)  # added after subscribing: it still hears of the gap found then
    await eventually(lambda: gaps != [], "on_gap")
    assert gaps[0].from_seq == 1 and "another event log" in gaps[0].reason
    assert connection.position == gaps[0].resume_from and connection.position.epoch != "another-log"
    live = [p["id"] for p in await create_patients(server.url, token, 2)]
    await eventually(lambda: seen == live, "the live events")
    assert len(gaps) == 1
    await connection.close()


@pytest.mark.parametrize("resume_from", ["", "12", "twelve@e", "-3@e", "3@"])
async def test_a_resume_from_that_is_no_position_is_refused_before_anything_is_sent(
    admin_api: MedTechApi, resume_from: str
) -> None:
    with pytest.raises(ValidationError, match="resume_from"):
        await admin_api.patient_api.subscribe_to_patient_events(["CREATE"], None, print, resume_from=resume_from)
