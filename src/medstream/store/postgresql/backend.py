"""The PostgreSQL backend (`medstream.store.backend.Backend`): for scale, and for several nodes on one database.

Transactions run on asyncpg through SQLAlchemy's async engine (`AsyncConnection.run_sync`), writers in READ
COMMITTED with bounded lock and idle-in-transaction waits; concurrent writers each have their own pooled
connection, and the rows a write checks then replaces are locked (`entity_locks`). A mergeable write that is
one statement (`transactions.Statement`: creates, `creates`) runs in autocommit on this node's own asyncpg
connections (`connections`), and writes of one kind queued while their slots are busy run as one (`merging`).
Events get their positions after commits, in numbering rounds (`numbering`). A write with events tells the
other nodes after it commits, and the node listens for theirs (`wakeups`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Table, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from medstream.errors import UnavailableError
from medstream.events.types import EntityEvent
from medstream.store import outbox
from medstream.store.backend import PoolUse, RunWork, attach, queue_pool_use
from medstream.store.connection_errors import is_connection_error
from medstream.store.postgresql import entity_locks, inserts, numbering
from medstream.store.postgresql.connections import Autocommit, run_statement
from medstream.store.postgresql.merging import Merger
from medstream.store.postgresql.wakeups import Wakeups
from medstream.store.transactions import MergeableWrite, Work, merge_key, publish, with_published
from medstream.store.upgrade import upgrade_to_head

_MIGRATION_LOCK_KEY = 0x6D656473  # "meds": serialises nodes migrating one PostgreSQL at the same time

log = logging.getLogger("medstream.store")

T = TypeVar("T")


class _DeadConnection(Exception):
    """The transaction's pooled connection turned out dead before it committed: run it again."""


class PostgreSQLBackend:
    """PostgreSQL's transactions, positions and statements."""

    name = "postgresql"
    dispatcher_poll_seconds = 1.0  # the safety net: other nodes' commits wake the dispatcher (`wakeups`)

    def __init__(
        self,
        url: str,
        committed: Callable[[Sequence[Any]], None],
        *,
        pool_size: int,
        notify_interval: float,
        listen_check_interval: float,
    ) -> None:
        self._committed = committed
        self._merger = Merger(self._write_one, self._write_merged)
        server_settings = {
            "idle_in_transaction_session_timeout": "60000",
            "lock_timeout": "30000",
            "application_name": "medstream",
        }
        self._pool_capacity = 2 * pool_size  # pool_size, and as many more under load
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            # No ping before each checkout (asyncpg's costs three round trips: BEGIN, a query, ROLLBACK):
            # a connection found dead is replaced and the transaction run again (_run).
            pool_pre_ping=False,
            isolation_level="READ COMMITTED",
            connect_args={"server_settings": server_settings},
            # A database error, should one be logged, shows no statement parameters (password hashes, keys).
            hide_parameters=True,
        )
        attach(self.engine.sync_engine, self)
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.connections = Autocommit(dsn, size=pool_size, server_settings=server_settings)
        self.wakeups = Wakeups(
            dsn,
            self.connections,
            server_settings=server_settings,
            notify_interval=notify_interval,
            check_interval=listen_check_interval,
        )
        self.run_write: RunWork = self._run_write
        self.run_read: RunWork = self._run_read

    @property
    def merged_writes(self) -> int:
        return self._merger.merged

    @property
    def sync_engine(self) -> Engine:
        return self.engine.sync_engine

    def pools(self) -> list[PoolUse]:
        """SQLAlchemy's pool (transactions) and this node's own connections for statements in autocommit."""
        return [
            queue_pool_use("transactions", self.engine.sync_engine, self._pool_capacity),
            self.connections.use("autocommit"),
        ]

    # -- transactions --

    async def _run_write(self, work: Work[T]) -> T:
        key = merge_key(work)
        if key is not None:
            assert isinstance(work, MergeableWrite)
            return await self._merger.write(key, work)
        return await self._write(work)

    async def _write(self, work: Work[T]) -> T:
        result, published = await self._run(work, write=True)
        if outbox.EVENTS_IN_LOG in published:
            self.wakeups.committed()
        self._committed(published)
        return result

    async def _write_one(self, work: MergeableWrite[T]) -> T:
        statement = type(work).pg_statement([work], self.engine.dialect)
        if statement is None:
            return await self._write(work)
        (result,) = await run_statement(self.connections, statement)
        self.wakeups.committed()
        self._committed((outbox.EVENTS_IN_LOG,))  # the dispatcher reads its events in the log
        return result

    async def _write_merged(self, works: list[MergeableWrite[T]]) -> list[T]:
        kind = type(works[0])
        statement = kind.pg_statement(works, self.engine.dialect)
        if statement is None:
            return await self._write(functools.partial(kind.run_merged, writes=works))
        results = await run_statement(self.connections, statement)
        self.wakeups.committed()
        self._committed((outbox.EVENTS_IN_LOG,))
        return results

    async def _run_read(self, work: Work[T]) -> T:
        result, _published = await self._run(work, write=False)
        return result

    async def _run(self, work: Work[T], *, write: bool) -> tuple[T, list[Any]]:
        """Run `work` in a transaction on a pooled connection. A connection found dead before the transaction
        committed (PostgreSQL restarted, a proxy dropped it) is thrown away, and `work` runs once more on a
        fresh one: nothing of the first run can have committed. A failure at COMMIT is never run again."""
        for attempt in (1, 2):
            try:
                async with self._transaction(write=write) as conn:
                    try:
                        return await conn.run_sync(with_published, work)
                    except DBAPIError as exc:
                        if attempt == 1 and exc.connection_invalidated:
                            raise _DeadConnection from exc
                        raise
            except _DeadConnection:
                log.info("a pooled PostgreSQL connection was dead; running the transaction again on a new one")
        raise AssertionError("unreachable")  # pragma: no cover - the second attempt returns or raises

    @asynccontextmanager
    async def _transaction(self, *, write: bool) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.connect() as conn:
                if write:
                    await conn.execution_options(medstream_write=True)
                async with conn.begin():
                    yield conn
        except (OperationalError, DBAPIError) as exc:
            if is_connection_error(exc):
                raise UnavailableError(f"database unavailable: {exc.orig}") from exc
            raise
        except (OSError, TimeoutError) as exc:  # the server cannot be reached at all (asyncpg raises these as is)
            raise UnavailableError(f"database unavailable: {exc!r}") from exc

    async def migrate(self) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            await conn.run_sync(upgrade_to_head)

    def listen(self, wake: Callable[[], None]) -> None:
        """Call `wake` on other nodes' notices, and after the listening connection (re)connects (`wakeups`)."""
        self.wakeups.start(wake)

    async def close(self) -> None:
        await self.wakeups.close()
        await self.connections.close()
        await self.engine.dispose()

    # -- the outbox --

    def event_rows(self, conn: Connection, events: Sequence[outbox.PendingEvent]) -> list[dict[str, Any]]:
        """The rows, with no positions: numbering rounds give them after the commit, and the other nodes are told
        of it (`wakeups`)."""
        if events:
            publish(conn, (outbox.EVENTS_IN_LOG,))
        return [outbox.event_row(e) for e in events]

    async def number_round(self, limit: int = numbering.NUMBER_ROUND) -> int:
        """One numbering round (`numbering.number_round`); how many events it numbered."""
        return await numbering.number_round(self.connections, limit)

    async def number_committed(self) -> None:
        await numbering.number_committed(self.connections)

    async def tail_and_page(self, after_seq: int, limit: int) -> tuple[outbox.LogHead, list[EntityEvent], bool]:
        """A numbering round first, then the read, in one statement in autocommit through the driver."""
        numbered, head, events = await numbering.number_and_page(self.connections, after_seq, limit)
        return head, events, numbered == numbering.NUMBER_ROUND

    head = staticmethod(numbering.head)
    read_after = staticmethod(numbering.read_after)

    # -- statements of entity writes --

    insert_tables = staticmethod(inserts.insert_tables)
    rows_by_id = staticmethod(entity_locks.rows_by_id)
    patient_access = staticmethod(entity_locks.patient_access)
    hold_off_patient_links = staticmethod(entity_locks.hold_off_patient_links)
    take_turns = staticmethod(entity_locks.take_turns)

    def upsert(self, table: Table) -> Any:
        return postgresql_insert(table)
