"""The SQLite backend (`medstream.store.backend.Backend`): the embedded default.

SQLite runs on the standard library's `sqlite3` in threads, one thread hop per transaction (an asyncio driver
costs a hop per statement, cursor and fetch, which dominated a write's CPU). Writes go to one writer thread,
which commits the writes that queued up while it was busy together (group commit, `group_commit`): each in its
own SAVEPOINT, so one failing write leaves the others whole, and all of them under one COMMIT and one fsync.
Writers start with BEGIN IMMEDIATE; reads run in a small pool of reader threads.

SQLite serialises writers, so an event's position comes from the tail counter, advanced inside the write's
transaction, and the transaction publishes its events, positions and all, to the commit listeners (the
dispatcher then need not read them back). Rows are never locked: the writers take turns already. The few
statements every write and every dispatch runs go straight through the driver (`driver`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, Table
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url

from medstream.events.types import EntityEvent
from medstream.store import outbox
from medstream.store.backend import PoolUse, RunWork, attach, queue_pool_use
from medstream.store.connection_errors import translate
from medstream.store.entity_rows import EntityRow, rows_in_chunks
from medstream.store.sqlite.driver import insert_rows, sqlite_execute
from medstream.store.sqlite.group_commit import SQLiteRunner
from medstream.store.transactions import publish

_ADVANCE = "UPDATE outbox_tail SET last_seq = last_seq + ? WHERE id = 1 RETURNING last_seq"
_AFTER = (
    "SELECT seq, entity_type, entity_id, rev, event_type, document, readers, created FROM outbox"
    " WHERE seq > ? ORDER BY seq LIMIT ?"
)


@functools.cache
def _row_sql(dialect: Dialect, table: Table) -> str:
    """`entity_rows.row_query` as plain SQL for the driver."""
    return f"SELECT id, rev, document, deleted FROM {dialect.identifier_preparer.format_table(table)} WHERE id = ?"


@functools.lru_cache(maxsize=64)
def _patient_access_sql(count: int) -> str:
    """`Backend.patient_access` as plain SQL for the driver, for `count` ids."""
    where = "id = ?" if count == 1 else f"id IN ({', '.join('?' * count)})"
    return (
        "SELECT id, deleted, EXISTS (SELECT 1 FROM entity_readers WHERE entity_type = 'Patient'"
        f" AND data_owner_id = ? AND entity_id = patients.id) FROM patients WHERE {where}"
    )


class SQLiteBackend:
    """SQLite's transactions, positions and statements."""

    name = "sqlite"
    dispatcher_poll_seconds = 0.05

    def __init__(self, url: str, committed: Callable[[Sequence[Any]], None]) -> None:
        self.url = url
        self.runner = SQLiteRunner(url, translate, committed)
        attach(self.runner.engine, self)
        # The runner's own methods: no call in between on the way of every transaction.
        self.run_write: RunWork = self.runner.write  # the writer thread calls the listeners (and merges)
        self.run_read: RunWork = self.runner.read

    @property
    def merged_writes(self) -> int:
        return self.runner.merged

    def listen(self, wake: Callable[[], None]) -> None:
        """Nothing to listen to: this process's commits reach its dispatcher directly, and another process's
        (`medstream user add`) are found by the dispatcher's poll."""

    @property
    def sync_engine(self) -> Engine:
        return self.runner.engine

    @property
    def commit_groups(self) -> int:
        """How many group commits the writer thread has made (each one COMMIT for one or more writes)."""
        return self.runner.groups

    @property
    def checkpoints(self) -> int:
        """How many background checkpoints have run."""
        return self.runner.checkpoints

    @property
    def log_restarts(self) -> int:
        """How often the checkpointer has found the write-ahead log restarted from its beginning."""
        return self.runner.log_restarts

    def pools(self) -> list[PoolUse]:
        """The engine's pool: the writer thread's connection and the reader threads'."""
        return [queue_pool_use("sqlite", self.runner.engine, self.runner.max_connections)]

    async def migrate(self) -> None:
        path = make_url(self.url).database
        assert path is not None
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self.runner.migrate)

    async def close(self) -> None:
        await self.runner.close()

    # -- the outbox --

    def event_rows(self, conn: Connection, events: Sequence[outbox.PendingEvent]) -> list[dict[str, Any]]:
        """The rows, their positions taken from the tail counter; the events are published for the commit."""
        if not events:
            return []
        rows = [outbox.event_row(e) for e in events]
        (last,) = sqlite_execute(conn, _ADVANCE, (len(rows),)).fetchone()
        first = last - len(rows) + 1
        for offset, row in enumerate(rows):
            row["seq"] = first + offset
        publish(conn, [outbox.written(first + offset, e) for offset, e in enumerate(events)])
        return rows

    async def number_committed(self) -> None:
        """Nothing to do: positions are taken at insert."""

    async def tail_and_page(self, after_seq: int, limit: int) -> tuple[outbox.LogHead, list[EntityEvent], bool]:
        """One read transaction, one thread hop."""
        head, events = await self.runner.read(partial(outbox.tail_and_page, after_seq=after_seq, limit=limit))
        return head, events, False

    def head(self, conn: Connection) -> outbox.LogHead:
        last_seq, epoch, floor_seq = sqlite_execute(conn, outbox.HEAD_SQL).fetchone()
        return outbox.LogHead(last_seq=last_seq, epoch=epoch, floor_seq=floor_seq)

    def read_after(self, conn: Connection, after_seq: int, limit: int) -> list[EntityEvent]:
        return [outbox.log_event(*row) for row in sqlite_execute(conn, _AFTER, (after_seq, limit))]

    # -- statements of entity writes --

    def insert_tables(self, conn: Connection, inserts: Sequence[tuple[Table, Sequence[dict[str, Any]]]]) -> None:
        """`insert_rows` table by table, in order."""
        for table, rows in inserts:
            if rows:
                insert_rows(conn, table, rows)

    def rows_by_id(self, conn: Connection, table: Table, ids: Sequence[str], *, lock: bool) -> dict[str, EntityRow]:
        """No lock is needed: the writers are serialised."""
        if len(ids) == 1:  # the common case, and a plain equality is cheaper to run than an IN
            found = sqlite_execute(conn, _row_sql(conn.dialect, table), (ids[0],))
            return {row[0]: EntityRow(*row) for row in found}
        return rows_in_chunks(conn, table, ids, lock=False)

    def patient_access(self, conn: Connection, ids: list[str], owner: str | None) -> Sequence[Sequence[Any]]:
        rows: list[Any] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows.extend(sqlite_execute(conn, _patient_access_sql(len(chunk)), (owner, *chunk)))
        return rows

    def hold_off_patient_links(self, conn: Connection) -> None:
        """Nothing to do: the writers are serialised."""

    def take_turns(self, conn: Connection, key: int) -> None:
        """Nothing to do: the writers are serialised."""

    def upsert(self, table: Table) -> Any:
        return sqlite_insert(table)
