"""Slow consumers (docs/guarantees.md): one that cannot keep up is closed with 4429 once its own send queue
overflows, and nobody else notices; the SDK, when it is the one closed, reconnects and resumes with nothing lost.

Each test runs its own server with a small send queue (`Settings.ws_send_queue`), so that overflowing it takes
a few dozen events, not ten thousand.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from medstream.model import Patient
from medstream.sdk.connection import SubscriptionEvent, SubscriptionOptions
from medstream.server.uvicorn_protocols import WebSocketProtocol
from medstream.server.websocket import ClientConnection
from tests.integration.raw_events import (
    WAIT,
    DedicatedServer,
    RawClient,
    create_patients,
    dedicated_server,
    small_receive_buffer_socket,
)

SEND_QUEUE = 32
# ~16 KB per event, and random so that permessage-deflate (which the SDK negotiates) cannot shrink it: the
# socket buffers between a stalled reader and the server's queue fill after a few dozen events.
NOTE = secrets.token_urlsafe(12_000)


@pytest_asyncio.fixture
async def small_queue_server(tmp_path: Path) -> AsyncIterator[DedicatedServer]:
    async with dedicated_server(tmp_path, ws_send_queue=SEND_QUEUE) as server:
        yield server


class Arrivals:
    """An SDK callback that records each event's seq, entity id and arrival time."""

    def __init__(self, delay: float = 0.0, slow_while: Callable[[], bool] = lambda: False) -> None:
        self.seqs: list[int] = []
        self.ids: list[str] = []
        self.at: dict[str, float] = {}
        self.delay, self.slow_while = delay, slow_while
        self._arrived = asyncio.Event()

    async def __call__(self, patient: Patient, event: SubscriptionEvent[Patient]) -> None:
        if self.slow_while():
            await asyncio.sleep(self.delay)
        assert patient.id is not None
        self.seqs.append(event.seq)
        self.ids.append(patient.id)
        self.at[patient.id] = time.monotonic()
        self._arrived.set()

    async def wait_for(self, ids: list[str]) -> None:
        wanted = set(ids)
        async with asyncio.timeout(WAIT):
            while not wanted <= set(self.at):
                self._arrived.clear()
                await self._arrived.wait()

    def assert_exactly_once_in_order(self) -> None:
        assert self.seqs == sorted(self.seqs), "in seq order"
        assert len(self.ids) == len(set(self.ids)), "no duplicate"


def closing_code(server: DedicatedServer) -> int | None:
    """The close code the server has decided for one of its sockets, or closed one with, if any (for the test to
    know when)."""
    for connection in server.hub.connections:
        if connection.close_reason is not None:
            return connection.close_reason[0]
    return next(iter(server.hub.closes), None)


async def test_a_reader_that_stops_is_closed_with_4429_and_an_sdk_subscriber_gets_every_event_promptly(
    small_queue_server: DedicatedServer,
) -> None:
    server = small_queue_server
    token = await server.admin_token()
    api = await server.admin_api()
    arrivals = Arrivals()
    reconnections: list[int] = []
    connection = await api.patient_api.subscribe_to_patient_events(["CREATE"], None, arrivals)
    connection.on_reconnecting(lambda attempt: reconnections.append(attempt))
    written: list[str] = []
    latest_write: dict[str, float] = {}
    try:
        sock = small_receive_buffer_socket(server.url)
        async with RawClient.opened(server.url, token, sock=sock) as stalled:
            answer = await stalled.subscribe("everything", events=("CREATE", "UPDATE", "DELETE"))
            assert answer["type"] == "subscribed"
            # From here on the stalled client reads nothing, while patients are written in batches smaller
            # than the queue: the SDK subscriber keeps up with each, the stalled one falls behind.
            for _ in range(200):
                batch = await create_patients(server.url, token, 8, note=NOTE)
                now = time.monotonic()
                for patient in batch:
                    written.append(patient["id"])
                    latest_write[patient["id"]] = now
                if closing_code(server) is not None:
                    break
            assert closing_code(server) == 4429, "the stalled socket's queue overflowed"

            # The stalled client reads again: what was already on its way, then the close with its reason.
            code, reason = await stalled.closed()
            assert (code, "too slow" in reason) == (4429, True), (code, reason)
            received = [f["entity"]["id"] for f in stalled.frames if f["type"] == "event"]
            assert received == written[: len(received)], "what it got before the close is a prefix, in order"
            assert len(received) < len(written)

        [after] = await create_patients(server.url, token)
        written.append(after["id"])
        latest_write[after["id"]] = time.monotonic()
        await arrivals.wait_for(written)
        arrivals.assert_exactly_once_in_order()
        assert arrivals.ids == written
        lateness = max(arrivals.at[i] - latest_write[i] for i in written)
        assert lateness < 2.0, f"an event reached the SDK {lateness:.2f} s after its write returned"
        assert reconnections == [] and connection.is_connected, "the SDK subscriber was never disturbed"
    finally:
        await api.close()


def websocket_protocols(server: DedicatedServer) -> list[WebSocketProtocol]:
    """The server's websocket connections whose transport is not gone yet (uvicorn's own count)."""
    return [p for p in server.server.server_state.connections if isinstance(p, WebSocketProtocol)]


async def test_a_client_that_reads_nothing_more_is_dropped_at_the_close_timeout(tmp_path: Path) -> None:
    async with dedicated_server(tmp_path, ws_send_queue=SEND_QUEUE, ws_close_timeout_seconds=0.5) as server:
        token = await server.admin_token()
        sock = small_receive_buffer_socket(server.url)
        async with RawClient.opened(server.url, token, sock=sock) as stalled:
            answer = await stalled.subscribe("everything", events=("CREATE",))
            assert answer["type"] == "subscribed"
            for _ in range(200):
                await create_patients(server.url, token, 8, note=NOTE)
                if closing_code(server) is not None:
                    break
            assert closing_code(server) == 4429
            closed_at = time.monotonic()

            # The client reads nothing, not even the close frame behind what fills the buffers: the server does
            # not wait for those buffers to drain, it drops the connection once the close timeout has passed.
            while websocket_protocols(server) and time.monotonic() - closed_at < WAIT:  # noqa: ASYNC110 - uvicorn has no event for it
                await asyncio.sleep(0.05)
            assert websocket_protocols(server) == [], "the stalled connection is still open on the server"
            assert time.monotonic() - closed_at >= 0.5, "dropped before the client had its close timeout"
            # What was still in the server's buffers, the close frame with it, is gone: the client sees the
            # connection end without a closing handshake.
            code, _reason = await stalled.closed()
            assert code == 1006
        async with httpx.AsyncClient(base_url=server.url) as http:
            health = (await http.get("/health")).json()
        assert health["events"]["closes"] == {"4429": 1} and health["events"]["connections"] == 0


async def test_an_idle_socket_has_no_keepalive_timer_but_medstreams_heartbeat(tmp_path: Path) -> None:
    # uvicorn's protocol-level keepalive would ping each socket every 20 s beside Medstream's heartbeat: a timer
    # per socket and twice the pings (bench.connections: idle CPU at 10,000 sockets 19-20% with it, 15-16% without).
    async with dedicated_server(tmp_path) as server:
        token = await server.admin_token()
        async with RawClient.opened(server.url, token) as client:
            assert (await client.subscribe("s"))["type"] == "subscribed"
            (protocol,) = websocket_protocols(server)
            assert protocol.ping_timer is None and protocol.pong_timer is None
            assert len(server.hub.connections) == 1


async def test_the_sdk_closed_as_too_slow_reconnects_and_resumes_with_nothing_lost(
    small_queue_server: DedicatedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = small_queue_server
    # The close codes the server decides, recorded as it decides them: the socket leaves the hub soon after.
    decided: list[int] = []
    close_soon = ClientConnection.close_soon

    def recording(connection: ClientConnection, code: int, reason: str, *, flush: bool = False) -> None:
        decided.append(code)
        close_soon(connection, code, reason, flush=flush)

    monkeypatch.setattr(ClientConnection, "close_soon", recording)
    server.limit_send_buffers(16 * 1024)
    token = await server.admin_token()
    api = await server.admin_api()
    # Slow until it reconnects: each event takes 50 ms, while patients keep coming much faster. The SDK holds at
    # most 8 events for the callback, then stops reading: the server's queue for it overflows.
    reconnected = asyncio.Event()
    arrivals = Arrivals(delay=0.05, slow_while=lambda: not reconnected.is_set())
    options = SubscriptionOptions(connection_retry_interval_ms=50, connection_max_retry=20, max_pending_events=8)
    connection = await api.patient_api.subscribe_to_patient_events(["CREATE"], None, arrivals, options)
    connection.on_reconnecting(reconnected.set)
    written: list[str] = []
    try:
        for _ in range(100):
            written += [p["id"] for p in await create_patients(server.url, token, 8, note=NOTE)]
            if decided:
                break
        assert decided[:1] == [4429], "the server closed the slow SDK subscriber's socket as too slow"
        assert len(arrivals.ids) < len(written)

        await asyncio.wait_for(reconnected.wait(), WAIT)
        written += [p["id"] for p in await create_patients(server.url, token, 8, note=NOTE)]
        await arrivals.wait_for(written)
        arrivals.assert_exactly_once_in_order()
        assert arrivals.ids == written, "every event, once, in order, across the reconnection"
        assert connection.is_connected and not connection.is_closed
    finally:
        await api.close()


@pytest.mark.parametrize("count", [3 * SEND_QUEUE])
async def test_a_resume_with_more_missed_events_than_the_send_queue_holds_completes(
    small_queue_server: DedicatedServer, count: int
) -> None:
    """A subscriber that missed more events than its send queue holds still gets them all on resume."""
    server = small_queue_server
    token = await server.admin_token()
    async with RawClient.opened(server.url, token) as client:
        subscribed = await client.subscribe("mine")
        position, epoch = subscribed["position"], subscribed["epoch"]
    written: list[str] = []
    for _ in range(count // 8):
        written += [p["id"] for p in await create_patients(server.url, token, 8)]
    async with RawClient.opened(server.url, token) as client:
        assert (await client.subscribe("mine", after=position, epoch=epoch))["type"] == "subscribed"
        await client.event_for("mine", written[-1])
        assert [f["entity"]["id"] for f in client.events("mine")] == written


async def test_a_burst_larger_than_the_send_queue_reaches_a_socket_that_reads(
    small_queue_server: DedicatedServer,
) -> None:
    """One write whose events reach a socket more times than its send queue holds (a batch, several matching
    subscriptions) is not a slow consumer: what the socket takes goes out at once, and nothing is closed."""
    server = small_queue_server
    token = await server.admin_token()
    subscriptions = [f"s{i}" for i in range(4)]
    async with RawClient.opened(server.url, token) as client:
        for subscription in subscriptions:
            assert (await client.subscribe(subscription))["type"] == "subscribed"
        written = [p["id"] for p in await create_patients(server.url, token, 16)]  # 64 messages, queue of 32
        for subscription in subscriptions:
            await client.event_for(subscription, written[-1])
            assert [f["entity"]["id"] for f in client.events(subscription)] == written
        assert closing_code(server) is None
