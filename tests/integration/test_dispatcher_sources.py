"""Where the dispatcher gets events from on SQLite: what this process commits comes straight from the commit;
the log is read only when something else wrote in between, or at a poll."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from medstream.access import Actor
from medstream.events.subscription import Subscription
from medstream.events.types import EventType
from medstream.model import CodingReference, DataSample, Patient
from medstream.model.entities import KIND_BY_NAME
from medstream.server.dispatcher import Dispatcher
from medstream.store import outbox
from medstream.store.database import Database
from medstream.store.repository import EntityRepository

ACTOR = Actor(user_id="user-1", data_owner_id="hcp-1", is_admin=False)
SAMPLES = KIND_BY_NAME["DataSample"]


class _Frames:
    """A subscription's sink that keeps the seq of every event frame it is handed."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.arrived = asyncio.Event()

    def deliver(self, frame: bytes) -> None:
        message = orjson.loads(frame)
        if message["type"] == "event":
            self.seqs.append(message["seq"])
            self.arrived.set()

    async def wait_for_room(self) -> int:
        return 1000

    async def until(self, count: int, within: float = 5.0) -> list[int]:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while len(self.seqs) < count:
                    self.arrived.clear()
                    await self.arrived.wait()
        return self.seqs


class _LogReads:
    """Counts the dispatcher's reads of the log (its head and pages)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        for name in ("tail_and_page", "read_after"):
            monkeypatch.setattr(outbox, name, self._counting(getattr(outbox, name)))

    def _counting(self, read: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return read(*args, **kwargs)

        return counted


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[Database, EntityRepository, Dispatcher, str]]:
    database = Database(f"sqlite:///{tmp_path / 'events.db'}")
    await database.migrate()
    repository = EntityRepository(database)
    (patient,) = await repository.create_or_modify(KIND_BY_NAME["Patient"], [Patient(first_name="Ann")], ACTOR)
    dispatcher = Dispatcher(database, poll_interval=60.0)  # no poll within a test: only commits wake it
    await dispatcher.start()
    try:
        assert patient.id is not None
        yield database, repository, dispatcher, patient.id
    finally:
        await dispatcher.stop()
        await database.close()


async def _subscribe(dispatcher: Dispatcher) -> _Frames:
    frames = _Frames()
    subscription = Subscription("s1", "DataSample", frozenset({EventType.CREATE}), None, ACTOR, frames, cursor=0)
    assert not await dispatcher.register(subscription, None, None)  # live at once, no replay
    return frames


def _sample(patient_id: str, code: str) -> DataSample:
    return DataSample(patient_id=patient_id, labels={CodingReference(type="T", code=code)})


async def test_events_committed_here_are_dispatched_in_order_without_reading_the_log(
    store: tuple[Database, EntityRepository, Dispatcher, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    database, repository, dispatcher, patient = store
    frames = await _subscribe(dispatcher)
    await asyncio.sleep(0.05)  # the start-up read is done
    reads = _LogReads(monkeypatch)
    head = (await database.run_read(outbox.head)).last_seq

    written = await asyncio.gather(
        *(repository.create_or_modify(SAMPLES, [_sample(patient, str(i))], ACTOR) for i in range(20))
    )

    assert await frames.until(20) == list(range(head + 1, head + 21))
    assert len(written) == 20 and dispatcher.position == head + 20
    assert reads.count == 0


async def test_a_write_from_another_process_between_two_of_ours_is_read_from_the_log_in_its_place(
    store: tuple[Database, EntityRepository, Dispatcher, str], tmp_path: Path
) -> None:
    database, repository, dispatcher, patient = store
    other = Database(f"sqlite:///{tmp_path / 'events.db'}")  # as another process would, with its own writer
    try:
        frames = await _subscribe(dispatcher)
        head = (await database.run_read(outbox.head)).last_seq
        await repository.create_or_modify(SAMPLES, [_sample(patient, "ours-1")], ACTOR)
        assert await frames.until(1) == [head + 1]
        await EntityRepository(other).create_or_modify(SAMPLES, [_sample(patient, "theirs")], ACTOR)
        await asyncio.sleep(0.05)
        assert frames.seqs == [head + 1], "nothing tells this node of the other's write but the log"
        await repository.create_or_modify(SAMPLES, [_sample(patient, "ours-2")], ACTOR)

        # Our second event does not follow on from the first: the one between is read from the log, then ours.
        assert await frames.until(3) == [head + 1, head + 2, head + 3]
    finally:
        await other.close()
