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
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from medstream.errors import AuthenticationError, MedstreamError, UnavailableError, from_payload
from medstream.events.protocol import EventMessage, parse_event_message
from medstream.sdk.connection import Connection, Gap, SubscriptionOptions
from medstream.sdk.transport import Transport

log = logging.getLogger("medstream.sdk")

# Close codes after which reconnecting cannot help: the server refused what this client sends.
_FATAL_CLOSE_CODES = {4003: "forbidden", 4400: "malformed message", 1009: "message too big"}
_MAX_FRAME_BYTES = 64 * 1024 * 1024
# How an event message starts as Medstream servers write it: those are parsed entity and all in one pass; any
# other message (or an event that does not parse that way) is read as plain JSON.
_EVENT_PREFIX = '{"type":"event"'


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
        self._socket: ClientConnection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._sent_token: str | None = None
        self._acknowledged = False
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
                    await self._send_subscribe(self._socket, connection)

    async def unsubscribe(self, connection: Connection[Any]) -> None:
        self.connections.pop(connection.subscription_id, None)
        await self._send_quietly({"type": "unsubscribe", "id": connection.subscription_id})
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
                await self._socket.close(1000, "client closing")
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
            socket = await connect(self.url, max_size=_MAX_FRAME_BYTES, open_timeout=10, close_timeout=5)
        except InvalidURI as exc:
            raise _Fatal(UnavailableError(f"bad websocket URL {self.url}: {exc}")) from exc
        async with socket:
            await socket.send(_text({"type": "auth", "token": token, "batch": True}))
            self._sent_token = token
            # No await between taking the list and publishing the socket: a subscription added before is sent
            # by this loop, one added after by `subscribe()`, and none twice.
            pending = list(self.connections.values())
            self._socket = socket
            for connection in pending:
                await self._send_subscribe(socket, connection)
            heartbeat = asyncio.create_task(self._heartbeat(socket))
            try:
                async for raw in socket:
                    # Batched frames (asked for at auth) hold several messages, one per line.
                    lines = raw.split("\n") if isinstance(raw, str) and "\n" in raw else (raw,)
                    for line in lines:
                        is_event = isinstance(line, str) and line.startswith(_EVENT_PREFIX)
                        event = parse_event_message(line) if is_event else None
                        if event is not None:
                            await self._handle_event(event)
                        else:
                            self._acknowledged |= await self._handle(orjson.loads(line))
            except ConnectionClosed:
                pass
            finally:
                heartbeat.cancel()
            code, reason = socket.close_code, socket.close_reason or ""
            if self._closing:
                return
            if code in _FATAL_CLOSE_CODES:
                raise _Fatal(
                    from_payload(400 if code == 4400 else 403, {"message": reason or _FATAL_CLOSE_CODES[code]})
                )
            if code == AuthenticationError.close_code:
                await self.transport.access_token()  # renew before the next attempt
            raise socket.close_exc

    async def _send_subscribe(self, socket: ClientConnection, connection: Connection[Any]) -> None:
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
        await socket.send(_text(message))

    async def _handle_event(self, event: EventMessage) -> None:
        connection = self.connections.get(event.id)
        if connection is not None:
            await connection._on_parsed_event(event.seq, event.event, event.entity_type, event.entity)

    async def _handle(self, message: dict[str, Any]) -> bool:
        kind = message.get("type")
        connection = self.connections.get(str(message.get("id")))
        if kind == "event" and connection is not None:
            await connection._on_event(int(message["seq"]), str(message["event"]), message["entity"])
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
            await self._send_quietly({"type": "pong"})
        return False

    async def _send_quietly(self, message: dict[str, Any]) -> None:
        if self._socket is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._socket.send(_text(message))

    async def _heartbeat(self, socket: ClientConnection) -> None:
        """Ping the server, renew the token before it expires, and drop a socket that went silent."""
        interval = self.options.heartbeat_ms / 1000
        while True:
            await asyncio.sleep(interval)
            token = await self.transport.access_token()
            if token != self._sent_token:
                await socket.send(_text({"type": "auth", "token": token}))
                self._sent_token = token
            await socket.send(_text({"type": "ping"}))
            pong = socket.ping()
            try:
                async with asyncio.timeout(2 * interval):
                    await pong
            except TimeoutError:
                log.info("event stream to %s silent for %.1f s; reconnecting", self.url, 2 * interval)
                await socket.close(4408, "heartbeat timeout")
                return


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
