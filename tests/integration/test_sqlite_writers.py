"""SQLite admits one writer at a time: the writers of one process take turns in the process, not in SQLite's
busy handler (which sleeps between retries, turning concurrent writes into idle waiting)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event, select

from medstream.store.database import Database
from medstream.store.schema import outbox_tail


async def test_concurrent_writers_of_one_process_never_meet_the_busy_handler(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'writers.db'}")
    await database.migrate()

    @event.listens_for(database.engine.sync_engine, "connect")
    def _no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
        # Without waiting in the busy handler, a second writer that reached SQLite while the first holds the
        # write lock would fail at once with "database is locked".
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=0")
        cursor.close()

    await database.engine.dispose()  # connections made from now on have no busy wait
    first_inside = asyncio.Event()
    release_first = asyncio.Event()
    order: list[str] = []

    async def writer(name: str) -> None:
        async with database.write() as conn:
            order.append(f"{name} begins")
            await conn.execute(select(outbox_tail.c.last_seq))
            if name == "first":
                first_inside.set()
                await release_first.wait()
            order.append(f"{name} commits")

    try:
        first = asyncio.create_task(writer("first"))
        await first_inside.wait()
        others = [asyncio.create_task(writer(f"writer {i}")) for i in range(5)]
        await asyncio.sleep(0.1)  # give the others every chance to reach SQLite while the first holds the lock
        assert order == ["first begins"]
        release_first.set()
        await asyncio.gather(first, *others)
    finally:
        await database.close()

    assert order[:2] == ["first begins", "first commits"]
    assert len(order) == 12
    for i in range(0, 12, 2):
        assert order[i].replace("begins", "") == order[i + 1].replace("commits", "")
