"""The websocket endpoint `/ws/v1/events`: one socket, many subscriptions (docs/protocol.md).

Each connection has a bounded send queue drained by its own writer task, so a slow consumer only ever
fills its own queue; when it overflows, the connection is closed with 4429 and the client resumes later.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from medstream.access import Actor
from medstream.errors import AuthenticationError, CloseCode, MedstreamError, TooSlowError, ValidationError
from medstream.events.protocol import (
    PING_FRAME,
    PONG_FRAME,
    AuthMessage,
    PingMessage,
    SubscribeMessage,
    UnsubscribeMessage,
    batch_frames,
    error_frame,
    fit_close_reason,
    is_event_frame,
    parse_client_message,
    unsubscribed_frame,
)
from medstream.events.subscription import Subscription
from medstream.filters.fields import refuse_encrypted_fields
from medstream.filters.parse import parse_filter
from medstream.filters.weight import filter_weight
from medstream.model.entities import KIND_BY_NAME
from medstream.server.actors import SESSION_ENDED, ActorValidator
from medstream.server.dispatcher import Dispatcher
from medstream.server.security import TokenIssuer
from medstream.server.uvicorn_protocols import SEND_NOW
from medstream.server.ws_limits import Quotas, WebSocketLimits

log = logging.getLogger("medstream.websocket")


class ClientConnection:
    """One authenticated socket: its subscriptions, its send queue and its writer."""

    def __init__(
        self,
        websocket: WebSocket,
        actor: Actor,
        token_expires: float,
        limits: WebSocketLimits,
        *,
        batch: bool = False,
        dropped: Counter[str] | None = None,
    ) -> None:
        self.websocket = websocket
        self.batch = batch  # the client reads several messages per frame (docs/protocol.md)
        self.actor = actor
        self.token_expires = token_expires
        self.limits = limits
        self.subscriptions: dict[str, Subscription] = {}
        self.filter_bytes: dict[str, int] = {}  # each subscription's filter weight, counted against the user
        self.last_seen = time.monotonic()
        self._queue: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self._drained = asyncio.Event()  # set when the queue is at most half full, or the socket is closing
        # Done once the socket is to close: a future rather than an Event waited on by a task of its own.
        self.closing: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.close_reason: tuple[int, str] | None = None
        # Event messages never sent, by why: "too_slow" (this socket closed with 4429), "closed" (any other close)
        self.dropped: Counter[str] = Counter() if dropped is None else dropped
        self.tasks: set[asyncio.Task[None]] = set()
        self.last_ping = 0.0
        # The server's protocol can send a frame at once (server/uvicorn_protocols.py): queued frames then go out in
        # a callback at the end of this turn of the event loop, all that are waiting in one batched frame,
        # instead of through the writer task and the ASGI send. The writer task takes over whenever the socket
        # cannot take a frame without waiting, and while it holds frames nothing overtakes them.
        self._send_now: Callable[[bytes], bool] | None = websocket.scope.get("extensions", {}).get(SEND_NOW)
        self._loop = asyncio.get_running_loop()
        self._flush_soon = False
        self._writing = False

    @property
    def queued(self) -> int:
        """Messages waiting in the send queue."""
        return len(self._queue)

    def deliver(self, frame: bytes) -> None:
        if self.close_reason is not None:
            self._count_dropped((frame,))
            return
        if len(self._queue) >= self.limits.send_queue and self._send_now is not None and not self._writing:
            # A burst (a batch whose events reach this socket once per matching subscription) fills the queue in
            # one turn of the loop, before the end-of-turn flush: hand the socket what it takes now. Only what
            # it cannot take counts against it.
            self._flush()
        if len(self._queue) >= self.limits.send_queue:
            self.close_soon(TooSlowError.close_code, "too slow: send queue full; resume from your last seq")
            self._count_dropped((frame,))
            return
        self._queue.append(frame)
        if self._send_now is None or self._writing:
            self._ready.set()
        elif not self._flush_soon:
            self._flush_soon = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Send what is queued now, as far as the socket takes it without waiting; the writer task the rest."""
        self._flush_soon = False
        send_now = self._send_now
        assert send_now is not None
        while self._queue and self.close_reason is None and not self._writing:
            frame = self._next_frame()
            if not send_now(frame):
                self._queue.appendleft(frame)  # as it was: a batched frame is still one frame's worth
                break
        if len(self._queue) <= self.limits.send_queue // 2:
            self._drained.set()
        if self._queue:
            self._ready.set()

    def close_soon(self, code: int, reason: str, *, flush: bool = False) -> None:
        """Ask the writer to close the socket once; frames queued after this are dropped. Frames already queued
        are dropped too (a slow consumer), or sent before the close with `flush` (a client that broke a rule)."""
        if self.close_reason is None:
            self.close_reason = (code, fit_close_reason(reason))
            if not flush:
                self.discard_queue()
            self._ready.set()
            self._drained.set()
            if not self.closing.done():
                self.closing.set_result(None)

    def discard_queue(self) -> None:
        """Drop what waits in the send queue (the socket is closing, or gone), counting the events among it."""
        self._count_dropped(self._queue)
        self._queue.clear()

    def _count_dropped(self, frames: Iterable[bytes]) -> None:
        events = sum(1 for frame in frames if is_event_frame(frame))
        if events:
            too_slow = self.close_reason is not None and self.close_reason[0] == TooSlowError.close_code
            self.dropped["too_slow" if too_slow else "closed"] += events

    def on_task_done(self, task: asyncio.Task[None]) -> None:
        """A subscription's replay ended; if it failed (the database is down), close the socket."""
        self.tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if isinstance(error, MedstreamError):
            self.close_soon(error.close_code, error.message)
        elif error is not None:
            log.error("subscription replay failed", exc_info=error)
            self.close_soon(CloseCode.INTERNAL_ERROR, "internal error")

    async def wait_for_room(self) -> int:
        """Wait until at most half the send queue is in use (or the socket is closing); the free room. A replay
        paces itself with this, so resuming with more missed events than the queue holds is not "too slow"."""
        limit = self.limits.send_queue
        while self.close_reason is None and len(self._queue) > limit // 2:
            self._drained.clear()
            await self._drained.wait()
        return max(1, limit - len(self._queue))

    async def send_queued(self) -> None:
        """Send what is left in the queue (after a close with `flush`)."""
        while self._queue:
            await self.websocket.send_text(self._next_frame().decode())

    def _next_frame(self) -> bytes:
        return batch_frames(self._queue) if self.batch else self._queue.popleft()

    async def write_loop(self) -> None:
        while self.close_reason is None:
            await self._ready.wait()
            self._ready.clear()
            self._writing = True
            try:
                while self._queue and self.close_reason is None:
                    # Only the decoded text stays referenced while idle: frames from orjson.dumps (the acks) keep
                    # a 4 KB allocation whatever their length, which an idle socket would otherwise hold on to.
                    text = self._next_frame().decode()
                    if len(self._queue) <= self.limits.send_queue // 2:
                        self._drained.set()
                    await self.websocket.send_text(text)
            finally:
                self._writing = False

    def heartbeat(self, now: float, wall_now: float) -> None:
        """One tick of the heartbeat (the hub ticks every connection at once): ping a silent client, drop one
        silent for too long, close a socket whose token expired."""
        if self.close_reason is not None:
            return
        if now - self.last_seen > self.limits.heartbeat_timeout:
            self.close_soon(CloseCode.HEARTBEAT_TIMEOUT, "no message within the heartbeat timeout")
        elif wall_now > self.token_expires:
            self.close_soon(AuthenticationError.close_code, "access token expired: send a fresh auth message")
        elif now - max(self.last_seen, self.last_ping) > self.limits.heartbeat_interval:
            self.last_ping = now  # once per interval of silence, not at every tick
            self.deliver(PING_FRAME)


class EventHub:
    """Every open connection of this node, for counting and for closing them all on shutdown."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        tokens: TokenIssuer,
        actors: ActorValidator,
        limits: WebSocketLimits,
        *,
        require_encryption: bool = False,
    ) -> None:
        self.dispatcher = dispatcher
        self.require_encryption = require_encryption  # subscriptions may not filter on encrypted fields
        self.tokens = tokens
        self.actors = actors
        self.limits = limits
        self.quotas = Quotas(limits)
        self.connections: set[ClientConnection] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._going_away: tuple[int, str] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self.closes: Counter[int] = Counter()  # sockets this node closed, by close code (/health)
        self.dropped: Counter[str] = Counter()  # event messages never sent, by why (ClientConnection.dropped)

    async def _heartbeat_loop(self) -> None:
        """One task ticks every connection's heartbeat: a task per connection, each waking every second, cost
        10,000 idle connections about 35% of a core (bench.connections) and a task's memory each."""
        while self.connections:
            await asyncio.sleep(min(self.limits.heartbeat_interval, 1.0))
            now, wall_now = time.monotonic(), time.time()
            for connection in list(self.connections):
                connection.heartbeat(now, wall_now)

    @property
    def subscription_count(self) -> int:
        return sum(len(c.subscriptions) for c in self.connections)

    def revalidate_user(self, user_id: str) -> None:
        """A user was written: re-check the sockets it holds (a deleted or changed user's close with 4001)."""
        for connection in [c for c in self.connections if c.actor.user_id == user_id]:
            task = asyncio.create_task(self._revalidate(connection))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def end_sessions(self, generations: Mapping[str, int]) -> None:
        """These users' sessions were ended (each is at its generation now): their sockets of older sessions close
        with 4001. One pass over the sockets, however many users."""
        for connection in self.connections:
            actor = connection.actor
            generation = generations.get(actor.user_id)
            if generation is not None and actor.session < generation:
                connection.close_soon(AuthenticationError.close_code, SESSION_ENDED)

    async def _revalidate(self, connection: ClientConnection) -> None:
        try:
            await self.actors.check(connection.actor)
        except AuthenticationError as exc:
            connection.close_soon(exc.close_code, exc.message)

    def close_all(self, code: int = CloseCode.GOING_AWAY, reason: str = "server going away") -> None:
        """Close every socket, and refuse new ones the same way from now on (the node is shutting down)."""
        self._going_away = (code, reason)
        for connection in self.connections:
            connection.close_soon(code, reason)

    async def serve(self, websocket: WebSocket) -> None:
        await websocket.accept()
        if self._going_away is not None:
            await _close(websocket, *self._going_away)
            return
        connection: ClientConnection | None = None
        try:
            connection = await self._authenticate_counted(websocket)
            self.quotas.open_socket(connection.actor.user_id)
            self.connections.add(connection)
            if self._heartbeat is None or self._heartbeat.done():
                # The hub's task, not the socket's that happens to start it: none of that socket's context (its
                # connection id on log lines, server/request_ids.py).
                self._heartbeat = asyncio.create_task(
                    self._heartbeat_loop(), name="medstream-ws-heartbeat", context=contextvars.Context()
                )
            await self._run(connection)
        except MedstreamError as exc:
            self.closes[exc.close_code] += 1
            await _close(websocket, exc.close_code, exc.message)
        except WebSocketDisconnect:
            pass
        finally:
            if connection is not None and connection in self.connections:
                connection.discard_queue()
                self.connections.discard(connection)
                for subscription_id in list(connection.subscriptions):
                    self._drop(connection, subscription_id)
                self.quotas.close_socket(connection.actor.user_id)
                for task in list(connection.tasks):
                    task.cancel()

    async def _authenticate_counted(self, websocket: WebSocket) -> ClientConnection:
        """`_authenticate`, counted against the peer's address while it waits: the bound on sockets that hold
        the server's memory without a user to count it against."""
        peer = websocket.client.host if websocket.client is not None else ""
        self.quotas.open_unauthenticated(peer)
        try:
            return await self._authenticate(websocket)
        finally:
            self.quotas.close_unauthenticated(peer)

    def _drop(self, connection: ClientConnection, subscription_id: str) -> None:
        """Remove a subscription of `connection`, if it has one of that id, and uncount it."""
        subscription = connection.subscriptions.pop(subscription_id, None)
        if subscription is not None:
            self.dispatcher.remove(subscription)
            self.quotas.remove_subscription(connection.actor.user_id, connection.filter_bytes.pop(subscription_id))

    async def _authenticate(self, websocket: WebSocket) -> ClientConnection:
        try:
            async with asyncio.timeout(self.limits.auth_timeout):
                data = await _receive(websocket)
        except TimeoutError:
            raise AuthenticationError("no auth message in time") from None
        try:
            message = parse_client_message(data)
        except ValidationError as exc:
            raise AuthenticationError(f"the first message must be auth: {exc.message}") from None
        if not isinstance(message, AuthMessage):
            raise AuthenticationError("the first message must be auth")
        actor, expires = await self._check_token(message.token)
        return ClientConnection(websocket, actor, expires, self.limits, batch=message.batch, dropped=self.dropped)

    async def _check_token(self, token: str) -> tuple[Actor, float]:
        claims = self.tokens.decode(token, expected_type="access")
        actor = self.tokens.actor(token)
        await self.actors.check(actor)
        return actor, float(claims["exp"])

    async def _run(self, connection: ClientConnection) -> None:
        writer = asyncio.create_task(connection.write_loop())
        reader = asyncio.create_task(self._read_loop(connection))
        tasks = (reader, writer)
        try:
            await asyncio.wait({writer, reader, connection.closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        error = reader.exception() if reader.done() and not reader.cancelled() else None
        if isinstance(error, MedstreamError):
            connection.close_soon(error.close_code, error.message, flush=True)
        elif error is not None and not isinstance(error, WebSocketDisconnect):
            log.error("websocket reader failed", exc_info=error)
            connection.close_soon(CloseCode.INTERNAL_ERROR, "internal error")
        if connection.close_reason is not None:
            self.closes[connection.close_reason[0]] += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    with contextlib.suppress(Exception):
                        await connection.send_queued()
                    await _close(connection.websocket, *connection.close_reason)

    async def _read_loop(self, connection: ClientConnection) -> None:
        while connection.close_reason is None:
            data = await _receive(connection.websocket)
            connection.last_seen = time.monotonic()
            message = parse_client_message(data)
            if isinstance(message, SubscribeMessage):
                await self._subscribe(connection, message)
            elif isinstance(message, UnsubscribeMessage):
                self._drop(connection, message.id)
                connection.deliver(unsubscribed_frame(message.id))
            elif isinstance(message, PingMessage):
                connection.deliver(PONG_FRAME)
            elif isinstance(message, AuthMessage):
                actor, expires = await self._check_token(message.token)
                if actor != connection.actor:
                    raise AuthenticationError("a socket stays with the user that opened it")
                connection.token_expires = expires

    async def _subscribe(self, connection: ClientConnection, message: SubscribeMessage) -> None:
        if message.id in connection.subscriptions:
            connection.deliver(error_frame("duplicate_subscription", f"subscription {message.id!r} exists", message.id))
            return
        if len(connection.subscriptions) >= self.limits.subscriptions:
            # Named first, so that a client (the SDK) fails this subscription rather than send it again forever.
            refused = TooSlowError(f"at most {self.limits.subscriptions} subscriptions per connection")
            connection.deliver(error_frame(refused.code, refused.message, message.id))
            raise refused
        kind = KIND_BY_NAME.get(message.entity)
        if kind is None:
            known = ", ".join(KIND_BY_NAME)
            connection.deliver(
                error_frame("unknown_entity", f"unknown entity {message.entity!r}; known: {known}", message.id)
            )
            return
        try:
            event_filter = parse_filter(message.filter, kind.name) if message.filter is not None else None
            if event_filter is not None and self.require_encryption:
                refuse_encrypted_fields(event_filter)
        except ValidationError as exc:
            connection.deliver(error_frame(exc.code, exc.message, message.id))
            return
        weight = filter_weight(event_filter, len(set(message.events)))
        try:
            self.quotas.add_subscription(connection.actor.user_id, weight)
        except TooSlowError as exc:  # the user's other subscriptions go on: only this one is refused
            connection.deliver(error_frame(exc.code, exc.message, message.id))
            return
        connection.filter_bytes[message.id] = weight
        subscription = Subscription(
            id=message.id,
            entity_type=kind.name,
            event_types=frozenset(message.events),
            filter=event_filter,
            actor=connection.actor,
            sink=connection,
            cursor=0,
        )
        connection.subscriptions[message.id] = subscription
        if await self.dispatcher.register(subscription, message.after, message.epoch):
            # The replay runs beside the read loop: a long replay, paced by the client, must not stop this
            # socket's pings and unsubscribes from being read.
            task = asyncio.create_task(self.dispatcher.replay(subscription))
            connection.tasks.add(task)
            task.add_done_callback(connection.on_task_done)


async def _receive(websocket: WebSocket) -> str | bytes:
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", CloseCode.NORMAL_CLOSURE), message.get("reason"))
    text: str | None = message.get("text")
    return text if text is not None else message.get("bytes") or b""


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state == WebSocketState.CONNECTED and websocket.client_state == WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await websocket.close(code, fit_close_reason(reason))


__all__ = ["ClientConnection", "EventHub", "WebSocketLimits"]
