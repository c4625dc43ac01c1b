"""The database connection: one URL picks SQLite (embedded default) or PostgreSQL; migrations run on open.

The two dialects differ only here and in the outbox's position assignment: SQLite write transactions start
with BEGIN IMMEDIATE (so a read-then-write transaction never fails to upgrade its lock), PostgreSQL writers
run in READ COMMITTED with bounded lock and idle-in-transaction waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from medstream.errors import UnavailableError

DEFAULT_DATABASE_URL = "sqlite:///./medstream.db"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_LOCK_KEY = 0x6D656473  # "meds": serialises nodes migrating one PostgreSQL at the same time


def async_url(url: str) -> str:
    """Accept plain `sqlite:///...` and `postgresql://...` URLs and name the async driver for them."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if backend in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database {url!r}: use sqlite:///path or postgresql://user@host/db")


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=10000"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("medstream_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """An async engine plus the hooks the rest of the store needs: write transactions and commit wake-ups."""

    def __init__(self, url: str = DEFAULT_DATABASE_URL, *, pool_size: int = 10) -> None:
        self.url = async_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = create_async_engine(self.url)
            _configure_sqlite(self.engine)
        else:
            self.engine = create_async_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                isolation_level="READ COMMITTED",
                connect_args={
                    "server_settings": {
                        "idle_in_transaction_session_timeout": "60000",
                        "lock_timeout": "30000",
                        "application_name": "medstream",
                    }
                },
            )
        self._commit_listeners: list[Callable[[], None]] = []
        # SQLite admits one writer at a time. This process's writers queue here, woken in turn as each commits,
        # rather than in SQLite's busy handler, which sleeps between retries (1, 2, 5 ... 100 ms) and so turns
        # concurrent writes into tens of milliseconds of idle waiting. Other processes still meet the handler.
        self._sqlite_writer = asyncio.Lock() if self.is_sqlite else None

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every committed write transaction (the dispatcher's in-process wake-up)."""
        self._commit_listeners.append(listener)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction; committed when the block ends without error, then listeners are woken."""
        if self._sqlite_writer is None:
            async with self._write() as conn:
                yield conn
        else:
            async with self._sqlite_writer, self._write() as conn:
                yield conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.connect() as conn:
                await conn.execution_options(medstream_write=True)
                async with conn.begin():
                    yield conn
        except (OperationalError, DBAPIError) as exc:
            if _is_connection_error(exc):
                raise UnavailableError(f"database unavailable: {exc.orig}") from exc
            raise
        except (OSError, TimeoutError) as exc:  # the server cannot be reached at all (asyncpg raises these as is)
            raise UnavailableError(f"database unavailable: {exc!r}") from exc
        for listener in self._commit_listeners:
            listener()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction over one consistent snapshot."""
        try:
            async with self.engine.connect() as conn, conn.begin():
                yield conn
        except (OperationalError, DBAPIError) as exc:
            if _is_connection_error(exc):
                raise UnavailableError(f"database unavailable: {exc.orig}") from exc
            raise
        except (OSError, TimeoutError) as exc:
            raise UnavailableError(f"database unavailable: {exc!r}") from exc

    async def migrate(self) -> None:
        """Bring the schema to the newest migration; safe when several nodes start at once."""
        if self.is_sqlite and (path := make_url(self.url).database) and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        async with self.engine.begin() as conn:
            if not self.is_sqlite:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            await conn.run_sync(_upgrade_to_head)

    async def ping(self) -> None:
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()


def _upgrade_to_head(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


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
