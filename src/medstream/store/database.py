"""The database connection: one URL picks SQLite (embedded default) or PostgreSQL; migrations run on open.

A transaction is a plain function of a SQLAlchemy `Connection` (`transactions.Work`), handed to `run_write` or
`run_read`. How it runs, and everything else that differs between the two databases, is the backend's
(`medstream.store.backend`): `medstream.store.sqlite` and `medstream.store.postgresql`. `Database` picks one
from the URL; nothing else asks which database it runs on.

A write transaction may `publish` what it wrote (the outbox publishes its events once they have positions):
the `on_commit` listeners receive it once the transaction has committed, and never if it rolled back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from medstream.store.backend import Backend, PoolUse, RunWork
from medstream.store.postgresql.backend import PostgreSQLBackend
from medstream.store.sqlite.backend import SQLiteBackend
from medstream.store.transactions import Work

T = TypeVar("T")
DEFAULT_DATABASE_URL = "sqlite:///./medstream.db"


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


class Database:
    """The store's connection: runs transactions, and tells listeners after every committed write."""

    def __init__(
        self,
        url: str = DEFAULT_DATABASE_URL,
        *,
        pool_size: int = 10,
        notify_interval: float = 0.005,
        listen_check_interval: float = 30.0,
    ) -> None:
        """`notify_interval` and `listen_check_interval` are PostgreSQL's: the shortest time between two notices
        of this node's commits to the others, and how often its listening connection is checked
        (`medstream.store.postgresql.wakeups`)."""
        self.url = engine_url(url)
        self._commit_listeners: list[Callable[[Sequence[Any]], None]] = []
        backend: Backend
        if make_url(self.url).get_backend_name() == "sqlite":
            backend = SQLiteBackend(self.url, self._committed)
        else:
            backend = PostgreSQLBackend(
                self.url,
                self._committed,
                pool_size=pool_size,
                notify_interval=notify_interval,
                listen_check_interval=listen_check_interval,
            )
        self.backend = backend
        # The backend's own: every transaction goes there, with no call in between.
        self.run_write: RunWork = backend.run_write
        """Run `work` in a write transaction and return its result once the transaction has committed (and
        the `on_commit` listeners have been told). An exception from `work` rolls its changes back and is
        raised here."""
        self.run_read: RunWork = backend.run_read
        """Run `work` in a read-only transaction over one consistent snapshot."""
        self.in_flight = {"read": 0, "write": 0}  # transactions under way, once `time_transactions` is on

    def time_transactions(self, observe: Callable[[str, float], None]) -> None:
        """From now on, call `observe(kind, seconds)` when a transaction ends ("read" or "write", its time from
        the call to its end, the wait for a connection or for the writer thread included), and count the
        transactions under way in `in_flight`. Off until called: then no call stands between a caller and the
        backend."""
        self.run_write = self._timed(self.backend.run_write, "write", observe)
        self.run_read = self._timed(self.backend.run_read, "read", observe)

    def _timed(self, run: RunWork, kind: str, observe: Callable[[str, float], None]) -> RunWork:
        in_flight = self.in_flight

        async def timed(work: Work[T]) -> T:
            in_flight[kind] += 1
            started = time.perf_counter()
            try:
                return await run(work)
            finally:
                in_flight[kind] -= 1
                observe(kind, time.perf_counter() - started)

        return timed

    def pools(self) -> list[PoolUse]:
        """The backend's sets of connections as they are now."""
        return self.backend.pools()

    @property
    def merged_writes(self) -> int:
        """How many writes have committed merged with others (a SQLite group's run, a PostgreSQL transaction)."""
        return self.backend.merged_writes

    @property
    def sync_engine(self) -> Engine:
        """The engine underneath: pysqlite for SQLite, asyncpg's synchronous facade for PostgreSQL."""
        return self.backend.sync_engine

    def on_commit(self, listener: Callable[[Sequence[Any]], None]) -> None:
        """Call `listener` (in the event loop) after every committed write transaction, with what it published
        (`transactions.publish`), before its `run_write` returns."""
        self._commit_listeners.append(listener)

    def _committed(self, published: Sequence[Any]) -> None:
        for listener in self._commit_listeners:
            listener(published)

    async def migrate(self) -> None:
        """Bring the schema to the newest migration; safe when several nodes start at once."""
        await self.backend.migrate()

    async def ping(self) -> None:
        await self.run_read(lambda conn: conn.execute(text("SELECT 1")).scalar_one())

    async def close(self) -> None:
        await self.backend.close()
