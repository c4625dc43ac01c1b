"""asyncpg connections of this node's own, for statements in autocommit (creates, the numbering rounds, the
dispatcher's reads of the log), and running a write that is one statement on them.

A create through SQLAlchemy's transaction costs four round trips (BEGIN, the patient check, the inserts,
COMMIT), each one a pass through SQLAlchemy's async adaptation and a wait for the event loop's next turn; as
one statement in autocommit it is one round trip. Under load the event loop's turns grow long, so the number
of them a write waits for is most of its latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from medstream.errors import UnavailableError
from medstream.store.backend import PoolUse
from medstream.store.transactions import Statement

log = logging.getLogger("medstream.store")

T = TypeVar("T")
Failure = Callable[[Exception], BaseException | None]

# SQLSTATEs after which the statement did not run for want of a usable server: class 08 (connection
# exception), 57P (operator intervention: shutdown, terminated backend), 53300 (too many connections).
_UNAVAILABLE_SQLSTATES = ("08", "57P", "53300")


class Autocommit:
    """asyncpg connections of this node's own, for statements in autocommit (creates, the dispatcher's reads of
    the log): taken and given back without SQLAlchemy's pool, whose check-out and check-in cost ~0.1 ms of CPU,
    more than the round trip itself. At most `size` are open; a caller waits for one to come free.

    Not asyncpg's own pool either: even with a reset that does nothing (its default sends a reset query, one
    more round trip per statement), its acquire and release, the release a task of its own, cost twice the
    client CPU per statement (`SELECT 1`: 56-88 us against 31-45 us here) and more wall time.

    A connection the driver already knows is closed (PostgreSQL restarted, a proxy dropped it) is thrown away
    for the next, or a new one, before anything is sent on it. One that fails while a statement runs is thrown
    away too, and the failure is an UnavailableError (a 503) that is never retried: it may have committed."""

    def __init__(self, dsn: str, *, size: int, server_settings: dict[str, str], connect_timeout: float = 10) -> None:
        self._dsn = dsn
        self._server_settings = server_settings
        self._connect_timeout = connect_timeout
        self._size = size
        self._slots = asyncio.Semaphore(size)
        self._idle: list[asyncpg.Connection] = []
        self._in_use = 0
        self._closed = False
        self._query_loggers: list[Callable[[Any], None]] = []

    def use(self, name: str) -> PoolUse:
        """How many connections run a statement now, how many wait idle, and how many may be open at most."""
        return PoolUse(name, self._in_use, len(self._idle), self._size)

    def add_query_logger(self, callback: Callable[[Any], None]) -> None:
        """Call `callback` with each query the connections made from now on run (asyncpg's `LoggedQuery`)."""
        self._query_loggers.append(callback)

    async def fetch(self, sql: str, args: Sequence[Any], failure: Failure | None = None) -> list[Any]:
        """The rows of `sql` run with `args`; `failure` says what a database error of it means (None: as is)."""
        if self._closed:
            raise UnavailableError("the database is closed")
        async with self._slots:
            conn = await self._take()
            try:
                rows: list[Any] = await conn.fetch(sql, *args)
            except (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError) as exc:
                self._discard(conn)
                raise UnavailableError(f"database unavailable: {exc!r}") from exc
            except asyncpg.PostgresError as exc:
                if str(getattr(exc, "sqlstate", "")).startswith(_UNAVAILABLE_SQLSTATES):
                    self._discard(conn)
                    raise UnavailableError(f"database unavailable: {exc}") from exc
                self._give_back(conn)  # the statement failed whole: the connection is as it was
                meaning = failure(exc) if failure is not None else None
                if meaning is not None:
                    raise meaning from exc
                raise
            except BaseException:  # cancelled mid-statement: the connection's state is unknown
                self._discard(conn)
                raise
            self._give_back(conn)
            return rows

    async def _take(self) -> asyncpg.Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                self._in_use += 1
                return conn
            log.info("a PostgreSQL connection was closed; taking another")
        try:
            conn = await asyncpg.connect(
                self._dsn, server_settings=self._server_settings, timeout=self._connect_timeout
            )
        except (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresError) as exc:
            raise UnavailableError(f"database unavailable: {exc!r}") from exc
        for callback in self._query_loggers:
            conn.add_query_logger(callback)
        self._in_use += 1
        return conn

    def _discard(self, conn: asyncpg.Connection) -> None:
        """Throw away a taken connection whose state is unknown."""
        self._in_use -= 1
        conn.terminate()

    def _give_back(self, conn: asyncpg.Connection) -> None:
        self._in_use -= 1
        if self._closed or conn.is_closed():
            conn.terminate()
        else:
            self._idle.append(conn)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)


async def run_statement(connections: Autocommit, statement: Statement[T]) -> T:
    """Run a write that is one statement, and make its result (or raise its error) of the rows it returned."""
    rows = await connections.fetch(statement.sql, statement.args, statement.failure)
    return statement.result(rows)
