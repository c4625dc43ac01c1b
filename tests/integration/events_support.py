"""What the live-event integration tests share: a callback that records, bounded waits, /health, extra nodes."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from medstream.model import Entity, EntityKind, User
from medstream.sdk import MedTechApi
from medstream.sdk.connection import Connection, SubscriptionEvent, SubscriptionOptions
from medstream.server.runner import MedstreamServer, start_server
from medstream.server.settings import Settings
from tests.conftest import ADMIN_LOGIN, ADMIN_PASSWORD, Professional, unused_port
from tests.integration.kinds import KindOps, sub_api

ALL_TYPES = ["CREATE", "UPDATE", "DELETE"]
WAIT = 10.0  # the longest any test waits for something that must happen
SETTLE = 0.3  # how long a test waits for something that must NOT happen


async def subscribe(
    api: MedTechApi,
    kind: EntityKind,
    event_types: list[str],
    callback: Callable[..., Any],
    filter: Any = None,
    options: SubscriptionOptions | None = None,
) -> Connection[Any]:
    """`api.<kind>_api.subscribe_to_<kind>_events(...)`, called by its Medtech name."""
    method = getattr(sub_api(api, kind), f"subscribe_to_{kind.singular}_events")
    connection: Connection[Any] = await method(event_types, filter, callback, options)
    return connection


def readable_new(ops: KindOps, reader: Professional) -> Entity:
    """A new entity of `ops.kind` that `reader` may read: their own, or for users, a user acting as them."""
    if ops.kind.name == "User":
        return User(login=f"u-{uuid.uuid4().hex[:12]}", name="Colleague", healthcare_party_id=reader.id)
    return ops.new()


@dataclass
class Recorder:
    """A subscription callback `(entity, event)` that keeps what it receives and lets a test wait for it."""

    events: list[SubscriptionEvent[Any]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, entity: Entity, event: SubscriptionEvent[Any]) -> None:
        assert entity is event.entity, "the callback's first argument is the event's entity"
        self.events.append(event)
        self._changed.set()

    def of(self, entity_id: str | None) -> list[SubscriptionEvent[Any]]:
        return [e for e in self.events if e.entity.id == entity_id]

    def summary(self) -> list[tuple[str, str | None, str | None]]:
        """(event type, entity id, rev) of each event, in arrival order."""
        return [(e.type.value, e.entity.id, e.entity.rev) for e in self.events]

    async def wait_until(
        self, done: Callable[[list[SubscriptionEvent[Any]]], bool], what: str = "", seconds: float = WAIT
    ) -> None:
        await wait_for_condition(
            lambda: done(self.events), self._changed, what or "events", lambda: self.summary(), seconds
        )

    async def wait_count(self, count: int) -> None:
        await self.wait_until(lambda events: len(events) >= count, f"{count} events")


@dataclass
class Calls:
    """A connection handler (`on_error`, `on_closed`, ...) that keeps its first argument, or None when it gets
    none, and lets a test wait for it."""

    values: list[Any] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, *args: Any) -> None:
        self.values.append(args[0] if args else None)
        self._changed.set()

    async def wait_count(self, count: int, what: str = "handler calls") -> None:
        await wait_for_condition(
            lambda: len(self.values) >= count, self._changed, f"{count} {what}", lambda: self.values
        )


async def wait_for_condition(
    done: Callable[[], bool],
    changed: asyncio.Event,
    what: str,
    state: Callable[[], object] = lambda: None,
    seconds: float = WAIT,
) -> None:
    """Wait, at most `seconds`, until `done()`; `changed` is set whenever it may have become true."""
    try:
        async with asyncio.timeout(seconds):
            while not done():
                changed.clear()
                await changed.wait()
    except TimeoutError:
        pytest.fail(f"waited {seconds} s for {what}; have {state()!r}")


async def eventually(check: Callable[[], Any], what: str, seconds: float = WAIT) -> Any:
    """Poll an async `check()` every 20 ms until it returns something truthy (for state with no event to wait on,
    such as another process's counters)."""
    last: Any = None
    try:
        async with asyncio.timeout(seconds):
            while not (last := await check()):  # noqa: ASYNC110 - polling a server's state, bounded
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"waited {seconds} s for {what}; last saw {last!r}")
    return last


async def health_events(url: str) -> dict[str, int]:
    """The `events` part of GET /health: position, lag, dispatched, connections, subscriptions."""
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/health")
    assert response.status_code == 200, response.text
    events: dict[str, int] = response.json()["events"]
    return events


@dataclass
class Node:
    """A server started by a test (on a fixed port, so that it can be stopped and started again in place)."""

    database_url: str
    port: int
    server: MedstreamServer | None = None
    task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        assert self.task is None, "already running"
        settings = Settings(
            host="127.0.0.1",
            port=self.port,
            database_url=self.database_url,
            admin_login=ADMIN_LOGIN,
            admin_password=ADMIN_PASSWORD,
            # Another node of the shared server's database, which takes clear payloads (tests/conftest.py).
            require_encryption=False,
        )
        self.server, self.task, _ = await start_server(settings)

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task
        self.server = self.task = None


@contextlib.asynccontextmanager
async def node(database_url: str) -> AsyncIterator[Node]:
    """A running server of its own on `database_url` (another node, when another server uses it too)."""
    running = Node(database_url, unused_port())
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
