"""A real cluster for the scale-out tests: `medstream serve` node processes sharing one PostgreSQL database,
and raw websocket readers that check every event a node sends.

- `running_cluster`: M node processes on free ports of one fresh database, healthy before use, always stopped
  afterwards, and an admin token every node accepts.
- `EventReader`: one raw websocket on one node, subscribed as admin to every entity type with no filter, so
  it receives every event of the log; it checks, as each event arrives, that `seq` is the last one plus one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from medstream.model import ENTITY_KINDS
from medstream.store.database import Database
from tests.conftest import ADMIN_LOGIN, ADMIN_PASSWORD, database_url_for, unused_port

ALL_EVENTS = ["CREATE", "UPDATE", "DELETE"]


# -- nodes -------------------------------------------------------------------------------------------------


@dataclass
class Node:
    name: str
    url: str
    process: asyncio.subprocess.Process
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _serve_command() -> list[str]:
    script = Path(sys.executable).parent / "medstream"
    return [str(script)] if script.exists() else [sys.executable, "-m", "medstream"]


@contextlib.asynccontextmanager
async def running_nodes(
    database_url: str,
    count: int,
    log_dir: Path,
    admin_login: str,
    admin_password: str,
    extra_args: Sequence[str] = (),
) -> AsyncIterator[list[Node]]:
    """`count` `medstream serve` processes on `database_url`, all started at once with the same admin and
    `extra_args`, each answering GET /health 200; killed on the way out whatever happened."""
    nodes: list[Node] = []
    # Only the command line configures the nodes: no MEDSTREAM_* variable of the caller's shell.
    node_environment = {k: v for k, v in os.environ.items() if not k.startswith("MEDSTREAM_")}
    node_environment["PYTHONUNBUFFERED"] = "1"
    try:
        for name in "ABCDEFGH"[:count]:
            port = unused_port()
            log_path = log_dir / f"node-{name}.log"
            with log_path.open("wb") as log_file:
                process = await asyncio.create_subprocess_exec(
                    *_serve_command(),
                    "serve",
                    *("--host", "127.0.0.1", "--port", str(port), "--database", database_url),
                    *("--admin-login", admin_login, "--admin-password", admin_password),
                    *("--log-level", "warning"),
                    # The scale-out tests write clear payloads through raw REST (tests/integration/stress.py).
                    "--no-require-encryption",
                    *extra_args,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=node_environment,
                )
            nodes.append(Node(name, f"http://127.0.0.1:{port}", process, log_path))
        await asyncio.gather(*(_wait_healthy(node) for node in nodes))
        yield nodes
    finally:
        for node in nodes:
            if node.process.returncode is None:
                node.process.terminate()
        for node in nodes:
            try:
                await asyncio.wait_for(node.process.wait(), 5)
            except TimeoutError:
                node.process.kill()
                await node.process.wait()


async def _wait_healthy(node: Node, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            if node.process.returncode is not None:
                raise AssertionError(
                    f"node {node.name} exited with {node.process.returncode} while starting:\n{node.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{node.url}/health")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"node {node.name} not healthy after {seconds} s:\n{node.log_tail()}")
            await asyncio.sleep(0.1)


@dataclass(frozen=True)
class Cluster:
    database_url: str
    nodes: list[Node]
    token: str  # the admin's access token; every node accepts it (they share the signing key)


@contextlib.asynccontextmanager
async def running_cluster(
    directory: Path,
    count: int = 3,
    prepare: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    extra_args: Sequence[str] = (),
) -> AsyncIterator[Cluster]:
    """`count` nodes on a fresh PostgreSQL database (skipped, or failed in CI, when PostgreSQL is down), each
    started with `extra_args`. Without `prepare` the nodes migrate the new database themselves, all at once;
    with it, the database is migrated first and `prepare` may change it before any node starts."""
    async with database_url_for("postgresql", directory) as url:
        if prepare is not None:
            database = Database(url)
            try:
                await database.migrate()
            finally:
                await database.close()
            conn = await asyncpg.connect(url)
            try:
                await prepare(conn)
            finally:
                await conn.close()
        async with running_nodes(url, count, directory, ADMIN_LOGIN, ADMIN_PASSWORD, extra_args) as nodes:
            yield Cluster(url, nodes, await login(nodes[0].url, ADMIN_LOGIN, ADMIN_PASSWORD))


async def login(url: str, username: str, password: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.post("/rest/v1/auth/login", json={"username": username, "password": password})
        response.raise_for_status()
        token: str = response.json()["token"]
        return token


# -- readers -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    seq: int
    entity_type: str
    entity_id: str
    rev: str
    event: str
    at: float  # time.time() when it arrived


@dataclass
class EventReader:
    """A raw websocket on one node, subscribed as admin to all seven entity types with filter null: it
    receives every event, and as each arrives checks that its `seq` is exactly the previous one plus one."""

    name: str
    url: str
    token: str
    start: int = 0  # the position every subscription started from
    events: list[Received] = field(default_factory=list)
    out_of_step: int = 0  # events whose seq was not the previous one plus one
    out_of_step_examples: list[tuple[int, int]] = field(default_factory=list)  # (expected, got)
    protocol_errors: list[dict[str, Any]] = field(default_factory=list)  # gap, error, or closed by the server
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _socket: ClientConnection | None = None
    _closing: bool = False
    _task: asyncio.Task[None] | None = None

    @property
    def last_seq(self) -> int:
        return self.events[-1].seq if self.events else self.start

    async def open(self) -> None:
        """Connect, authenticate and subscribe; returns once all seven subscriptions are acknowledged."""
        ws_url = self.url.replace("http://", "ws://") + "/ws/v1/events"
        self._socket = await connect(ws_url, max_size=8 << 20)
        await self._socket.send(orjson.dumps({"type": "auth", "token": self.token}).decode())
        for kind in ENTITY_KINDS:
            message = {"type": "subscribe", "id": kind.name, "entity": kind.name, "events": ALL_EVENTS, "filter": None}
            await self._socket.send(orjson.dumps(message).decode())
        positions: dict[str, int] = {}
        async with asyncio.timeout(10):
            while len(positions) < len(ENTITY_KINDS):
                message = orjson.loads(await self._socket.recv())
                assert message["type"] == "subscribed", f"reader {self.name}: {message}"
                positions[message["id"]] = message["position"]
        # Subscribed while nothing is written, so every subscription starts at the same position and the
        # merged stream must be exactly start+1, start+2, ...
        assert len(set(positions.values())) == 1, f"reader {self.name}: subscriptions start apart: {positions}"
        self.start = next(iter(positions.values()))
        self._task = asyncio.create_task(self._receive(), name=f"reader-{self.name}")

    async def _receive(self) -> None:
        socket = self._socket
        assert socket is not None
        with contextlib.suppress(ConnectionClosed):
            async for raw in socket:
                message = orjson.loads(raw)
                kind = message["type"]
                if kind == "event":
                    self._on_event(message)
                elif kind == "ping":
                    await socket.send('{"type":"pong"}')
                elif kind in {"gap", "error"}:
                    self.protocol_errors.append(message)
        if not self._closing:  # the server closed it: whatever it did not send yet is lost to this reader
            self.protocol_errors.append({"type": "closed", "code": socket.close_code, "reason": socket.close_reason})

    def _on_event(self, message: dict[str, Any]) -> None:
        seq: int = message["seq"]
        expected = self.last_seq + 1
        if seq != expected:
            self.out_of_step += 1
            if len(self.out_of_step_examples) < 5:
                self.out_of_step_examples.append((expected, seq))
        entity = message["entity"]
        self.events.append(
            Received(seq, message["entityType"], entity["id"], entity["rev"], message["event"], time.time())
        )
        self.arrived.set()

    async def wait_for(self, entity_id: str, rev: str, seconds: float) -> Received | None:
        """The event of this entity revision once it arrived; None if it did not within `seconds`."""
        deadline = time.monotonic() + seconds
        seen = 0
        while True:
            for event in self.events[seen:]:
                if (event.entity_id, event.rev) == (entity_id, rev):
                    return event
            seen = len(self.events)
            self.arrived.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)

    async def close(self) -> None:
        self._closing = True
        if self._socket is not None:
            await self._socket.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


async def open_readers(nodes: Sequence[Node], token: str) -> list[EventReader]:
    readers = [EventReader(node.name, node.url, token) for node in nodes]
    await asyncio.gather(*(reader.open() for reader in readers))
    return readers
