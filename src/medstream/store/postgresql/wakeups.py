"""PostgreSQL: nodes wake each other's dispatchers with `LISTEN`/`NOTIFY`, so that an idle node costs the
database one read per safety-net poll instead of a read every few milliseconds.

- **Notices, after the commit.** A write whose events are in the log tells the other nodes once it has
  committed, with a `NOTIFY` of its own (never inside the write's transaction: that would make every writing
  commit take PostgreSQL's notification lock, one writer after the other, and a node woken while the write
  commits could run its numbering round before the write is visible). The notice carries no payload: the
  position is not known yet (`numbering`), and the woken node reads the log anyway. Notices are coalesced: at
  most one is in flight, at most one starts per `notify_interval`, and a commit made while one is in flight or
  waiting is covered by the next, which starts after it. So a burst of commits sends a notice per interval,
  and every commit is followed by a notice sent after it.
- **One listening connection per node.** It `LISTEN`s (asyncpg's `add_listener`) and wakes the dispatcher on
  each notice from another node (its own notices come back to it too, and are ignored: the commit woke the
  dispatcher already). The node's notices go out on that same connection, or on the node's autocommit
  connections while it is down.
- **A lost listener loses no event.** A notice sent while the connection is down is never received, so after
  every (re)connection, once `LISTEN` holds, the dispatcher is woken to read what was committed meanwhile. The
  connection's end is noticed through asyncpg's `add_termination_listener`; one that ends without a word
  (a half-open TCP connection) is found by a `SELECT 1` every `check_interval`. Until the connection is back,
  the dispatcher's slow poll finds other nodes' writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

from medstream.store.postgresql.connections import Autocommit

log = logging.getLogger("medstream.store")

CHANNEL = "medstream_outbox"
APPLICATION_NAME = "medstream-listen"  # the listening connection's, in pg_stat_activity
_NOTIFY = "SELECT pg_notify($1, '')"
_MAX_BACKOFF = 2.0  # seconds between attempts to reconnect, at most


class Wakeups:
    """The node's notices after its commits, and its listening connection (`start`)."""

    def __init__(
        self,
        dsn: str,
        connections: Autocommit,
        *,
        server_settings: dict[str, str],
        notify_interval: float,
        check_interval: float,
        connect_timeout: float = 10.0,
        statement_timeout: float = 10.0,
    ) -> None:
        """`statement_timeout`: a notice or a check not answered by then takes the listening connection for dead."""
        self._dsn = dsn
        self._connections = connections
        self._server_settings = {**server_settings, "application_name": APPLICATION_NAME}
        self._notify_interval = notify_interval
        self._check_interval = check_interval
        self._connect_timeout = connect_timeout
        self._statement_timeout = statement_timeout
        self._conn: asyncpg.Connection | None = None  # the listening connection, while LISTEN holds
        self._conn_busy = asyncio.Lock()  # one statement at a time on it: a notice or a check
        self._pid = 0  # its backend's, to tell the node's own notices from the others'
        self._wake: Callable[[], None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._pending = False  # a commit not covered yet by a notice sent after it
        self._last_sent = float("-inf")
        self._hurry = asyncio.Event()
        self._listened = False  # LISTEN held on the last connection
        self.notices_sent = 0

    # -- notices --

    def committed(self) -> None:
        """A write whose events are in the log has just committed: the other nodes are told, at most one notice
        per interval."""
        self._pending = True
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_pending(), name="medstream-notify")

    async def _send_pending(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            wait = self._last_sent + self._notify_interval - loop.time()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), wait)  # closing sends at once
            self._pending = False  # the notice below starts after every commit that set it
            self._last_sent = loop.time()
            try:
                await self._notify()
                self.notices_sent += 1
            except Exception as exc:  # the other nodes find these writes at their next poll
                log.warning("could not tell the other nodes of a commit: %s", exc)

    async def _notify(self) -> None:
        conn = self._conn
        if conn is not None and not conn.is_closed():
            try:
                async with self._conn_busy:
                    await conn.execute(_NOTIFY, CHANNEL, timeout=self._statement_timeout)
                return
            except (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresError) as exc:
                log.info("the listening connection failed to send a notice (%r); reconnecting", exc)
                conn.terminate()  # its listener reconnects; this notice goes out on another connection
        await self._connections.fetch(_NOTIFY, (CHANNEL,))

    # -- listening --

    def start(self, wake: Callable[[], None]) -> None:
        """Listen from now on: call `wake` on every notice from another node, and after every (re)connection."""
        if self._listener is None:
            self._wake = wake
            self._listener = asyncio.create_task(self._listen_forever(), name="medstream-listen")

    async def _listen_forever(self) -> None:
        failures = 0
        while True:
            self._listened = False
            try:
                await self._listen_once()
            except Exception as exc:
                log.warning("listening for other nodes' commits failed, reconnecting: %r", exc)
            failures = 0 if self._listened else failures + 1
            await asyncio.sleep(min(0.05 * 2**failures, _MAX_BACKOFF))

    async def _listen_once(self) -> None:
        """Connect, LISTEN, wake the dispatcher for what may have been missed, then hold on until the
        connection ends (or a check finds it dead)."""
        conn = await asyncpg.connect(self._dsn, server_settings=self._server_settings, timeout=self._connect_timeout)
        ended = asyncio.Event()
        conn.add_termination_listener(lambda _conn: ended.set())
        try:
            await conn.add_listener(CHANNEL, self._notified)
            self._pid = conn.get_server_pid()
            self._conn = conn
            self._listened = True
            log.info("listening for other nodes' commits (backend %s)", self._pid)
            self._woken()  # catch up: notices sent before LISTEN held were never received here
            while not ended.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ended.wait(), self._check_interval)
                if not ended.is_set():
                    async with self._conn_busy:
                        await conn.fetchval("SELECT 1", timeout=self._statement_timeout)
            log.warning("the connection listening for other nodes' commits was closed; reconnecting")
        finally:
            self._conn = None
            conn.terminate()

    def _notified(self, _conn: Any, pid: int, _channel: str, _payload: str) -> None:
        if pid != self._pid:
            self._woken()

    def _woken(self) -> None:
        if self._wake is not None:
            self._wake()

    async def close(self) -> None:
        """Stop listening; a notice still owed for a commit is sent first (a command-line write tells the
        running nodes), waited for a few seconds at most."""
        self._hurry.set()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._sender is not None and not self._sender.done():
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._sender), 5)
            self._sender.cancel()
