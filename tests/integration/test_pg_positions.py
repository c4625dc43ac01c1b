"""On PostgreSQL events get their positions after their writers commit, in numbering rounds (migration 0004,
`PostgreSQLBackend.number_round`), not inside each writer's commit: writers take no shared lock, and positions
stay dense, in the order the writes became visible, and never below what a reader has already read (docs/guarantees.md).

Each test drives the rounds itself on a fresh database, with its own connections standing in for writers that
insert an event as the store does and commit (or not) when the test says.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

from medstream.access import Actor
from medstream.events.subscription import Subscription
from medstream.events.types import EventType
from medstream.model import MedicalDevice
from medstream.model.entities import KIND_BY_NAME
from medstream.server.dispatcher import Dispatcher
from medstream.store import outbox
from medstream.store.database import Database
from medstream.store.postgresql.backend import PostgreSQLBackend
from medstream.store.repository import EntityRepository
from medstream.store.upgrade import MIGRATIONS_DIR
from tests.conftest import database_url_for

_INSERT_EVENT = (
    "INSERT INTO outbox (entity_type, entity_id, rev, event_type, document, readers, created)"
    " VALUES ('MedicalDevice', $1, '1-a', 'CREATE', '{}', '[]', 0) RETURNING id"
)


def _postgresql(database: Database) -> PostgreSQLBackend:
    assert isinstance(database.backend, PostgreSQLBackend)
    return database.backend


class _Log:
    def __init__(self, url: str, database: Database) -> None:
        self.url = url
        self.database = database

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.url)

    async def insert(self, conn: asyncpg.Connection, entity_id: str) -> int:
        """Insert an event as the store does, unnumbered, in `conn`'s transaction; its row id."""
        return int(await conn.fetchval(_INSERT_EVENT, entity_id))

    async def positions(self) -> dict[str, int | None]:
        conn = await self.connect()
        try:
            rows = await conn.fetch("SELECT entity_id, seq FROM outbox")
            return {r["entity_id"]: r["seq"] for r in rows}
        finally:
            await conn.close()

    async def last_seq(self) -> int:
        return (await self.database.run_read(outbox.head)).last_seq


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[_Log]:
    async with database_url_for("postgresql", tmp_path) as url:
        database = Database(url, pool_size=4)
        await database.migrate()
        try:
            yield _Log(url, database)
        finally:
            await database.close()


async def test_an_event_is_numbered_once_its_writer_commits_in_the_order_writes_became_visible(log: _Log) -> None:
    early, late = await log.connect(), await log.connect()
    try:
        slow = early.transaction()
        await slow.start()
        first_id = await log.insert(early, "inserted-first")  # the lower row id, still uncommitted
        async with late.transaction():
            second_id = await log.insert(late, "committed-first")
        assert first_id < second_id

        assert await _postgresql(log.database).number_round() == 1  # the uncommitted event is not seen, so not numbered
        assert await log.positions() == {"committed-first": 1}
        assert await log.last_seq() == 1

        await slow.commit()
        assert await _postgresql(log.database).number_round() == 1
        assert await log.positions() == {"inserted-first": 2, "committed-first": 1}
        assert await log.last_seq() == 2
    finally:
        await early.close()
        await late.close()


async def test_a_rolled_back_event_is_never_numbered_and_leaves_no_hole(log: _Log) -> None:
    conn = await log.connect()
    try:
        rolled_back = conn.transaction()
        await rolled_back.start()
        await log.insert(conn, "rolled-back")
        await rolled_back.rollback()
        async with conn.transaction():
            await log.insert(conn, "kept")
    finally:
        await conn.close()

    assert await _postgresql(log.database).number_round() == 1
    assert await log.positions() == {"kept": 1}
    assert await _postgresql(log.database).number_round() == 0


async def test_concurrent_rounds_from_many_connections_keep_positions_dense_and_in_insert_order(log: _Log) -> None:
    """Writers commit while 6 connections run small rounds at once: the rounds take turns on the tail, so every
    event gets one position, with none skipped or taken twice, and those committed together in insert order."""
    writers = [await log.connect() for _ in range(4)]
    rounds = [await log.connect() for _ in range(6)]
    inserted: list[tuple[int, str]] = []
    writing = True

    async def write(conn: asyncpg.Connection, name: str) -> None:
        for i in range(150):
            async with conn.transaction():
                for j in range(3):
                    entity_id = f"{name}-{i}-{j}"
                    inserted.append((await log.insert(conn, entity_id), entity_id))

    async def number(conn: asyncpg.Connection) -> int:
        total = 0
        while writing:
            total += int(await conn.fetchval("SELECT outbox_number(7)"))
        return total

    try:
        numbering = [asyncio.create_task(number(conn)) for conn in rounds]
        await asyncio.gather(*(write(conn, f"w{n}") for n, conn in enumerate(writers)))
        writing = False
        numbered = sum(await asyncio.gather(*numbering))
        numbered += await _postgresql(log.database).number_round()  # what the last rounds left
    finally:
        for conn in writers + rounds:
            await conn.close()

    positions = await log.positions()
    assert numbered == len(inserted) == 1800
    assert sorted(p for p in positions.values() if p is not None) == list(range(1, 1801))
    assert await log.last_seq() == 1800
    # One writer's events were inserted in its order and committed in its order: so are their positions.
    for name in ("w0", "w1", "w2", "w3"):
        own = [positions[entity_id] for _, entity_id in sorted(inserted) if entity_id.startswith(f"{name}-")]
        assert own == sorted(own), name


async def test_a_round_with_nothing_to_number_does_not_wait_for_the_tail_and_one_with_events_does(log: _Log) -> None:
    """With nothing to number a round takes no lock (a poll every few ms must not queue behind a round of another
    node, nor write); with events to number it waits for the round holding the tail, then numbers after it."""
    holder, writer = await log.connect(), await log.connect()
    try:
        holding = holder.transaction()
        await holding.start()
        await holder.execute("SELECT last_seq FROM outbox_tail WHERE id = 1 FOR UPDATE")  # a round in progress

        async with asyncio.timeout(2):
            assert await _postgresql(log.database).number_round() == 0

        async with writer.transaction():
            await log.insert(writer, "waits")
        waiting = asyncio.create_task(_postgresql(log.database).number_round())
        await asyncio.sleep(0.3)
        assert not waiting.done(), "a round numbered while another held the tail"
        await holding.commit()
        assert await asyncio.wait_for(waiting, 5) == 1
        assert await log.positions() == {"waits": 1}
    finally:
        await holder.close()
        await writer.close()


class _Sink:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.arrived = asyncio.Event()

    def deliver(self, frame: bytes) -> None:
        self.frames.append(frame)
        self.arrived.set()

    async def wait_for_room(self) -> int:
        return 1000


async def test_a_subscription_starts_above_a_write_that_committed_before_it_even_if_not_numbered_yet(
    log: _Log,
) -> None:
    """Guarantee 3: a write that committed before the subscribe is never delivered. Its event may still wait
    for a round when the subscription registers: the registration numbers it, so the subscription starts above."""
    dispatcher = Dispatcher(log.database, poll_interval=60.0)  # not started: no round but the registration's
    dispatcher.epoch = "e"
    conn = await log.connect()
    try:
        async with conn.transaction():
            await log.insert(conn, "before-the-subscribe")
    finally:
        await conn.close()
    assert await log.positions() == {"before-the-subscribe": None}

    sink = _Sink()
    actor = Actor(user_id="admin", data_owner_id=None, is_admin=True)
    subscription = Subscription(
        f"s-{uuid.uuid4().hex[:6]}", "MedicalDevice", frozenset({EventType.CREATE}), None, actor, sink, cursor=0
    )
    assert not await dispatcher.register(subscription, None, None)

    assert await log.positions() == {"before-the-subscribe": 1}
    assert subscription.cursor == 1 and b'"position":1' in sink.frames[0]


def _migrate(revision: str, *, down: bool = False) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)

    return run


async def test_the_migration_keeps_every_position_both_ways(tmp_path: Path) -> None:
    """Events numbered at commit by the trigger before 0004 keep their positions; those written after it are
    numbered by rounds, after them; a downgrade numbers what is still waiting before the trigger returns."""
    async with database_url_for("postgresql", tmp_path) as url:
        database = Database(url, pool_size=2)
        log = _Log(url, database)
        conn = await log.connect()
        try:
            await database.run_write(_migrate("0003"))
            async with conn.transaction():
                await log.insert(conn, "before-0004")  # numbered at its commit by 0001's trigger
            assert await log.positions() == {"before-0004": 1}

            await database.migrate()
            async with conn.transaction():
                await log.insert(conn, "numbered-by-a-round")
            assert await _postgresql(database).number_round() == 1
            async with conn.transaction():
                await log.insert(conn, "waiting-at-the-downgrade")

            await database.run_write(_migrate("0003", down=True))
            async with conn.transaction():
                await log.insert(conn, "after-the-downgrade")  # the trigger is back
            assert await log.positions() == {
                "before-0004": 1,
                "numbered-by-a-round": 2,
                "waiting-at-the-downgrade": 3,
                "after-the-downgrade": 4,
            }
        finally:
            await conn.close()
            await database.close()


async def test_a_commit_while_the_dispatcher_reads_is_dispatched_at_once_not_at_the_next_poll(
    log: _Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that commits while the dispatcher's round and read are in flight may be in neither: the dispatcher
    reads again at once (here the poll is a minute away)."""
    admin = Actor(user_id="admin", data_owner_id=None, is_admin=True)
    repository = EntityRepository(log.database)
    dispatcher = Dispatcher(log.database, poll_interval=60.0)
    read_done, release = asyncio.Event(), asyncio.Event()
    backend = _postgresql(log.database)
    real = backend.tail_and_page

    async def held_after_reading(*args: object, **kwargs: object) -> object:
        result = await real(*args, **kwargs)  # type: ignore[arg-type]
        if not release.is_set():
            read_done.set()
            await release.wait()
        return result

    await dispatcher.start()
    try:
        sink = _Sink()
        subscription = Subscription("s", "MedicalDevice", frozenset({EventType.CREATE}), None, admin, sink, cursor=0)
        assert not await dispatcher.register(subscription, None, None)
        await asyncio.sleep(0.1)  # the start-up read is done
        monkeypatch.setattr(backend, "tail_and_page", held_after_reading)
        await repository.create_or_modify(KIND_BY_NAME["MedicalDevice"], [MedicalDevice(name="first")], admin)
        await asyncio.wait_for(read_done.wait(), 5)  # the read for the first write is done, not yet returned
        await repository.create_or_modify(KIND_BY_NAME["MedicalDevice"], [MedicalDevice(name="second")], admin)
        release.set()

        async with asyncio.timeout(5):
            while sum(b'"type":"event"' in frame for frame in sink.frames) < 2:
                sink.arrived.clear()
                await sink.arrived.wait()
    finally:
        await dispatcher.stop()
