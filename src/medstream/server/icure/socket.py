"""`/ws/v2/notification/subscribe`: iCure's notification socket, an adapter over Medstream's dispatcher.

A socket authenticates with its handshake's bearer token (`Authorization` header, or `?jwt=` for browsers),
then carries one subscription: the client's first text frame. The subscription is an ordinary dispatcher
subscription (the same index, access rule and filter evaluation as `/ws/v1/events`) whose sink turns each event
into the entity in iCure's shape, one text frame each, with no envelope. The server sends `ping` every
`ws_heartbeat_seconds`, at most every `MAX_PING_SECONDS` (iCure's clients expect one within 20 s once the first
came), and the client answers `pong`; one silent for `ws_heartbeat_timeout_seconds` is closed (4408).
A rule broken is answered by closing the socket with a code and a reason: iCure's protocol has no error message.

A reconnect gets what it missed: each socket remembers the `seq` of the last event it sent, and a socket that
`icure.reconnects` recognises as the reconnect of one that dropped subscribes after that position, so the
dispatcher replays the matching events written meanwhile before the live ones (docs/icure.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from medstream.access import Actor
from medstream.errors import AuthenticationError, CloseCode, MedstreamError, TooSlowError, ValidationError
from medstream.events.protocol import fit_close_reason, is_event_frame
from medstream.events.subscription import Subscription
from medstream.filters.fields import refuse_encrypted_fields
from medstream.filters.weight import filter_weight
from medstream.icure.mapping import health_element_out, patient_out, service_out
from medstream.icure.reconnects import Left, ReconnectMemory, client_closed_on_purpose, reconnect_key
from medstream.icure.shapes import IcureModel
from medstream.icure.socket import PING, PONG, ParsedSubscription, parse_frame
from medstream.model.common import Entity
from medstream.model.data_sample import DataSample
from medstream.model.entities import KIND_BY_NAME
from medstream.model.healthcare_element import HealthcareElement
from medstream.model.patient import Patient
from medstream.server.actors import ActorValidator
from medstream.server.state import ServerState, state_of

log = logging.getLogger("medstream.icure")

# Under the 20 s after which iCure's clients, once pinged, give a silent socket up.
MAX_PING_SECONDS = 10.0
# How often a socket's user is checked (a logout, a deletion... closes it).
CHECK_SECONDS = 1.0

# Each Medstream entity type served, in iCure's shape.
_SHAPES: dict[str, Callable[[Entity], IcureModel]] = {
    "DataSample": lambda entity: service_out(entity) if isinstance(entity, DataSample) else _wrong(entity),
    "Patient": lambda entity: patient_out(entity) if isinstance(entity, Patient) else _wrong(entity),
    "HealthcareElement": lambda entity: (
        health_element_out(entity) if isinstance(entity, HealthcareElement) else _wrong(entity)
    ),
}


def _wrong(entity: Entity) -> IcureModel:
    raise TypeError(f"no iCure shape for {type(entity).__name__}")


class IcureSocket:
    """One socket: its subscription's sink (a bounded queue of text frames) and its close."""

    def __init__(
        self, websocket: WebSocket, actor: Actor, session: str | None, token_expires: float, queue_size: int
    ) -> None:
        self.websocket = websocket
        self.actor = actor
        self.session = session  # the login session (refresh-token family) of its token, if it names one
        self.token_expires = token_expires
        self.queue_size = queue_size
        self.subscription: Subscription | None = None
        self.weight = 0  # the subscription's filter weight, counted against the user
        self.reconnect_key: str | None = None  # set once subscribed (icure.reconnects)
        self.last_seen = time.monotonic()
        self._queue: deque[tuple[int, str]] = deque()  # (seq, the frame's text)
        self._in_flight = False  # a frame taken from the queue is being written
        self._dropped = False  # an event handed to it was not queued (the socket was closing): never written
        self.lost_events = False  # closed because events of its subscription are gone from the log
        self._sent = 0  # the seq of the last frame written (from the subscription's start)
        self._epoch: str | None = None  # the event log of those seqs; None until the subscription has a start
        self._ready = asyncio.Event()
        self._drained = asyncio.Event()  # set when the queue is at most half full, or the socket is closing
        self.closing: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        # The client's own close: its code and reason (None: the socket ended otherwise, or not yet).
        self.client_close: tuple[int, str] | None = None

    # -- EventSink ---------------------------------------------------------------------------------------

    def deliver(self, frame: bytes) -> None:
        if self.closing.done():
            self._dropped = self._dropped or is_event_frame(frame)
            return
        if not is_event_frame(frame):
            if frame.startswith(b'{"type":"gap"'):
                # Events this subscription should have had are gone (retention): iCure's protocol cannot say so,
                # so the socket closes and the client, reconnecting, re-reads what it needs. Its reconnect goes on
                # live: replaying after the loss would say nothing of it.
                self.lost_events = True
                self.close(CloseCode.TRY_AGAIN_LATER, "events were lost for this subscription: reconnect and re-read")
            return  # `subscribed` has no iCure counterpart
        if len(self._queue) >= self.queue_size:
            self._dropped = True
            self.close(TooSlowError.close_code, "too slow: send queue full")
            return
        try:
            message = orjson.loads(frame)
            kind = KIND_BY_NAME[message["entityType"]]
            text = _SHAPES[kind.name](kind.model.model_validate(message["entity"])).to_icure_json().decode()
            seq = int(message["seq"])
        except Exception:  # called by the dispatcher for every subscriber: this socket alone pays for a surprise
            log.exception("an event could not be shaped for an iCure socket")
            self._dropped = True
            self.close(CloseCode.INTERNAL_ERROR, "internal error")
            return
        self._queue.append((seq, text))
        self._ready.set()

    async def wait_for_room(self) -> int:
        """Wait until at most half the send queue is in use (or the socket is closing); the free room. A replay
        paces itself with this, so a reconnect that missed more events than the queue holds is not "too slow"."""
        while not self.closing.done() and len(self._queue) > self.queue_size // 2:
            self._drained.clear()
            await self._drained.wait()
        return max(1, self.queue_size - len(self._queue))

    def start_at(self, seq: int, epoch: str) -> None:
        """The subscription starts after `seq` of the log `epoch`: where the socket is until it writes a frame."""
        self._sent, self._epoch = seq, epoch

    def left_at(self) -> Left | None:
        """The position up to which every event of the log was handled for this socket: its subscription's
        cursor when everything delivered to it was written to the connection, else the last event written (those
        queued, being written or dropped when it ended were not). None when the subscription never had a start."""
        if self._epoch is None:
            return None
        subscription = self.subscription
        if subscription is not None and not self._queue and not self._in_flight and not self._dropped:
            return Left(max(self._sent, subscription.cursor), self._epoch)
        return Left(self._sent, self._epoch)

    def replay_done(self, task: asyncio.Task[None]) -> None:
        """The replay of a reconnect ended; if it failed (the database is down), the socket closes."""
        if task.cancelled():
            return
        error = task.exception()
        if isinstance(error, MedstreamError):
            self.close(error.close_code, error.message)
        elif error is not None:
            log.error("icure subscription replay failed", exc_info=error)
            self.close(CloseCode.INTERNAL_ERROR, "internal error")

    # -- the socket --------------------------------------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        if not self.closing.done():
            self.closing.set_result((code, fit_close_reason(reason)))
            self._drained.set()

    def send_text(self, text: str) -> None:
        """Queue a frame that is no event (a ping): its seq is the last queued one's, or where the socket is."""
        self._queue.append((self._queue[-1][0] if self._queue else self._sent, text))
        self._ready.set()

    async def write_loop(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                seq, text = self._queue.popleft()
                if len(self._queue) <= self.queue_size // 2:
                    self._drained.set()
                self._in_flight = True
                await self.websocket.send_text(text)
                self._in_flight = False
                self._sent = max(self._sent, seq)

    async def read_loop(self) -> None:
        while True:
            try:
                text = await _receive_text(self.websocket)
            except WebSocketDisconnect as exc:
                self.client_close = (exc.code, exc.reason or "")
                raise
            self.last_seen = time.monotonic()
            if parse_frame(text) != PONG:
                raise ValidationError("one subscription per socket: open another socket for another subscription")

    async def heartbeat(self, interval: float, silence_limit: float, actors: ActorValidator) -> None:
        """Every `interval`, a ping; every tick (at most a second), the checks that close the socket: no pong for
        `silence_limit`, an expired token, or a user that no longer stands (deleted, disabled, its data owner or
        role changed, its sessions ended): as a REST call would be refused, within seconds."""
        tick = min(interval, CHECK_SECONDS)
        last_ping = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if now - self.last_seen > silence_limit:
                self.close(CloseCode.HEARTBEAT_TIMEOUT, "no pong within the heartbeat timeout")
            elif time.time() > self.token_expires:
                self.close(AuthenticationError.close_code, "access token expired: reconnect with a fresh one")
            elif not actors.stands(self.actor):
                try:
                    await actors.check(self.actor)
                except AuthenticationError as exc:
                    self.close(exc.close_code, exc.message)
            if not self.closing.done() and now - last_ping >= interval:
                last_ping = now
                self.send_text(PING)


async def _receive_text(websocket: WebSocket) -> str:
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", CloseCode.NORMAL_CLOSURE), message.get("reason"))
    text: str | None = message.get("text")
    if text is None:
        raise ValidationError("frames are text")
    return text


def _token_of(websocket: WebSocket) -> str:
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    if token and scheme.lower() == "bearer":
        return token
    token = websocket.query_params.get("jwt", "")
    if not token:
        raise AuthenticationError("no bearer token: send the Authorization header (or ?jwt= from a browser)")
    return token


class IcureSockets:
    """The iCure sockets of this node: serving them, counting them, closing them at shutdown, and recognising
    the reconnect of one that dropped (`reconnects`)."""

    def __init__(self, reconnects: ReconnectMemory) -> None:
        self.sockets: set[IcureSocket] = set()
        self.reconnects = reconnects
        self._going_away = False

    @property
    def subscription_count(self) -> int:
        return sum(1 for s in self.sockets if s.subscription is not None)

    def close_all(self) -> None:
        self._going_away = True
        for socket in self.sockets:
            socket.close(CloseCode.GOING_AWAY, "server going away")

    async def serve(self, websocket: WebSocket) -> None:
        await websocket.accept()
        if self._going_away:
            await _close(websocket, CloseCode.GOING_AWAY, "server going away")
            return
        state = state_of(websocket)
        try:
            socket = await self._open(state, websocket)
        except MedstreamError as exc:
            await _close(websocket, exc.close_code, exc.message)
            return
        except WebSocketDisconnect:
            return
        quotas = state.hub.quotas
        try:
            quotas.open_socket(socket.actor.user_id)
        except MedstreamError as exc:
            await _close(websocket, exc.close_code, exc.message)
            return
        self.sockets.add(socket)
        try:
            await self._run(state, socket)
        finally:
            self.sockets.discard(socket)
            quotas.close_socket(socket.actor.user_id)

    async def _open(self, state: ServerState, websocket: WebSocket) -> IcureSocket:
        token = _token_of(websocket)
        claims = state.tokens.decode(token, expected_type="access")
        actor = state.tokens.actor(token)
        await state.actors.check(actor)
        limits = state.hub.limits
        session = claims.get("fam")
        return IcureSocket(
            websocket, actor, session if isinstance(session, str) else None, float(claims["exp"]), limits.send_queue
        )

    async def _subscribe(self, state: ServerState, socket: IcureSocket) -> bool:
        """Read the subscription frame and register it with the dispatcher: after where the socket it reconnects
        left off, or live from the log's head. True when it must replay before it goes live."""
        limits = state.hub.limits
        try:
            async with asyncio.timeout(limits.auth_timeout):
                text = await _receive_text(socket.websocket)
        except TimeoutError:
            raise ValidationError("no subscription in time") from None
        socket.last_seen = time.monotonic()
        parsed = parse_frame(text)
        if not isinstance(parsed, ParsedSubscription):
            raise ValidationError("the first frame must be the subscription")
        if parsed.filter is not None and state.settings.require_encryption:
            refuse_encrypted_fields(parsed.filter)  # as on /ws/v1/events: a filter the server could not evaluate
        weight = filter_weight(parsed.filter, len(parsed.event_types))
        state.hub.quotas.add_subscription(socket.actor.user_id, weight)
        subscription = Subscription(
            id=uuid.uuid4().hex,
            entity_type=parsed.entity_type,
            event_types=parsed.event_types,
            filter=parsed.filter,
            actor=socket.actor,
            sink=socket,
            cursor=0,
        )
        socket.subscription = subscription
        socket.weight = weight
        left: Left | None = None
        if socket.session is not None:
            socket.reconnect_key = reconnect_key(socket.actor.user_id, socket.session, parsed.identity)
            left = self.reconnects.opened(socket.reconnect_key, time.monotonic())
        after, epoch = None, None
        if left is not None:
            after, epoch = left.seq, left.epoch
            socket.start_at(left.seq, left.epoch)  # kept for the next reconnect if the registering fails
        replay = await state.dispatcher.register(subscription, after, epoch)
        # Where the subscription starts: after `left` for a replay, else the head (or where a gap put it).
        socket.start_at(subscription.cursor, state.dispatcher.epoch)
        if left is None:
            log.info("icure subscription %s to %s events", subscription.id, parsed.entity_type)
        elif socket.closing.done():  # the dispatcher could not honour the position (a gap): the socket closes
            log.warning(
                "icure subscription %s reconnects after seq %s of epoch %s, which cannot be replayed: %s",
                subscription.id,
                left.seq,
                left.epoch,
                socket.closing.result()[1],
            )
        else:
            log.info(
                "icure subscription %s to %s events reconnects: replaying after seq %s",
                subscription.id,
                parsed.entity_type,
                left.seq,
            )
        return replay

    async def _run(self, state: ServerState, socket: IcureSocket) -> None:
        tasks: list[asyncio.Task[None]] = []
        limits = state.hub.limits
        try:
            replay = False
            try:
                replay = await self._subscribe(state, socket)
            except MedstreamError as exc:
                socket.close(exc.close_code, exc.message)
            if not socket.closing.done():
                subscription = socket.subscription
                assert subscription is not None
                tasks = [
                    asyncio.create_task(socket.write_loop()),
                    asyncio.create_task(socket.read_loop()),
                    asyncio.create_task(
                        socket.heartbeat(
                            min(limits.heartbeat_interval, MAX_PING_SECONDS), limits.heartbeat_timeout, state.actors
                        )
                    ),
                ]
                waited: set[asyncio.Future[Any]] = {*tasks, socket.closing}
                if replay:  # beside the other tasks: a long replay, paced by the client, must not stop its pongs
                    replaying = asyncio.create_task(state.dispatcher.replay(subscription))
                    replaying.add_done_callback(socket.replay_done)
                    tasks.append(replaying)
                await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
                for task in tasks:
                    if task.done() and not task.cancelled():
                        error = task.exception()
                        if isinstance(error, MedstreamError):
                            socket.close(error.close_code, error.message)
                        elif isinstance(error, WebSocketDisconnect):
                            socket.close(CloseCode.NORMAL_CLOSURE, "closed by the client")
                        elif error is not None:
                            log.error("icure socket failed", exc_info=error)
                            socket.close(CloseCode.INTERNAL_ERROR, "internal error")
        except WebSocketDisconnect:
            socket.close(CloseCode.NORMAL_CLOSURE, "closed by the client")
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            subscription = socket.subscription
            if subscription is not None:
                state.dispatcher.remove(subscription)
                state.hub.quotas.remove_subscription(socket.actor.user_id, socket.weight)
            self._remember(socket)
            if socket.closing.done():
                await _close(socket.websocket, *socket.closing.result())

    def _remember(self, socket: IcureSocket) -> None:
        """Where an ended socket left off, for its reconnect; nothing when its client closed it on purpose, or when
        it was closed for events lost (its client re-reads)."""
        key = socket.reconnect_key
        if key is None:
            return
        closed = socket.client_close
        on_purpose = closed is not None and client_closed_on_purpose(*closed)
        resumable = not on_purpose and not socket.lost_events
        self.reconnects.ended(key, socket.left_at() if resumable else None, time.monotonic())


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state == WebSocketState.CONNECTED and websocket.client_state == WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await websocket.close(code, fit_close_reason(reason))
