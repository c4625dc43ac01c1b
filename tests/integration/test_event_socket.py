"""The SDK's event socket (websockets' asyncio client read by one task), against real peers on real sockets.

What the Medstream server never does (fragmented frames, binary frames, no answer to a close) is played by a
websockets server or a bare TCP server; the rest runs against a real Medstream server: reading stops while a
subscription is full and resumes when its callback catches up, wss:// through a TLS terminator, uvloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
import uvloop
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from websockets.http11 import Request, Response

from medstream.errors import UnavailableError
from medstream.model import Patient
from medstream.sdk import MedTechApi
from medstream.sdk.connection import SubscriptionEvent, SubscriptionOptions
from medstream.sdk.event_socket import EventSocket, open_event_socket
from tests.conftest import ADMIN_LOGIN, ADMIN_PASSWORD, IN_CI
from tests.integration.events_support import SETTLE, Recorder, eventually, health_events, wait_for_condition
from tests.integration.raw_events import WAIT, DedicatedServer, create_patients, dedicated_server

Handler = Callable[[ServerConnection], Awaitable[None]]


class Received:
    """An `on_message` callback that keeps the messages and lets a test wait for them."""

    def __init__(self, then: Callable[[str], None] = lambda text: None) -> None:
        self.messages: list[str] = []
        self.then = then
        self._changed = asyncio.Event()

    def __call__(self, text: str) -> None:
        self.then(text)
        self.messages.append(text)
        self._changed.set()

    async def wait_count(self, count: int) -> None:
        await wait_for_condition(
            lambda: len(self.messages) >= count, self._changed, f"{count} messages", lambda: len(self.messages)
        )


@contextlib.asynccontextmanager
async def peer(handler: Handler, **options: Any) -> AsyncIterator[tuple[str, Server]]:
    """A websockets server running `handler` for each connection; its ws:// URL."""
    async with serve(handler, "127.0.0.1", 0, **options) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/", server


_READERS: set[asyncio.Task[None]] = set()


async def opened(url: str, on_message: Callable[[str], None], **options: Any) -> EventSocket:
    """An event socket to `url`, read by its own task (as the SDK's event stream reads it)."""
    settings: dict[str, Any] = {"max_size": 1 << 20, "open_timeout": WAIT, "close_timeout": 2.0} | options
    socket = await open_event_socket(url, on_message, **settings)
    reader = asyncio.create_task(socket.run())
    _READERS.add(reader)
    reader.add_done_callback(_READERS.discard)
    return socket


async def closed(socket: EventSocket) -> None:
    await asyncio.wait_for(socket.connection.wait_closed(), WAIT)


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_a_fragmented_message_is_delivered_whole_and_in_order(compression: str | None) -> None:
    async def handler(websocket: ServerConnection) -> None:
        await websocket.send("first")
        await websocket.send(['{"type":', '"event",', '"seq":', "2}"])  # an iterable goes out as fragments
        await websocket.send("third")
        await websocket.wait_closed()

    async with peer(handler, compression=compression) as (url, _):
        received = Received()
        socket = await opened(url, received)
        await received.wait_count(3)
        assert received.messages == ["first", '{"type":"event","seq":2}', "third"]
        await socket.close()
        assert socket.close_code == 1000


async def test_a_ping_of_the_server_is_answered_and_a_ping_of_the_client_gets_its_pong() -> None:
    async def handler(websocket: ServerConnection) -> None:
        pong = await websocket.ping()
        await asyncio.wait_for(pong, WAIT)
        await websocket.send("pong received")
        await websocket.wait_closed()

    async with peer(handler) as (url, _):
        received = Received()
        socket = await opened(url, received)
        await received.wait_count(1)
        assert received.messages == ["pong received"]
        await asyncio.wait_for(await socket.ping(), WAIT)
        await socket.close()


async def test_the_socket_is_not_read_while_paused_and_nothing_is_lost_when_it_resumes() -> None:
    count, size = 1000, 4096
    sent: list[int] = []

    async def handler(websocket: ServerConnection) -> None:
        await websocket.recv()  # the client has its socket in hand
        for i in range(count):
            await websocket.send(f"{i:08d}" + "x" * size)  # waits while the client's side is full
            sent.append(i)
        await websocket.wait_closed()

    async with peer(handler, compression=None) as (url, server):
        for listening in server.sockets:  # a small send buffer: a client that stops reading backs the peer up
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
        holder: list[EventSocket] = []
        received = Received(then=lambda text: holder[0].hold() if not received.messages else None)
        client = await opened(url, received)
        holder.append(client)
        assert await client.send("go")
        await received.wait_count(1)
        await asyncio.sleep(SETTLE)
        assert client.held
        # Nothing after the message that asked to hold is handed over; websockets' queue takes a few frames,
        # then the TCP socket is not read any more and the peer backs up.
        assert received.messages == [received.messages[0]] and received.messages[0].startswith("00000000")
        assert len(sent) < count // 2, "the peer is held back: the client's receive window is full"
        stalled_at = len(sent)
        await asyncio.sleep(SETTLE)
        assert len(received.messages) == 1 and len(sent) == stalled_at

        client.release()
        await received.wait_count(count)
        assert [int(m[:8]) for m in received.messages] == list(range(count))
        await client.close()


async def test_a_held_socket_closes_with_the_server_answer_read_behind_what_nobody_waits_for() -> None:
    count, size = 1000, 4096

    async def handler(websocket: ServerConnection) -> None:
        await websocket.recv()
        with contextlib.suppress(ConnectionClosed):
            for i in range(count):
                await websocket.send(f"{i:08d}" + "x" * size)
        await websocket.wait_closed()

    async with peer(handler, compression=None) as (url, server):
        for listening in server.sockets:
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
        holder: list[EventSocket] = []
        received = Received(then=lambda text: holder[0].hold() if not received.messages else None)
        client = await opened(url, received)
        holder.append(client)
        assert await client.send("go")
        await received.wait_count(1)
        await asyncio.sleep(SETTLE)  # websockets' queue is full, and the TCP socket is not read
        assert client.held

        await asyncio.wait_for(client.close(), WAIT)
        # The messages in the way were read and dropped, so the server's close frame came through: a closing
        # handshake, not a connection dropped after the close timeout (1006).
        assert (client.close_code, client.close_reason) == (1000, "")
        assert len(received.messages) == 1, "nothing is handed over once closing"


async def test_a_connection_dropped_without_a_close_frame_ends_as_lost() -> None:
    async def handler(websocket: ServerConnection) -> None:
        await websocket.send("bye")
        websocket.transport.close()  # TCP FIN, no close frame

    async with peer(handler) as (url, _):
        received = Received()
        client = await opened(url, received)
        await closed(client)
        assert received.messages == ["bye"]
        assert (client.close_code, client.close_reason) == (1006, "")
        assert isinstance(client.close_exc, ConnectionClosedError)
        assert not await client.send("anything"), "nothing is sent on a closed socket"
        with pytest.raises(ConnectionClosed):
            await client.ping()


async def test_the_close_of_the_server_gives_its_code_reason_and_exception() -> None:
    async def handler(websocket: ServerConnection) -> None:
        await websocket.close(4429, "too slow")

    async with peer(handler) as (url, _):
        client = await opened(url, Received())
        await closed(client)
        assert (client.close_code, client.close_reason) == (4429, "too slow")
        assert isinstance(client.close_exc, ConnectionClosedError)
        assert client.close_exc.rcvd is not None and client.close_exc.rcvd.code == 4429


async def test_close_gives_up_waiting_for_a_server_that_does_not_answer() -> None:
    client_gone = asyncio.Event()

    async def handler(websocket: ServerConnection) -> None:
        websocket.transport.pause_reading()  # the client's close frame is never read, so never answered
        await client_gone.wait()
        websocket.transport.resume_reading()  # now it sees the dropped connection, and the server can stop
        await websocket.wait_closed()

    async with peer(handler) as (url, _):
        client = await opened(url, Received(), close_timeout=0.3)
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(client.close(1000, "client closing"), WAIT)
        assert asyncio.get_running_loop().time() - started < 2.0
        assert client.close_code == 1006
        client_gone.set()


async def test_an_answer_other_than_101_raises_invalid_status() -> None:
    def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(HTTPStatus.FORBIDDEN, "no\n")

    async def handler(websocket: ServerConnection) -> None:
        raise AssertionError("never reached")

    async with peer(handler, process_request=refuse) as (url, _):
        with pytest.raises(InvalidStatus) as raised:
            await opened(url, Received())
        assert raised.value.response.status_code == 403


async def test_a_server_that_never_answers_the_handshake_times_out_and_the_connection_is_dropped() -> None:
    ended = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(4096):
                pass
        ended.set()
        writer.close()

    listening = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        port = listening.sockets[0].getsockname()[1]
        with pytest.raises(TimeoutError):
            await opened(f"ws://127.0.0.1:{port}/", Received(), open_timeout=0.3)
        await asyncio.wait_for(ended.wait(), WAIT)
    finally:
        listening.close()


async def test_a_message_over_max_size_closes_the_socket_with_1009() -> None:
    async def handler(websocket: ServerConnection) -> None:
        await websocket.send("small")
        await websocket.send("x" * 4096)
        await websocket.wait_closed()

    async with peer(handler, compression=None) as (url, _):
        received = Received()
        client = await opened(url, received, max_size=1024)
        await closed(client)
        assert received.messages == ["small"]
        # The client fails the connection: its close frame says 1009, and it reads nothing after, not even the
        # answer, so the code it reports is 1006 (as websockets' own client does).
        assert client.close_code == 1006
        assert client.close_exc.sent is not None and client.close_exc.sent.code == 1009


async def test_a_binary_message_is_ignored_and_the_socket_stays_open() -> None:
    async def handler(websocket: ServerConnection) -> None:
        await websocket.send(b"\x00binary")
        await websocket.send("text")
        await websocket.wait_closed()

    async with peer(handler) as (url, _):
        received = Received()
        client = await opened(url, received)
        await received.wait_count(1)
        assert received.messages == ["text"]
        assert await client.send("still open")
        await client.close()
        assert client.close_code == 1000


async def test_a_message_the_client_cannot_handle_closes_the_socket_and_stops_there() -> None:
    close_codes: list[int | None] = []

    async def handler(websocket: ServerConnection) -> None:
        await websocket.send("one")
        await websocket.send("boom")
        await websocket.send("after")
        await websocket.wait_closed()
        close_codes.append(websocket.close_code)

    def fragile(text: str) -> None:
        if text == "boom":
            raise ValueError("cannot handle it")

    async with peer(handler) as (url, _):
        received = Received(then=fragile)
        client = await opened(url, received)
        await closed(client)
        assert received.messages == ["one"], "nothing after the failed message is acted on"
        assert isinstance(client.close_exc, ConnectionClosedError)
        assert client.close_exc.sent is not None and client.close_exc.sent.code == 1011
        await eventually(lambda: _done(close_codes), "the server saw the close")
        assert close_codes == [1011]


async def _done(values: list[int | None]) -> bool:
    return bool(values)


# -- through the SDK, against a Medstream server --------------------------------------------------------

# ~16 KB per event, random so that compression cannot shrink it: the kernel's buffers hold a few dozen, not all.
NOTE = secrets.token_urlsafe(12_000)


async def test_a_full_subscription_stops_the_socket_reading_until_its_callback_catches_up(tmp_path: Path) -> None:
    async with dedicated_server(tmp_path) as server:
        token = await server.admin_token()
        api = await server.admin_api()
        gate = asyncio.Event()
        delivered: list[str] = []
        seqs: list[int] = []
        reconnections: list[int] = []

        async def blocked_until_the_gate_opens(patient: Patient, event: SubscriptionEvent[Patient]) -> None:
            await gate.wait()
            assert patient.id is not None
            delivered.append(patient.id)
            seqs.append(event.seq)

        options = SubscriptionOptions(max_pending_events=4)
        connection = await api.patient_api.subscribe_to_patient_events(
            ["CREATE"], None, blocked_until_the_gate_opens, options
        )
        connection.on_reconnecting(lambda attempt: reconnections.append(attempt))
        try:
            start = connection.tracker.last_seq
            assert start is not None
            written: list[str] = []
            for _ in range(20):
                written += [p["id"] for p in await create_patients(server.url, token, 8, note=NOTE)]
            # Every event is on its way to the socket; the client reads only what fits in its pending room.
            await eventually(lambda: _lag_is_zero(server.url), "the dispatcher to catch up")
            await asyncio.sleep(SETTLE)
            read = (connection.tracker.last_seq or 0) - start
            assert delivered == []
            assert read < len(written) // 2, f"{read} of {len(written)} events read while the callback was blocked"

            gate.set()
            await eventually(lambda: _has(delivered, len(written)), f"{len(written)} events")
            assert delivered == written, "every event, once, in order"
            assert seqs == sorted(seqs)
            assert reconnections == [] and connection.is_connected, "held back, never dropped"
        finally:
            gate.set()
            await api.close()


async def _lag_is_zero(url: str) -> bool:
    return (await health_events(url))["lag"] == 0


async def _has(values: list[str], count: int) -> bool:
    return len(values) >= count


class Relay:
    """Connections to it are relayed, byte for byte, to a backend port (TLS on the client side, given a context);
    `freeze()` stops every open connection's bytes without closing it, as a dead network or peer does."""

    def __init__(self, backend_port: int, context: ssl.SSLContext | None = None) -> None:
        self.backend_port, self.context = backend_port, context
        self.port = 0
        self._links: list[dict[str, Any]] = []  # each: "frozen", and its two stream writers
        self._ended = asyncio.Event()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Relay]:
        listening = await asyncio.start_server(self._relay, "127.0.0.1", 0, ssl=self.context)
        self.port = listening.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            listening.close()
            self._ended.set()
            for link in self._links:  # the pipes see their connections end, and return
                for writer in link["writers"]:
                    writer.close()

    def freeze(self) -> None:
        for link in self._links:
            link["frozen"] = True

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)
        link: dict[str, Any] = {"frozen": False, "writers": (writer, up_writer)}
        self._links.append(link)
        await asyncio.gather(self._pipe(link, reader, up_writer), self._pipe(link, up_reader, writer))

    async def _pipe(self, link: dict[str, Any], source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while data := await source.read(65536):
                if link["frozen"]:
                    await self._ended.wait()
                    break
                sink.write(data)
                await sink.drain()
        sink.close()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        if IN_CI:
            pytest.fail("openssl is not installed (CI=true: the TLS test must run)")
        pytest.skip("openssl is not installed")
    certificate, key = directory / "cert.pem", directory / "key.pem"
    subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    new_pair = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", *subject]
    subprocess.run([openssl, *new_pair, "-keyout", str(key), "-out", str(certificate)], check=True, capture_output=True)
    return certificate, key


def tls_context(certificate: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    return context


async def _one_event_through(url: str, server: DedicatedServer, what: str) -> None:
    """An admin's SDK on `url` subscribes to patient creates; a patient created on `server` itself reaches the
    callback, and the subscription is connected."""
    api = await MedTechApi.builder().with_url(url).with_username(ADMIN_LOGIN).with_password(ADMIN_PASSWORD).build()
    try:
        recorder = Recorder()
        connection = await api.patient_api.subscribe_to_patient_events(["CREATE"], None, recorder)
        [patient] = await create_patients(server.url, await server.admin_token())
        await recorder.wait_until(lambda events: [e.entity.id for e in events] == [patient["id"]], what)
        assert connection.is_connected
    finally:
        await api.close()


async def test_the_sdk_subscribes_over_wss_checking_the_server_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certificate, key = self_signed_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate))  # the only certificate trusted, by httpx and the socket
    async with dedicated_server(tmp_path) as server:
        backend_port = int(server.url.rsplit(":", 1)[1])
        async with Relay(backend_port, tls_context(certificate, key)).running() as relay:
            await _one_event_through(f"https://127.0.0.1:{relay.port}", server, "the event over wss")

        # A certificate the client does not trust: the socket is refused, and the SDK says so.
        monkeypatch.delenv("SSL_CERT_FILE")
        with pytest.raises(ssl.SSLCertVerificationError):
            async with Relay(backend_port, tls_context(certificate, key)).running() as relay:
                await opened(f"wss://127.0.0.1:{relay.port}/ws/v1/events", Received())


@pytest.mark.parametrize("renewing", [False, True], ids=["token-valid", "token-renewed-at-every-beat"])
async def test_the_sdk_drops_a_socket_gone_silent_and_resumes_on_a_new_one(tmp_path: Path, renewing: bool) -> None:
    # Renewing: tokens of 20 s are within the SDK's 30 s renewal margin, so every heartbeat renews, over HTTP
    # through the relay. Frozen, that renewal hangs (the client's timeout is 30 s): the heartbeat must go on
    # all the same, to notice the silent socket.
    async with dedicated_server(tmp_path, **({"access_token_seconds": 20} if renewing else {})) as server:
        backend_port = int(server.url.rsplit(":", 1)[1])
        token = await server.admin_token()
        async with Relay(backend_port).running() as relay:
            builder = MedTechApi.builder().with_url(f"http://127.0.0.1:{relay.port}").with_username(ADMIN_LOGIN)
            api = await builder.with_password(ADMIN_PASSWORD).build()
            try:
                recorder = Recorder()
                reconnections: list[int] = []

                def received(events: list[SubscriptionEvent[Any]]) -> list[str | None]:
                    return [e.entity.id for e in events]

                options = SubscriptionOptions(heartbeat_ms=200, connection_retry_interval_ms=50)
                connection = await api.patient_api.subscribe_to_patient_events(["CREATE"], None, recorder, options)
                connection.on_reconnecting(lambda attempt: reconnections.append(attempt))
                written = [p["id"] for p in await create_patients(server.url, token)]
                await recorder.wait_until(lambda events: received(events) == written, "the first event")

                relay.freeze()  # the socket stays open both ends, and nothing goes through any more
                written += [p["id"] for p in await create_patients(server.url, token, 2)]
                # No pong within two heartbeats: the SDK drops the socket (no closing handshake to wait for),
                # opens another and resumes after the last event it delivered.
                started = asyncio.get_running_loop().time()
                await recorder.wait_until(
                    lambda events: received(events) == written, "the events sent while silent", seconds=15
                )
                assert asyncio.get_running_loop().time() - started < 3.0, "about three heartbeats, not a timeout"
                assert reconnections == [1]
                assert connection.is_connected
            finally:
                await api.close()


async def test_the_sdk_receives_events_on_uvloop(tmp_path: Path) -> None:
    async with dedicated_server(tmp_path) as server:
        token = await server.admin_token()

        async def on_uvloop() -> list[str]:
            api = (
                await MedTechApi.builder()
                .with_url(server.url)
                .with_username(ADMIN_LOGIN)
                .with_password(ADMIN_PASSWORD)
                .build()
            )
            try:
                recorder = Recorder()
                await api.patient_api.subscribe_to_patient_events(["CREATE"], None, recorder)
                subscribed.set()
                await recorder.wait_count(3)
                return [str(e.entity.id) for e in recorder.events]
            finally:
                await api.close()

        subscribed = threading.Event()
        running = asyncio.create_task(asyncio.to_thread(uvloop.run, on_uvloop()))
        assert await asyncio.to_thread(subscribed.wait, WAIT), "subscribed on uvloop"
        written = [p["id"] for p in await create_patients(server.url, token, 3)]
        assert await asyncio.wait_for(running, WAIT) == written


async def test_a_plain_callback_that_returns_an_awaitable_holds_the_next_events_behind_it(tmp_path: Path) -> None:
    """A plain function runs as its event is read; what it returns is awaited before any later event's turn."""
    async with dedicated_server(tmp_path) as server:
        token = await server.admin_token()
        api = await server.admin_api()
        calls: list[tuple[str, int]] = []  # ("start" | "end", seq)

        async def slowly(seq: int) -> None:
            await asyncio.sleep(0.2)
            calls.append(("end", seq))

        def callback(patient: Patient, event: SubscriptionEvent[Patient]) -> Awaitable[None] | None:
            calls.append(("start", event.seq))
            if len(calls) == 1:
                return slowly(event.seq)  # the first event's work goes on after the call returns
            calls.append(("end", event.seq))
            return None

        connection = await api.patient_api.subscribe_to_patient_events(["CREATE"], None, callback)
        try:
            for _ in range(3):  # three writes, three frames: the later events come while the first is awaited
                await create_patients(server.url, token, 2)
            await eventually(lambda: _has_calls(calls, 12), "6 events through the callback")
            await connection.wait_delivered()
            seqs = [seq for _, seq in calls[::2]]
            assert seqs == sorted(seqs) and len(set(seqs)) == 6
            assert calls == [(kind, seq) for seq in seqs for kind in ("start", "end")], "one at a time, in order"
        finally:
            await api.close()


async def _has_calls(calls: list[tuple[str, int]], count: int) -> bool:
    return len(calls) >= count


class ConnectProxy:
    """An HTTP proxy that only tunnels (CONNECT), as corporate proxies do for websockets; it notes each target."""

    def __init__(self) -> None:
        self.port = 0
        self.targets: list[str] = []
        self._writers: list[asyncio.StreamWriter] = []

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ConnectProxy]:
        listening = await asyncio.start_server(self._tunnel, "127.0.0.1", 0)
        self.port = listening.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            listening.close()
            for writer in self._writers:
                writer.close()

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, _version = head.split(b"\r\n", 1)[0].decode().split(" ")
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        self.targets.append(target)
        host, port = target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        self._writers.append(up_writer)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.close()


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
async def test_the_sdk_reaches_the_server_through_the_proxy_the_environment_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secure: bool
) -> None:
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    certificate, key = self_signed_certificate(tmp_path) if secure else (None, None)
    if certificate is not None:
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate))
    async with dedicated_server(tmp_path) as server, ConnectProxy().running() as proxy:
        backend_port = int(server.url.rsplit(":", 1)[1])
        context = tls_context(certificate, key) if certificate is not None and key is not None else None
        async with Relay(backend_port, context).running() as relay:
            # WS_PROXY and WSS_PROXY are read by the websocket only: REST goes straight to the server.
            monkeypatch.setenv("WSS_PROXY" if secure else "WS_PROXY", f"http://127.0.0.1:{proxy.port}")
            url = f"{'https' if secure else 'http'}://127.0.0.1:{relay.port}"
            await _one_event_through(url, server, "the event through the proxy")
            assert proxy.targets == [f"127.0.0.1:{relay.port}"], "the socket, and only it, went by the proxy"


async def test_a_proxy_the_environment_names_that_is_not_valid_fails_the_subscription_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "WS_PROXY", "ws_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WS_PROXY", "ftp://127.0.0.1:21")  # no websocket goes through an FTP proxy
    async with dedicated_server(tmp_path) as server:
        api = await server.admin_api()
        try:
            # Not retried (it cannot get better), and not left hanging: the subscribe call says why at once.
            with pytest.raises(UnavailableError, match="proxy") as raised:
                await asyncio.wait_for(api.patient_api.subscribe_to_patient_events(["CREATE"], None, Recorder()), WAIT)
            assert "ftp" in str(raised.value)
        finally:
            await api.close()
