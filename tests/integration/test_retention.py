"""Outbox retention: trimmed by age and by size, the floor only goes up, and resuming below it is a gap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import pytest_asyncio
from sqlalchemy import func, select, update
from websockets.asyncio.client import connect

from medstream.access import Actor
from medstream.model import KIND_BY_NAME, MedicalDevice
from medstream.sdk import MedTechApi
from medstream.server.retention import trim_once
from medstream.store import outbox
from medstream.store.database import Database
from medstream.store.repository import EntityRepository
from medstream.store.schema import outbox as outbox_table
from tests.conftest import RunningServer, database_url_for

ADMIN = Actor(user_id="admin", data_owner_id=None, is_admin=True)


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with database_url_for(request.param, tmp_path) as url:
        db = Database(url)
        await db.migrate()
        try:
            yield db
        finally:
            await db.close()


async def _write(database: Database, count: int) -> None:
    repository = EntityRepository(database)
    for _ in range(count):
        await repository.create_or_modify(KIND_BY_NAME["MedicalDevice"], [MedicalDevice(name="pump")], ADMIN)
    await outbox.number_committed(database)  # on PostgreSQL, as the dispatcher's next round would


async def _seqs(database: Database) -> list[int]:
    query = select(outbox_table.c.seq).order_by(outbox_table.c.seq)
    return await database.run_read(lambda conn: list(conn.execute(query).scalars()))


async def test_trim_by_size_keeps_the_newest_events_and_raises_the_floor(database: Database) -> None:
    await _write(database, 20)
    deleted = await outbox.trim(database, created_before=0, keep_last=5)
    assert deleted == 15
    assert await _seqs(database) == [16, 17, 18, 19, 20]
    head = await database.run_read(outbox.head)
    assert (head.last_seq, head.floor_seq) == (20, 16)


async def test_trim_by_age_drops_only_older_events(database: Database) -> None:
    await _write(database, 6)
    # Make the first four look a day old.
    older = update(outbox_table).where(outbox_table.c.seq <= 4).values(created=outbox_table.c.created - 86_400_000)
    await database.run_write(lambda conn: conn.execute(older))
    assert await trim_once(database, max_age_seconds=3600, max_events=1_000) == 4
    assert await _seqs(database) == [5, 6]


async def test_trimming_twice_or_concurrently_is_safe_and_the_floor_never_goes_down(database: Database) -> None:
    await _write(database, 10)
    await asyncio.gather(*(outbox.trim(database, created_before=0, keep_last=4) for _ in range(3)))
    assert await _seqs(database) == [7, 8, 9, 10]
    await outbox.trim(database, created_before=0, keep_last=100)  # a looser bound does not lower the floor
    assert (await database.run_read(outbox.head)).floor_seq == 7
    count = select(func.count()).select_from(outbox_table)
    assert await database.run_read(lambda conn: conn.execute(count).scalar_one()) == 4


async def test_resuming_below_the_floor_gets_a_gap_then_live_events(
    server: RunningServer, admin_api: MedTechApi
) -> None:
    for _ in range(3):
        await admin_api.medical_device_api.create_or_modify_medical_device(MedicalDevice(name="old"))
    database = Database(server.database_url)
    try:
        head = await database.run_read(outbox.head)
        await outbox.trim(database, created_before=0, keep_last=1)
    finally:
        await database.close()
    token = admin_api.transport._token
    async with connect(server.url.replace("http", "ws", 1) + "/ws/v1/events") as socket:
        await socket.send(orjson.dumps({"type": "auth", "token": token}).decode())
        subscribe = {
            "type": "subscribe",
            "id": "s",
            "entity": "MedicalDevice",
            "events": ["CREATE"],
            "after": head.last_seq - 2,
            "epoch": head.epoch,
        }
        await socket.send(orjson.dumps(subscribe).decode())
        subscribed = orjson.loads(await asyncio.wait_for(socket.recv(), 5))
        gap = orjson.loads(await asyncio.wait_for(socket.recv(), 5))
        assert subscribed["type"] == "subscribed"
        assert gap["type"] == "gap" and gap["from"] == head.last_seq - 2 and "retention" in gap["reason"]
        device = await admin_api.medical_device_api.create_or_modify_medical_device(MedicalDevice(name="new"))
        received: list[dict[str, object]] = []
        while not received or received[-1]["entity"]["id"] != device.id:  # type: ignore[index]
            received.append(orjson.loads(await asyncio.wait_for(socket.recv(), 5)))
        # after the gap, only events above its position follow (an untrimmed older one may come first), in order
        seqs = [int(e["seq"]) for e in received]  # type: ignore[call-overload]
        assert all(e["type"] == "event" for e in received)
        assert seqs == sorted(seqs) and seqs[0] > gap["position"]
