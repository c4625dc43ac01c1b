"""The database connection: one URL picks SQLite (embedded default) or PostgreSQL; migrations run on open.

A transaction is a plain function of a SQLAlchemy `Connection`, handed to `run_write` or `run_read`; the two
dialects differ in how it runs, and only here (and in the outbox's position assignment):

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
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Dialect, Engine, Table, create_engine, event, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from medstream.errors import UnavailableError
from medstream.store.pg_writes import Autocommit, Merger, run_statement
from medstream.store.writes import MergeableWrite, Work, merge_key

DEFAULT_DATABASE_URL = "sqlite:///./medstream.db"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_LOCK_KEY = 0x6D656473  # "meds": serialises nodes migrating one PostgreSQL at the same time
_SQLITE_READERS = 4
_CHECKPOINT_SECONDS = 0.5  # how often the checkpointer looks for new writes
_WAL_RESTART_FRAMES = 4096  # a log this long (16 MiB of 4 KiB pages) is restarted from its beginning
_SQLITE_ROWS_PER_INSERT = 500
_SQLITE_MAX_VARIABLES = 32766  # SQLite's default bound on a statement's parameters since 3.32
_GROUP_LIMIT = 64  # writes committed together at most: bounds how long the first of them waits for the others

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


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        # wal_autocheckpoint=0: the committing writer no longer copies the log back into the database itself
        # (a stall of several ms every few hundred writes); _SQLiteRunner's checkpointer thread does it.
        pragmas = (
            "journal_mode=WAL",
            "synchronous=FULL",
            "foreign_keys=ON",
            "busy_timeout=10000",
            "wal_autocheckpoint=0",
            "journal_size_limit=67108864",  # a log reset after a checkpoint leaves at most 64 MiB of file
            # A group's savepoints need a statement journal: in a temporary file, that was an open, unlink and
            # close in the writer thread for every group. It only ever holds what a savepoint may roll back.
            "temp_store=MEMORY",
        )
        for pragma in pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("medstream_write", False)
        # Through the driver: SQLAlchemy's execution machinery cost more than the BEGIN.
        _driver_execute(conn, "BEGIN IMMEDIATE" if immediate else "BEGIN")

    @event.listens_for(engine, "before_cursor_execute")
    def _inside_the_transaction(conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        # SQLite rolls a whole transaction back by itself on some errors (a full disk, an I/O error). A statement
        # run after that would commit on its own, outside the transaction its code believes it is in: refuse it.
        if conn.in_transaction() and not statement.startswith("BEGIN"):
            raw = conn.connection.dbapi_connection
            if raw is not None and not raw.in_transaction:
                raise _abandoned()


class _DeadConnection(Exception):
    """The transaction's pooled connection turned out dead before it committed: run it again."""


def _abandoned() -> OperationalError:
    return OperationalError("", {}, RuntimeError("SQLite abandoned the transaction"))


def _refuse_if_abandoned(conn: Connection) -> None:
    """Raise if SQLite has rolled back the transaction under `conn` by itself (see `_inside_the_transaction`):
    nothing more may run in it, and it must not be committed."""
    raw = conn.connection.dbapi_connection
    assert isinstance(raw, sqlite3.Connection)
    if not raw.in_transaction:
        raise _abandoned()


class Database:
    """The store's connection: runs transactions, and tells listeners after every committed write."""

    def __init__(self, url: str = DEFAULT_DATABASE_URL, *, pool_size: int = 10) -> None:
        self.url = engine_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self._commit_listeners: list[Callable[[Sequence[Any]], None]] = []
        self._sqlite: _SQLiteRunner | None = None
        self._engine: AsyncEngine | None = None
        self._autocommit: Autocommit | None = None
        self._merger = Merger(self._pg_write_one, self._pg_write_merged)
        if self.is_sqlite:
            self._sqlite = _SQLiteRunner(self.url, self._translate_sqlite, self._committed)
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
                        return await conn.run_sync(_with_published, work)
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
            await conn.run_sync(_upgrade_to_head)

    async def ping(self) -> None:
        await self.run_read(lambda conn: conn.execute(text("SELECT 1")).scalar_one())

    async def close(self) -> None:
        if self._sqlite is not None:
            await self._sqlite.close()
        if self._autocommit is not None:
            await self._autocommit.close()
        if self._engine is not None:
            await self._engine.dispose()


def _upgrade_to_head(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def sqlite_execute(conn: Connection, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
    """Run `sql` (with `?` parameters) on the SQLite connection under `conn`, inside its transaction, and
    return the driver's cursor. For the few statements every write and every dispatch runs: SQLAlchemy's
    execution machinery cost ten times SQLite's own work for them. Errors are SQLAlchemy's, as from
    `conn.execute`, and a transaction SQLite has abandoned is refused as in `_inside_the_transaction`."""
    _refuse_if_abandoned(conn)
    return _driver_execute(conn, sql, parameters)


def _driver_execute(conn: Connection, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
    """Run `sql` on the SQLite connection under `conn`, with SQLAlchemy's errors, as `conn.execute` raises them."""
    raw = conn.connection.dbapi_connection
    assert isinstance(raw, sqlite3.Connection)
    try:
        return raw.execute(sql, parameters)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, parameters, exc, sqlite3.Error) from exc


_PUBLISHED = "medstream_published"


def publish(conn: Connection, items: Sequence[Any]) -> None:
    """Hand `items` to the `on_commit` listeners once the write transaction running on `conn` commits; they
    are dropped if it rolls back (or, in a group commit, if this write's savepoint does)."""
    conn.info.setdefault(_PUBLISHED, []).extend(items)


def _take_published(conn: Connection) -> list[Any]:
    published: list[Any] = conn.info.pop(_PUBLISHED, None) or []
    return published


def _with_published(conn: Connection, work: Work[T]) -> tuple[T, list[Any]]:
    """Run `work`, and take what it published; nothing it published outlives it on the pooled connection."""
    try:
        return work(conn), _take_published(conn)
    finally:
        if not conn.invalidated:  # an invalidated connection leaves the pool, and what it held with it
            conn.info.pop(_PUBLISHED, None)


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT `rows` into `table`. On SQLite, rows with the same keys go to the driver as multi-row VALUES
    statements of plain parameters: SQLAlchemy's parameter processing for each row cost more than SQLite's
    insert of it, and one statement for many rows releases and retakes the GIL once, not once per row."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.execute(insert(table), rows)
        return
    by_keys: dict[tuple[str, ...], list[Any]] = {}
    for row in rows:
        by_keys.setdefault(tuple(row), []).extend(row.values())
    for keys, values in by_keys.items():
        width = len(keys)
        per_statement = max(1, min(_SQLITE_ROWS_PER_INSERT, _SQLITE_MAX_VARIABLES // width)) * width
        for start in range(0, len(values), per_statement):
            chunk = values[start : start + per_statement]
            sqlite_execute(conn, _sqlite_insert(conn.dialect, table, keys, len(chunk) // width), chunk)


def insert_tables(conn: Connection, inserts: Sequence[tuple[Table, Sequence[dict[str, Any]]]]) -> None:
    """INSERT each table's rows. On PostgreSQL in one statement: a data-modifying WITH clause per table, each
    table's rows sent as one array per column and unnested, so that a write's entity rows, terms, readers and
    events cost one round trip and one pass through SQLAlchemy instead of four (each pass cost ~0.25 ms of
    the server's CPU); a table whose rows do not all have the same keys goes first, through `insert_rows`.
    On SQLite, `insert_rows` table by table, in order."""
    inserts = [(table, rows) for table, rows in inserts if rows]
    if conn.dialect.name != "postgresql":
        for table, rows in inserts:
            insert_rows(conn, table, rows)
        return
    shapes: list[tuple[Table, tuple[str, ...]]] = []
    parameters: list[list[Any]] = []
    for table, rows in inserts:
        keys = tuple(rows[0])
        if any(tuple(row) != keys for row in rows):
            insert_rows(conn, table, rows)
            continue
        shapes.append((table, keys))
        parameters.extend([row[key] for row in rows] for key in keys)
    if shapes:
        conn.exec_driver_sql(unnest_insert(conn.dialect, tuple(shapes)), tuple(parameters))


@functools.lru_cache(maxsize=256)
def unnest_insert(dialect: Dialect, shapes: tuple[tuple[Table, tuple[str, ...]], ...]) -> str:
    """PostgreSQL: every (table, keys) of `shapes` inserted in one statement (see `insert_tables`)."""
    *first, last = unnest_inserts(dialect, shapes)
    if not first:
        return last
    return "WITH " + ", ".join(f"w{i} AS ({statement})" for i, statement in enumerate(first)) + " " + last


def unnest_inserts(
    dialect: Dialect, shapes: Sequence[tuple[Table, tuple[str, ...]]], *, first_parameter: int = 1, where: str = ""
) -> list[str]:
    """PostgreSQL: one `INSERT ... SELECT * FROM unnest(...)` per (table, keys), each column's values one array
    parameter, numbered from `first_parameter` on; `where`, if given, is a condition every insert is under."""
    quote = dialect.identifier_preparer.quote
    statements: list[str] = []
    number = first_parameter - 1
    condition = f" WHERE {where}" if where else ""
    for table, keys in shapes:
        arrays = []
        for key in keys:
            number += 1
            arrays.append(f"${number}::{table.c[key].type.compile(dialect=dialect)}[]")
        columns = ", ".join(quote(table.c[key].name) for key in keys)
        statements.append(
            f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({columns}) "
            f"SELECT * FROM unnest({', '.join(arrays)}){condition}"
        )
    return statements


@functools.lru_cache(maxsize=256)
def _sqlite_insert(dialect: Dialect, table: Table, keys: tuple[str, ...], count: int) -> str:
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(quote(table.c[key].name) for key in keys)
    row = "(" + ", ".join("?" * len(keys)) + ")"
    return (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({columns}) VALUES {', '.join([row] * count)}"
    )


# -- SQLite: transactions in threads, writes committed in groups ---------------------------------------------


@dataclass
class _Job:
    work: Work[Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    outcome: tuple[bool, Any] = field(default=(False, None))  # (succeeded, result or exception)
    published: list[Any] = field(default_factory=list)


def _settle(jobs: list[_Job], committed: Callable[[Sequence[Any]], None]) -> None:
    """In the callers' event loop: tell the commit listeners what the group's writes published (first, so that
    their events are on their way before any caller resumes), then answer the callers. One call for the whole
    group: the writes of a merged run publish their events together, through the run's first job, and a call
    with nothing would tell the dispatcher to read the log for events it already has."""
    if any(job.outcome[0] for job in jobs):
        committed([item for job in jobs if job.outcome[0] for item in job.published])
    for job in jobs:
        if job.future.done():  # its caller was cancelled; the write stands or falls with its group regardless
            continue
        succeeded, value = job.outcome
        if succeeded:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)


def _runs(group: list[_Job]) -> list[list[_Job]]:
    """`group` cut into runs of consecutive jobs that may merge (same merge key); others are runs of one."""
    runs: list[list[_Job]] = []
    previous: Hashable | None = None
    for job in group:
        key = merge_key(job.work)
        if key is not None and key == previous:
            runs[-1].append(job)
        else:
            runs.append([job])
        previous = key
    return runs


class _SQLiteRunner:
    """One writer thread with its own connection, and a pool of reader threads."""

    _STOP = object()

    def __init__(
        self,
        url: str,
        translate: Callable[[BaseException], BaseException],
        committed: Callable[[Sequence[Any]], None],
    ) -> None:
        self.engine = create_engine(url, pool_size=_SQLITE_READERS + 1, max_overflow=_SQLITE_READERS)
        _configure_sqlite(self.engine)
        self._translate = translate
        self._committed = committed
        self._readers = ThreadPoolExecutor(_SQLITE_READERS, thread_name_prefix="medstream-sqlite-read")
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.groups = 0  # how many group commits ran
        self.merged = 0  # how many writes committed merged with others
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()
        self.checkpoints = 0
        self.wal_restart_frames = _WAL_RESTART_FRAMES
        self._restart_wanted = False  # set by the checkpointer, acted on by the writer between two groups
        self.log_frames = 0  # the log's length when the checkpointer last looked
        self.log_restarts = 0  # how often it found the log shorter than the time before: it had restarted

    # -- reads --

    async def read(self, work: Work[T]) -> T:
        if self._closed:
            raise UnavailableError("the database is closed")
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._read, work)

    def _read(self, work: Work[T]) -> T:
        try:
            with self.engine.connect() as conn, conn.begin():
                return work(conn)
        except Exception as exc:
            translated = self._translate(exc)
            if translated is exc:
                raise
            raise translated from exc

    # -- writes --

    async def write(self, work: Work[T]) -> T:
        if self._closed:
            raise UnavailableError("the database is closed")
        loop = asyncio.get_running_loop()
        job = _Job(work, loop, loop.create_future())
        self._ensure_writer()
        self._queue.put(job)
        result: T = await job.future
        return result

    def _ensure_writer(self) -> None:
        if self._writer is not None:  # every write comes here: no lock once the threads are up
            return
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="medstream-sqlite-writer", daemon=True)
                self._writer.start()
                self._checkpointer = threading.Thread(
                    target=self._checkpoint_loop, name="medstream-sqlite-checkpoint", daemon=True
                )
                self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        """Copy the write-ahead log back into the database file, beside the writer rather than in its commits.
        PASSIVE: it never waits for readers or the writer, and the writer never waits for it.

        The log starts over from its beginning only when a write begins after a checkpoint that copied all of
        it. Under a steady stream of writes that never happens here: new commits always land while this thread
        copies. So once the log is long, the writer is asked to checkpoint once itself between two groups,
        when nothing can be appended meanwhile: little is left to copy by then, and its next write restarts
        the log. Without that the log grew without end (by ~80 MB a second under batch writes), and every read
        and write slowed down with it."""
        done = -1
        while not self._stop_checkpoints.wait(_CHECKPOINT_SECONDS):
            if self.groups == done:
                continue
            done = self.groups
            try:
                with self.engine.connect() as conn:
                    _busy, frames, _copied = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
                self.checkpoints += 1
                if 0 <= frames < self.log_frames:
                    self.log_restarts += 1
                self.log_frames = frames
                if frames >= self.wal_restart_frames:
                    self._restart_wanted = True
            except Exception as exc:  # a busy or failing database: the next round tries again
                log.warning("SQLite checkpoint failed: %s", exc)

    def _checkpoint_between_groups(self, conn: Connection) -> None:
        """The writer's own checkpoint (see _checkpoint_loop), outside any transaction."""
        self._restart_wanted = False
        raw = conn.connection.dbapi_connection
        try:
            if raw is not None and not raw.in_transaction:
                raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except Exception as exc:  # the checkpointer will ask again
            log.warning("SQLite checkpoint failed: %s", exc)

    def _write_loop(self) -> None:
        conn: Connection | None = None
        try:
            while True:
                first = self._queue.get()
                if first is self._STOP:
                    return
                group = [first]
                while len(group) < _GROUP_LIMIT:
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is self._STOP:
                        self._queue.put(job)  # stop after this group
                        break
                    group.append(job)
                if conn is None or conn.invalidated:
                    if conn is not None:
                        conn.close()
                    conn = self._connect(group)
                    if conn is None:
                        continue
                self._commit_group(conn, group)
                self.groups += 1
                by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
                for job in group:
                    by_loop.setdefault(job.loop, []).append(job)
                for loop, jobs in by_loop.items():
                    if not loop.is_closed():
                        loop.call_soon_threadsafe(_settle, jobs, self._committed)
                if self._restart_wanted:  # after the group's callers have their answers
                    self._checkpoint_between_groups(conn)
        finally:
            if conn is not None:
                conn.close()

    def _connect(self, group: list[_Job]) -> Connection | None:
        try:
            return self.engine.connect().execution_options(medstream_write=True)
        except Exception as exc:
            failure = self._translate(exc)
            for job in group:
                job.outcome = (False, failure)
                if not job.loop.is_closed():
                    job.loop.call_soon_threadsafe(_settle, [job], self._committed)
            return None

    def _commit_group(self, conn: Connection, group: list[_Job]) -> None:
        """Run every job of `group` in one transaction, each in a savepoint when there are several, and commit
        once. A job that raises has its savepoint rolled back and gets its exception; if the transaction itself
        fails (BEGIN, COMMIT, or SQLite abandoning it), every job gets that failure and nothing is kept.
        Consecutive mergeable jobs of one merge key run merged, in one savepoint; if that fails, each of them
        runs again alone, in its own. A group that is one such run (the usual group under load) needs no
        savepoint: the transaction is one, and if the run fails it is rolled back and the group runs again, each
        job alone. Every statement spared counts: after each one the writer thread waits for the GIL."""
        runs = _runs(group) if len(group) > 1 else [group]
        if len(runs) == 1 and len(group) > 1 and self._commit_merged(conn, group):
            return
        _take_published(conn)  # nothing left over from a failed group
        try:
            with conn.begin() as transaction:
                if len(group) == 1:
                    (job,) = group
                    job.outcome = (True, job.work(conn))
                    job.published = _take_published(conn)
                else:
                    for run in runs:
                        _refuse_if_abandoned(conn)  # stop, and fail the whole group
                        # A group that is one run is here only because that run failed in `_commit_merged`.
                        if len(run) == 1 or len(runs) == 1 or not self._run_merged(conn, run):
                            for job in run:
                                self._run_alone(conn, job)
                _refuse_if_abandoned(conn)
                transaction.commit()
        except Exception as exc:
            failure = self._translate(exc)
            for job in group:
                succeeded, value = job.outcome
                job.published = []
                if succeeded or value is None:  # committed nothing after all, or never ran
                    job.outcome = (False, failure)

    def _commit_merged(self, conn: Connection, group: list[_Job]) -> bool:
        """Run a group of mergeable jobs as one, in a transaction of its own; False, with nothing kept, if the
        run itself failed (each job is to run alone next). A failure of the transaction (BEGIN, COMMIT, SQLite
        abandoning it) is every job's, as in `_commit_group`."""
        _take_published(conn)
        works: list[MergeableWrite[Any]] = [job.work for job in group]  # type: ignore[misc]
        try:
            with conn.begin() as transaction:
                try:
                    results = type(works[0]).run_merged(conn, works)
                except Exception:  # they cannot all succeed together: each runs alone next
                    transaction.rollback()
                    _take_published(conn)
                    return False
                _refuse_if_abandoned(conn)
                transaction.commit()
        except Exception as exc:
            failure = self._translate(exc)
            for job in group:
                job.outcome, job.published = (False, failure), []
            return True
        self._keep_merged(conn, group, results)
        return True

    def _run_alone(self, conn: Connection, job: _Job) -> None:
        """Run one job of a group in its own savepoint."""
        # Plain SAVEPOINT statements, through the driver: SQLAlchemy's nested transactions, and even its
        # exec_driver_sql, cost more than the write.
        sqlite_execute(conn, "SAVEPOINT medstream_write")
        try:
            result = job.work(conn)
        except Exception as exc:
            sqlite_execute(conn, "ROLLBACK TO medstream_write")
            sqlite_execute(conn, "RELEASE medstream_write")
            _take_published(conn)  # rolled back with the savepoint
            job.outcome = (False, self._translate(exc))
        else:
            sqlite_execute(conn, "RELEASE medstream_write")
            job.outcome = (True, result)
            job.published = _take_published(conn)

    def _run_merged(self, conn: Connection, run: list[_Job]) -> bool:
        """Run mergeable jobs as one, in one savepoint; False (and nothing kept) if they failed together."""
        works: list[MergeableWrite[Any]] = [job.work for job in run]  # type: ignore[misc]
        sqlite_execute(conn, "SAVEPOINT medstream_merged")
        try:
            results = type(works[0]).run_merged(conn, works)
        except Exception:  # they cannot all succeed together: each runs alone next, and gets its own outcome
            sqlite_execute(conn, "ROLLBACK TO medstream_merged")
            sqlite_execute(conn, "RELEASE medstream_merged")
            _take_published(conn)
            return False
        sqlite_execute(conn, "RELEASE medstream_merged")
        self._keep_merged(conn, run, results)
        return True

    def _keep_merged(self, conn: Connection, run: list[_Job], results: list[Any]) -> None:
        """The outcomes of a merged run that succeeded: each job's result, and the run's events, in order, to
        the listeners as one (through its first job)."""
        for job, result in zip(run, results, strict=True):
            job.outcome = (True, result)
        run[0].published = _take_published(conn)
        self.merged += len(run)

    # -- life cycle --

    def migrate(self) -> None:
        with self.engine.begin() as conn:
            _upgrade_to_head(conn)

    async def close(self) -> None:
        self._closed = True
        writer = self._writer
        if writer is not None:
            self._queue.put(self._STOP)
            await asyncio.to_thread(writer.join)
        self._stop_checkpoints.set()
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.join)
        self._readers.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self.engine.dispose)


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
