"""The database connection: one URL picks SQLite (embedded default) or PostgreSQL; migrations run on open.

A transaction is a plain function of a SQLAlchemy `Connection`, handed to `run_write` or `run_read`; the two
dialects differ in how it runs, and only here, in what runs it (sqlite_writer.py, pg_writes.py), in how a write's
rows are inserted (statements.py) and in the outbox's position assignment:

- **SQLite** runs on the standard library's `sqlite3` in threads, one thread hop per transaction. (An
  asyncio driver costs a hop per statement, cursor and fetch, which dominated a write's CPU.) Writes go to one
  writer thread, which commits the writes that queued up while it was busy together (group commit): each in
  its own SAVEPOINT, so one failing write leaves the others whole, and all of them under one COMMIT and one
  fsync. Writers start with BEGIN IMMEDIATE; reads run in a small pool of reader threads.
- **PostgreSQL** runs on asyncpg (`AsyncConnection.run_sync`), writers in READ COMMITTED with bounded lock and
  idle-in-transaction waits; concurrent writers each have their own pooled connection.

A write transaction may `publish` what it wrote (the outbox publishes its events once they have positions):
the `on_commit` listeners receive it once the transaction has committed, and never if it rolled back.

A write that is a `MergeableWrite` may run together with others of its kind that are waiting at the same
time, as one set of statements: consecutive ones in a SQLite group, or those queued while PostgreSQL's
transactions for them are busy, in one transaction. Under load, K such writes then cost one patient check and
one INSERT per table instead of K of each, so the cost per write falls as the queue grows instead of the
queue growing without end. Merged writes succeed or fail together; when they fail together, each runs again
alone, so that only the failing one fails, with its own error.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from medstream.errors import UnavailableError
from medstream.store.pg_writes import Autocommit, Merger, run_statement
from medstream.store.sqlite_writer import SQLiteRunner
from medstream.store.statements import with_published
from medstream.store.upgrade import upgrade_to_head
from medstream.store.writes import MergeableWrite, Work, merge_key

DEFAULT_DATABASE_URL = "sqlite:///./medstream.db"
_MIGRATION_LOCK_KEY = 0x6D656473  # "meds": serialises nodes migrating one PostgreSQL at the same time

log = logging.getLogger("medstream.store")

T = TypeVar("T")


def engine_url(url: str) -> str:
    """Accept plain `sqlite:///...` and `postgresql://...` URLs and name the driver Medstream uses for them."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ValueError("SQLite needs a database file (sqlite:///path/to/file.db), not an in-memory database")
        return parsed.set(drivername="sqlite+pysqlite").render_as_string(hide_password=False)
    if backend in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database {url!r}: use sqlite:///path or postgresql://user@host/db")


class _DeadConnection(Exception):
    """The transaction's pooled connection turned out dead before it committed: run it again."""


class Database:
    """The store's connection: runs transactions, and tells listeners after every committed write."""

    def __init__(self, url: str = DEFAULT_DATABASE_URL, *, pool_size: int = 10) -> None:
        self.url = engine_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self._commit_listeners: list[Callable[[Sequence[Any]], None]] = []
        self._sqlite: SQLiteRunner | None = None
        self._engine: AsyncEngine | None = None
        self._autocommit: Autocommit | None = None
        self._merger = Merger(self._pg_write_one, self._pg_write_merged)
        if self.is_sqlite:
            self._sqlite = SQLiteRunner(self.url, self._translate_sqlite, self._committed)
        else:
            server_settings = {
                "idle_in_transaction_session_timeout": "60000",
                "lock_timeout": "30000",
                "application_name": "medstream",
            }
            self._engine = create_async_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size,
                # No ping before each checkout (asyncpg's costs three round trips: BEGIN, a query, ROLLBACK):
                # a connection found dead is replaced and the transaction run again (_pg_run).
                pool_pre_ping=False,
                isolation_level="READ COMMITTED",
                connect_args={"server_settings": server_settings},
            )
            dsn = make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)
            self._autocommit = Autocommit(dsn, size=pool_size, server_settings=server_settings)

    @property
    def engine(self) -> AsyncEngine:
        """The PostgreSQL engine (asyncpg)."""
        if self._engine is None:
            raise RuntimeError("a SQLite database has no async engine: run transactions with run_read/run_write")
        return self._engine

    @property
    def autocommit(self) -> Autocommit:
        """PostgreSQL: this node's connections for statements in autocommit, through the driver itself."""
        if self._autocommit is None:
            raise RuntimeError("a SQLite database has no autocommit connections")
        return self._autocommit

    @property
    def commit_groups(self) -> int:
        """SQLite: how many group commits the writer thread has made (each one COMMIT for one or more writes)."""
        return self._sqlite.groups if self._sqlite is not None else 0

    @property
    def checkpoints(self) -> int:
        """SQLite: how many background checkpoints have run."""
        return self._sqlite.checkpoints if self._sqlite is not None else 0

    @property
    def log_restarts(self) -> int:
        """SQLite: how often the checkpointer has found the write-ahead log restarted from its beginning."""
        return self._sqlite.log_restarts if self._sqlite is not None else 0

    @property
    def sync_engine(self) -> Engine:
        """The engine underneath: pysqlite for SQLite, asyncpg's synchronous facade for PostgreSQL."""
        return self._sqlite.engine if self._sqlite is not None else self.engine.sync_engine

    def on_commit(self, listener: Callable[[Sequence[Any]], None]) -> None:
        """Call `listener` (in the event loop) after every committed write transaction, with what it published
        (`publish`), before its `run_write` returns."""
        self._commit_listeners.append(listener)

    def _committed(self, published: Sequence[Any]) -> None:
        for listener in self._commit_listeners:
            listener(published)

    async def run_write(self, work: Work[T]) -> T:
        """Run `work` in a write transaction and return its result once the transaction has committed. An
        exception from `work` rolls its changes back and is raised here."""
        if self._sqlite is not None:
            return await self._sqlite.write(work)  # the writer thread calls the listeners (and merges)
        key = merge_key(work)
        if key is not None:
            assert isinstance(work, MergeableWrite)
            return await self._merger.write(key, work)
        return await self._pg_write(work)

    @property
    def merged_writes(self) -> int:
        """How many writes have committed merged with others (a SQLite group's run, a PostgreSQL transaction)."""
        return self._sqlite.merged if self._sqlite is not None else self._merger.merged

    async def _pg_write(self, work: Work[T]) -> T:
        result, published = await self._pg_run(work, write=True)
        self._committed(published)
        return result

    async def _pg_write_one(self, work: MergeableWrite[T]) -> T:
        statement = type(work).pg_statement([work], self.engine.dialect)
        if statement is None:
            return await self._pg_write(work)
        (result,) = await run_statement(self.autocommit, statement)
        self._committed(())  # its events are in the log only: the dispatcher reads them there
        return result

    async def _pg_write_merged(self, works: list[MergeableWrite[T]]) -> list[T]:
        kind = type(works[0])
        statement = kind.pg_statement(works, self.engine.dialect)
        if statement is None:
            return await self._pg_write(functools.partial(kind.run_merged, writes=works))
        results = await run_statement(self.autocommit, statement)
        self._committed(())
        return results

    async def run_read(self, work: Work[T]) -> T:
        """Run `work` in a read-only transaction over one consistent snapshot."""
        if self._sqlite is not None:
            return await self._sqlite.read(work)
        result, _published = await self._pg_run(work, write=False)
        return result

    async def _pg_run(self, work: Work[T], *, write: bool) -> tuple[T, list[Any]]:
        """Run `work` in a transaction on a pooled connection. A connection found dead before the transaction
        committed (PostgreSQL restarted, a proxy dropped it) is thrown away, and `work` runs once more on a
        fresh one: nothing of the first run can have committed. A failure at COMMIT is never run again."""
        for attempt in (1, 2):
            try:
                async with self._pg_transaction(write=write) as conn:
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
    async def _pg_transaction(self, *, write: bool) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.connect() as conn:
                if write:
                    await conn.execution_options(medstream_write=True)
                async with conn.begin():
                    yield conn
        except (OperationalError, DBAPIError) as exc:
            if _is_connection_error(exc):
                raise UnavailableError(f"database unavailable: {exc.orig}") from exc
            raise
        except (OSError, TimeoutError) as exc:  # the server cannot be reached at all (asyncpg raises these as is)
            raise UnavailableError(f"database unavailable: {exc!r}") from exc

    @staticmethod
    def _translate_sqlite(exc: BaseException) -> BaseException:
        if isinstance(exc, OperationalError | DBAPIError) and _is_connection_error(exc):
            unavailable = UnavailableError(f"database unavailable: {exc.orig}")
            unavailable.__cause__ = exc
            return unavailable
        return exc

    async def migrate(self) -> None:
        """Bring the schema to the newest migration; safe when several nodes start at once."""
        if self._sqlite is not None:
            path = make_url(self.url).database
            assert path is not None
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(self._sqlite.migrate)
            return
        async with self.engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            await conn.run_sync(upgrade_to_head)

    async def ping(self) -> None:
        await self.run_read(lambda conn: conn.execute(text("SELECT 1")).scalar_one())

    async def close(self) -> None:
        if self._sqlite is not None:
            await self._sqlite.close()
        if self._autocommit is not None:
            await self._autocommit.close()
        if self._engine is not None:
            await self._engine.dispose()


# PostgreSQL SQLSTATEs that mean "no usable database here": connection exceptions (08), operator intervention
# such as a shutdown or a dropped database (57P), no such database (3D000), too many connections (53300) and
# refused authorization (28). asyncpg reports them as plain DBAPIErrors, not OperationalErrors.
_UNAVAILABLE_SQLSTATES = ("08", "57P", "3D000", "53300", "28")


def _is_connection_error(exc: DBAPIError) -> bool:
    sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
    return (
        bool(exc.connection_invalidated)
        or sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
        or (isinstance(exc, OperationalError) and not _is_lock_error(exc))
    )


def _is_lock_error(exc: DBAPIError) -> bool:
    message = str(exc.orig).lower()
    return "locked" in message or "lock timeout" in message
