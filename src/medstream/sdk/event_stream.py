"""EventStream: one websocket carrying many subscriptions, reconnecting and resuming on its own.

After a drop it reconnects with exponential back-off and jitter, authenticates again, and re-subscribes each
subscription after the last `seq` it received, so nothing is lost and nothing is delivered twice. When the
retries run out, every subscription on it gets `on_error` and `on_closed` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from typing import Any

import orjson
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from medstream.errors import AuthenticationError, CloseCode, MedstreamError, UnavailableError, from_payload
from medstream.events.protocol import EventMessage, parse_event_message
from medstream.sdk.connection import Connection, Gap, SubscriptionOptions
from medstream.sdk.event_socket import EventSocket, open_event_socket
from medstream.sdk.transport import Transport

log = logging.getLogger("medstream.sdk")

# Close codes after which reconnecting cannot help: the server refused what this client sends.
_FATAL_CLOSE_CODES: dict[int, str] = {
    CloseCode.FORBIDDEN: "forbidden",
    CloseCode.MALFORMED_MESSAGE: "malformed message",
    CloseCode.MESSAGE_TOO_BIG: "message too big",
}
_MAX_FRAME_BYTES = 64 * 1024 * 1024
# How an event message starts as Medstream servers write it: those are parsed entity and all in one pass; any
# other message (or an event that does not parse that way) is read as plain JSON.
_EVENT_PREFIX = '{"type":"event"'
# The subscription id (a JSON string) and seq at the head of an event message, as Medstream servers write it.
_EVENT_HEAD = re.compile(r'\{"type":"event","id":("(?:[^"\\]|\\.)*"),"seq":(\d+)[,}]')


def retry_delay(attempt: int, options: SubscriptionOptions, rng: random.Random | None = None) -> float:
    """Seconds before retry number `attempt` (1-based): doubling from the base interval, +-25% jitter, capped."""
    base = options.connection_retry_interval_ms / 1000 * 2.0 ** (attempt - 1)
    capped = min(base, options.connection_retry_max_interval_ms / 1000)
    jitter: float = (rng or random).random()
    return capped * (0.75 + 0.5 * jitter)


class EventStream:
    def __init__(self, transport: Transport, options: SubscriptionOptions) -> None:
        self.transport = transport
        self.options = options
        self.connections: dict[str, Connection[Any]] = {}
        self._socket: EventSocket | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._sent_token: str | None = None
        self._acknowledged = False
        # Subscriptions whose callbacks are `max_pending_events` behind: while there is any, the socket is not read.
        self._held: set[str] = set()
        # Subscribing and closing take turns: a subscribe that comes while the socket is being closed (its last
        # subscription just closed) waits for the close to end, then opens a new socket.
        self._lifecycle = asyncio.Lock()

    @property
    def url(self) -> str:
        return self.transport.base_url.replace("http", "ws", 1) + "/ws/v1/events"

    async def subscribe(self, connection: Connection[Any]) -> None:
        async with self._lifecycle:
            self.connections[connection.subscription_id] = connection
            if self._runner is None or self._runner.done():
                self._closing = False
                self._runner = asyncio.create_task(self._run(), name="medstream-event-stream")
            elif self._socket is not None:
                with contextlib.suppress(ConnectionClosed):  # the socket is going: the next one subscribes it
                    self._send_subscribe(self._socket, connection)

    async def unsubscribe(self, connection: Connection[Any]) -> None:
        self.connections.pop(connection.subscription_id, None)
        self._send_quietly({"type": "unsubscribe", "id": connection.subscription_id})
        async with self._lifecycle:
            if not self.connections:  # checked again here: a subscribe may have come in meanwhile
                await self._close()

    async def close(self, reason: str = "closed by the client") -> None:
        """Close the socket and every subscription on it."""
        async with self._lifecycle:
            await self._close(reason)

    async def _close(self, reason: str = "closed by the client") -> None:
        self._closing = True
        if self._socket is not None:
            with contextlib.suppress(Exception):
                await self._socket.close(CloseCode.NORMAL_CLOSURE, "client closing")
        if self._runner is not None and self._runner is not asyncio.current_task():
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for connection in list(self.connections.values()):
            connection._closed(reason)
        self.connections.clear()

    # -- the connection loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        last_error: BaseException | None = None
        while not self._closing and self.connections:
            if failures:
                if failures > self.options.connection_max_retry:
                    self._give_up(last_error)
                    return
                delay = retry_delay(failures, self.options)
                for connection in list(self.connections.values()):
                    connection._on_reconnecting(failures, delay)
                await asyncio.sleep(delay)
            self._acknowledged = False
            try:
                await self._session()
                failures = 0
            except _Fatal as exc:
                self._give_up(exc.error)
                return
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError, MedstreamError) as exc:
                # A socket that was up and subscribed starts the retry count afresh when it drops.
                failures = 1 if self._acknowledged else failures + 1
                last_error = exc
                self.transport.fail_over()  # with several server URLs, the next attempt goes to another node
                log.info("event stream to %s lost (%s); retry %s", self.url, exc, failures)
            finally:
                self._socket = None
                for connection in self.connections.values():
                    connection._on_disconnected()

    def _give_up(self, error: BaseException | None) -> None:
        reason = f"connection lost after {self.options.connection_max_retry} retries: {error}"
        # The SDK raises its own errors: a socket error (connection refused, reset) becomes UnavailableError.
        exc = error if isinstance(error, MedstreamError) else UnavailableError(reason)
        if exc is not error:
            exc.__cause__ = error
        for connection in list(self.connections.values()):
            connection._on_error(exc)
            connection._closed(exc.message)
        self.connections.clear()

    async def _session(self) -> None:
        """One socket's life: returns when the client closes it, raises when it is lost."""
        token = await self.transport.access_token()
        try:
            socket = await open_event_socket(
                self.url, self._on_message, max_size=_MAX_FRAME_BYTES, open_timeout=10, close_timeout=5
            )
        except InvalidURI as exc:
            raise _Fatal(UnavailableError(f"bad websocket URL {self.url}: {exc}")) from exc
        try:
            if self._held:  # a callback is still behind from the last socket
                socket.pause_reading()
            socket.send(_text({"type": "auth", "token": token, "batch": True}))
            self._sent_token = token
            # Nothing awaits from here to publishing the socket: a subscription added before is sent by this
            # loop, one added after by `subscribe()`, and none twice.
            for connection in list(self.connections.values()):
                self._send_subscribe(socket, connection)
            self._socket = socket
            heartbeat = asyncio.create_task(self._heartbeat(socket))
            try:
                await socket.wait_closed()  # messages meanwhile go to `_on_message`, as they are read
            finally:
                heartbeat.cancel()
        finally:
            socket.abort()  # a no-op once closed; after an error or a cancellation, nothing is left open
        code, reason = socket.close_code, socket.close_reason or ""
        if self._closing:
            return
        if code in _FATAL_CLOSE_CODES:
            status = 400 if code == CloseCode.MALFORMED_MESSAGE else 403
            raise _Fatal(from_payload(status, {"message": reason or _FATAL_CLOSE_CODES[code]}))
        if code == AuthenticationError.close_code:
            await self.transport.access_token()  # renew before the next attempt
        raise socket.close_exc

    def _on_message(self, text: str) -> None:
        """Handle one message of the socket, as `data_received` reads it."""
        if self._closing:
            return  # the client is closing every subscription: what comes now is for nobody
        # Batched frames (asked for at auth) hold several messages, one per line.
        for line in text.split("\n") if "\n" in text else (text,):
            event = parse_event_message(line) if line.startswith(_EVENT_PREFIX) else None
            if event is not None:
                self._handle_event(event)
                continue
            try:
                self._acknowledged |= self._handle(orjson.loads(line))
            except Exception as exc:
                if not self._pass_over_unreadable_event(line, exc):
                    raise  # the socket fails the connection (1011), and the stream resumes before this message

    def _pass_over_unreadable_event(self, line: str, error: Exception) -> bool:
        """An event message of one of these subscriptions that this SDK cannot read (not JSON, an event type it
        does not know, a field missing): the subscription gets `on_error` and goes on after it, as for an entity
        that does not parse. Failing the connection instead would resume before it and meet it again, without
        end. False for any other message."""
        found = _EVENT_HEAD.match(line)
        if found is None:
            return False
        try:
            subscription_id = orjson.loads(found.group(1))  # a JSON string, matched as one
        except orjson.JSONDecodeError:
            return False
        connection = self.connections.get(subscription_id) if isinstance(subscription_id, str) else None
        if connection is None:
            return False
        connection._on_unreadable_event(int(found.group(2)), error)
        return True

    def _send_subscribe(self, socket: EventSocket, connection: Connection[Any]) -> None:
        message: dict[str, Any] = {
            "type": "subscribe",
            "id": connection.subscription_id,
            "entity": connection.entity_type,
            "events": [str(e) for e in connection.event_types],
            "filter": connection.filter_json,
        }
        after, epoch = connection.tracker.resume_point()
        if self.options.resume and after is not None:
            message["after"], message["epoch"] = after, epoch
        socket.send(_text(message))

    def _handle_event(self, event: EventMessage) -> None:
        connection = self.connections.get(event.id)
        if connection is not None:
            connection._on_parsed_event(event.seq, event.event, event.entity_type, event.entity)

    def _handle(self, message: dict[str, Any]) -> bool:
        kind = message.get("type")
        connection = self.connections.get(str(message.get("id")))
        if kind == "event" and connection is not None:
            connection._on_event(int(message["seq"]), str(message["event"]), message["entity"])
        elif kind == "subscribed" and connection is not None:
            connection._on_subscribed(int(message["position"]), str(message["epoch"]))
            return True
        elif kind == "gap" and connection is not None:
            gap = Gap(int(message["from"]), int(message["position"]), str(message.get("reason", "")))
            connection._on_gap(gap, str(message["epoch"]))
        elif kind == "error":
            error = from_payload(400, {"error": message.get("code"), "message": message.get("message")})
            if connection is not None:
                # The server refused this subscription (bad filter, unknown entity): it will not come back.
                self.connections.pop(connection.subscription_id, None)
                connection._on_error(error)
                connection._closed(error.message)
            else:
                for each in self.connections.values():
                    each._on_error(error)
        elif kind == "ping":
            self._send_quietly({"type": "pong"})
        return False

    def _send_quietly(self, message: dict[str, Any]) -> None:
        if self._socket is not None:
            with contextlib.suppress(ConnectionClosed):
                self._socket.send(_text(message))

    def _hold(self, connection: Connection[Any]) -> None:
        """`connection` has `max_pending_events` waiting for its callback: stop reading the socket (the server then
        holds what comes next, or closes the socket as too slow and the SDK resumes) until it catches up."""
        if not self._held and self._socket is not None:
            self._socket.pause_reading()
        self._held.add(connection.subscription_id)

    def _release(self, connection: Connection[Any]) -> None:
        """`connection` has caught up (or closed): read the socket again unless another is still behind."""
        self._held.discard(connection.subscription_id)
        if not self._held and self._socket is not None:
            self._socket.resume_reading()

    async def _heartbeat(self, socket: EventSocket) -> None:
        """Ping the server, renew the token before it expires, and drop a socket that went silent."""
        interval = self.options.heartbeat_ms / 1000
        with contextlib.suppress(ConnectionClosed):  # the session sees the socket closed, and says why
            while True:
                await asyncio.sleep(interval)
                await self._send_renewed_token(socket, within=interval)
                socket.send(_text({"type": "ping"}))
                pong = socket.ping()
                try:
                    async with asyncio.timeout(2 * interval):
                        await pong
                except TimeoutError:
                    if socket.reading_paused:
                        continue  # the pong waits behind events a slow callback has not let us read yet
                    # Silent this long, it would not answer a closing handshake either: no wait for one.
                    log.info("event stream to %s silent for %.1f s; reconnecting", self.url, 2 * interval)
                    socket.abort(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
                    return

    async def _send_renewed_token(self, socket: EventSocket, within: float) -> None:
        """Send the server a renewed access token when there is one. A renewal that fails or hangs (the
        server's login route down, the network gone) is logged and tried again at the next beat: the heartbeat
        goes on meanwhile, to notice a dead socket, and a socket whose token expires is closed by the server,
        which the reconnection handles (its retries, then `on_error` and `on_closed`)."""
        try:
            async with asyncio.timeout(within):
                token = await self.transport.access_token()
        except (MedstreamError, TimeoutError) as exc:
            log.warning("event stream to %s: renewing the access token failed (%r); trying again", self.url, exc)
            return
        if token != self._sent_token:
            socket.send(_text({"type": "auth", "token": token}))
            self._sent_token = token


def _text(message: dict[str, Any]) -> str:
    return orjson.dumps(message).decode()


class _Fatal(Exception):
    def __init__(self, error: MedstreamError) -> None:
        super().__init__(error.message)
        self.error = error


class EventStreams:
    """The sockets of one MedTechApi: one per distinct SubscriptionOptions."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._streams: dict[SubscriptionOptions, EventStream] = {}

    def stream_for(self, options: SubscriptionOptions) -> EventStream:
        stream = self._streams.get(options)
        if stream is None:
            stream = self._streams[options] = EventStream(self.transport, options)
        return stream

    async def close(self) -> None:
        for stream in list(self._streams.values()):
            await stream.close()
        self._streams.clear()
