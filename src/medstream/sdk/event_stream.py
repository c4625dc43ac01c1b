"""EventStream: one websocket carrying many subscriptions, reconnecting and resuming on its own.

It drives the sans-I/O `ClientState` with the socket, the clock and the randomness: after a drop it reconnects
with exponential back-off and jitter, authenticates again, and re-subscribes each subscription after the last
`seq` it received, so nothing is lost and nothing is delivered twice. When the retries run out, every
subscription on it gets `on_error` and `on_closed` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import orjson
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidProxy, InvalidURI

from medstream.errors import CloseCode, MedstreamError, UnavailableError, from_payload
from medstream.events.client_state import (
    FATAL_CLOSE_CODES,
    Action,
    ClientState,
    CloseVerdict,
    GapFound,
    Refused,
    Reply,
    ServerError,
    Subscribed,
)
from medstream.events.protocol import parse_event_message
from medstream.sdk.delivery import Delivery
from medstream.sdk.event_socket import EventSocket, Replies, open_event_socket
from medstream.sdk.subscription_types import SubscriptionOptions
from medstream.sdk.transport import Transport

log = logging.getLogger("medstream.sdk")

_MAX_FRAME_BYTES = 64 * 1024 * 1024
# How an event message starts as Medstream servers write it: those are parsed entity and all in one pass; any
# other message (or an event that does not parse that way) is read as plain JSON.
_ENCRYPTED = '"encryptedSelf":"'
_EVENT_PREFIX = '{"type":"event"'


class EventStream:
    def __init__(self, transport: Transport, options: SubscriptionOptions) -> None:
        self.transport = transport
        self.options = options
        self.state = ClientState(options.retry_policy(), resume=options.resume)
        self.deliveries: dict[str, Delivery[Any]] = {}
        self._socket: EventSocket | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._sent_token: str | None = None
        # Subscriptions whose callbacks are `max_pending_events` behind: while there is any, the socket is not read.
        self._held: set[str] = set()
        # Subscribing and closing take turns: a subscribe that comes while the socket is being closed (its last
        # subscription just closed) waits for the close to end, then opens a new socket.
        self._lifecycle = asyncio.Lock()
        # Closing handshakes of sockets left behind (gone silent, or their session ended by an error): each ends
        # within the close timeout; closing the stream waits for them.
        self._leaving: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return self.transport.base_url.replace("http", "ws", 1) + "/ws/v1/events"

    async def subscribe(self, delivery: Delivery[Any]) -> None:
        async with self._lifecycle:
            self.state.add(delivery.subscription)
            self.deliveries[delivery.subscription.id] = delivery
            if self._runner is None or self._runner.done():
                self._closing = False
                self._runner = asyncio.create_task(self._run(), name="medstream-event-stream")
            elif self._socket is not None:  # a socket that is going sends nothing: the next one subscribes it
                await self._socket.send(_text(self.state.subscribe_message(delivery.subscription)))

    async def unsubscribe(self, subscription_id: str) -> None:
        self.deliveries.pop(subscription_id, None)
        message = self.state.remove(subscription_id)
        if self._socket is not None:
            await self._socket.send(_text(message))
        async with self._lifecycle:
            if not self.deliveries:  # checked again here: a subscribe may have come in meanwhile
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
        if self._leaving:
            await asyncio.wait(self._leaving)
        self._end_all(reason)

    def _end_all(self, reason: str, error: BaseException | None = None) -> None:
        for delivery in list(self.deliveries.values()):
            self.state.remove(delivery.subscription.id)
            if error is not None:
                delivery.failed(error)
            delivery.closed(reason)
        self.deliveries.clear()

    # -- the connection loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closing and self.deliveries:
            try:
                await self._session()
                self.state.on_closed_by_client()
                continue
            except _Fatal as exc:
                self._give_up(exc.error)
                return
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError, MedstreamError) as exc:
                error: BaseException = exc
                self.transport.fail_over()  # with several server URLs, the next attempt goes to another node
            finally:
                self._socket = None
                for delivery in self.deliveries.values():
                    delivery.disconnected()
            if self._closing or not self.deliveries:
                return
            retry = self.state.on_lost(random.random())
            log.info("event stream to %s lost (%s); retry %s", self.url, error, retry and retry.attempt)
            if retry is None:
                self._give_up(error)
                return
            for delivery in list(self.deliveries.values()):
                delivery.reconnecting(retry.attempt, retry.delay)
            await asyncio.sleep(retry.delay)

    def _give_up(self, error: BaseException) -> None:
        reason = f"connection lost after {self.options.connection_max_retry} retries: {error}"
        # The SDK raises its own errors: a socket error (connection refused, reset) becomes UnavailableError.
        exc = error if isinstance(error, MedstreamError) else UnavailableError(reason)
        if exc is not error:
            exc.__cause__ = error
        self._end_all(exc.message, exc)

    async def _session(self) -> None:
        """One socket's life: returns when the client closes it, raises when it is lost."""
        token = await self.transport.access_token()
        try:
            socket = await open_event_socket(
                self.url, self._on_message, max_size=_MAX_FRAME_BYTES, open_timeout=10, close_timeout=5
            )
        except (InvalidURI, InvalidProxy) as exc:
            raise _Fatal(UnavailableError(f"bad websocket URL or proxy for {self.url}: {exc}")) from exc
        leaving = (CloseCode.INTERNAL_ERROR, "client error")  # how the socket is closed if the session fails
        try:
            if self._held:  # a callback is still behind from the last socket
                socket.hold()
            # Nothing awaits from the opening messages to publishing the socket: a subscription added before is
            # sent by this loop, one added after by `subscribe()`, and none twice. Each `send` writes its frame
            # before it awaits anything, so the auth message goes first.
            opening = self.state.opening(token)
            self._socket = socket
            for message in opening:
                await socket.send(_text(message))
            self._sent_token = token
            reader = asyncio.create_task(socket.run(), name="medstream-event-socket")
            heartbeat = asyncio.create_task(self._heartbeat(socket), name="medstream-heartbeat")
            try:
                done, _ = await asyncio.wait({reader, heartbeat}, return_when=asyncio.FIRST_COMPLETED)
                silent = heartbeat in done and heartbeat.result()
                if not silent:
                    await reader  # the connection is closed: the reader hands over what it had read before
            finally:
                reader.cancel()
                heartbeat.cancel()
            if silent:
                # Silent this long, it would not answer a closing handshake either: the next socket opens now,
                # and this one is dropped when its close timeout is over.
                leaving = (CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
                seconds = 2 * self.options.heartbeat_ms / 1000
                log.info("event stream to %s silent for %.1f s; reconnecting", self.url, seconds)
                raise TimeoutError(f"no answer from the server for {seconds:.1f} s")
        finally:
            if not socket.is_closed:  # after an error, a cancellation or a silence, nothing is left open
                if self._closing:
                    leaving = (CloseCode.NORMAL_CLOSURE, "client closing")
                closing = socket.begin_close(*leaving)
                self._leaving.add(closing)
                closing.add_done_callback(self._leaving.discard)
        code, reason = socket.close_code, socket.close_reason or ""
        if self._closing:
            return
        verdict = self.state.on_close(code)
        if verdict is CloseVerdict.FATAL:
            status = 400 if code == CloseCode.MALFORMED_MESSAGE else 403
            raise _Fatal(from_payload(status, {"message": reason or FATAL_CLOSE_CODES.get(code or 0, "refused")}))
        if verdict is CloseVerdict.RENEW_TOKEN:
            # The token the socket sent was refused: the next attempt sends another, even one not near its expiry
            # (a session ended by a logout, a password or a role change).
            await self.transport.renewed_token(self._sent_token)
        raise socket.close_exc

    def _on_message(self, text: str) -> Replies:
        """Handle one message of the socket, as it is read; what to answer the server, if anything."""
        if self._closing:
            return None  # the client is closing every subscription: what comes now is for nobody
        replies: list[str] | None = None
        deliveries = self.deliveries
        # Batched frames (asked for at auth) hold several messages, one per line.
        for line in text.split("\n") if "\n" in text else (text,):
            # An encrypted entity is decrypted before it is validated, so its message is read as plain JSON.
            event = parse_event_message(line) if line.startswith(_EVENT_PREFIX) and _ENCRYPTED not in line else None
            if event is not None:  # handled here, with no call more than it needs: this is the path of every event
                delivery = deliveries.get(event.id)
                if delivery is not None:
                    delivery.parsed_event(event.seq, event.event, event.entity_type, event.entity)
                continue
            try:
                reply = self._handle(orjson.loads(line))
            except Exception as exc:
                if not self._pass_over_unreadable_event(line, exc):
                    raise  # the socket fails the connection (1011), and the stream resumes before this message
                continue
            if reply is not None:
                replies = [reply] if replies is None else [*replies, reply]
        return replies

    def _pass_over_unreadable_event(self, line: str, error: Exception) -> bool:
        """An event message of one of these subscriptions that this SDK cannot read (not JSON, an event type it
        does not know, a field missing): the subscription gets `on_error` and goes on after it, as for an entity
        that does not parse. False for any other message."""
        found = self.state.unreadable_event(line)
        delivery = None if found is None else self.deliveries.get(found[0].id)
        if found is None or delivery is None:
            return False
        delivery.unreadable_event(found[1], error)
        return True

    def _handle(self, message: dict[str, Any]) -> str | None:
        """Act on one message; the reply to send, if any."""
        if message.get("type") == "event":
            delivery = self.deliveries.get(str(message.get("id")))
            if delivery is not None:
                delivery.event(int(message["seq"]), str(message["event"]), message["entity"])
            return None
        action = self.state.on_message(message)
        return None if action is None else self._act(action)

    def _act(self, action: Action) -> str | None:
        """Carry out what the connection state decided; the reply to send, if any."""
        if isinstance(action, Reply):
            return _text(action.message)
        if isinstance(action, ServerError):
            error = from_payload(400, {"error": action.code, "message": action.message})
            for each in list(self.deliveries.values()):
                each.failed(error)
            return None
        delivery = self.deliveries.get(action.subscription.id)
        if delivery is None:
            return None
        if isinstance(action, Subscribed):
            delivery.subscribed(action.position)
        elif isinstance(action, GapFound):
            delivery.gap(action.gap)
        elif isinstance(action, Refused):
            # The server refused this subscription (bad filter, unknown entity): it will not come back.
            refusal = from_payload(400, {"error": action.code, "message": action.message})
            self.deliveries.pop(delivery.subscription.id, None)
            delivery.failed(refusal)
            delivery.closed(refusal.message)
        return None

    def hold(self, subscription_id: str) -> None:
        """The subscription has `max_pending_events` waiting for its callback: stop reading the socket (the server
        then holds what comes next, or closes the socket as too slow and the SDK resumes) until it catches up."""
        if not self._held and self._socket is not None:
            self._socket.hold()
        self._held.add(subscription_id)

    def release(self, subscription_id: str) -> None:
        """The subscription has caught up (or closed): read the socket again unless another is still behind."""
        self._held.discard(subscription_id)
        if not self._held and self._socket is not None:
            self._socket.release()

    async def _heartbeat(self, socket: EventSocket) -> bool:
        """Ping the server and renew the token before it expires. Returns True when the socket has gone silent
        (no pong within two heartbeats while the socket was read), False once it is closed."""
        interval = self.options.heartbeat_ms / 1000
        with contextlib.suppress(ConnectionClosed):  # the reader sees the socket closed, and the session says why
            while True:
                await asyncio.sleep(interval)
                token = await self._renewed_token(within=interval)
                try:
                    # Sending is in the time allowed too: on a dead network the write buffer fills, and stays full.
                    async with asyncio.timeout(2 * interval):
                        if token is not None and await socket.send(_text({"type": "auth", "token": token})):
                            self._sent_token = token
                        await socket.send(_text({"type": "ping"}))
                        await (await socket.ping())
                except TimeoutError:
                    if socket.held:
                        continue  # the pong waits behind events a slow callback has not let us read yet
                    return True
        return False

    async def _renewed_token(self, within: float) -> str | None:
        """A renewed access token to send the server, if there is one. A renewal that fails or hangs (the server's
        login route down, the network gone) is logged and tried again at the next beat: the heartbeat goes on
        meanwhile, to notice a dead socket, and a socket whose token expires is closed by the server, which the
        reconnection handles (its retries, then `on_error` and `on_closed`)."""
        try:
            async with asyncio.timeout(within):
                token = await self.transport.access_token()
        except (MedstreamError, TimeoutError) as exc:
            log.warning("event stream to %s: renewing the access token failed (%r); trying again", self.url, exc)
            return None
        return None if token == self._sent_token else token


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
