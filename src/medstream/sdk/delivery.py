"""Delivery: one subscription's events through its callback, and its lifecycle through its handlers.

The event stream hands it what the socket brings (events, acknowledgements, gaps, losses); it runs the callback
one event at a time, in `seq` order, and the handlers (`connected`, `closed`, `error`, `reconnecting`, `gap`).
An exception in the callback goes to the `error` handlers and the log, and delivery goes on.

An encrypted entity is decrypted before the callback (`decryptor`): at once when the keys at hand suffice,
otherwise while the event waits its turn in the queue (the exchange data it needs is fetched). An event that
cannot be decrypted goes, in its turn, to the `error` handlers as a `DecryptionError` naming its `seq`, and
delivery goes on.

A lifecycle handler may be a plain function, which runs as its moment comes, or a coroutine function, whose
coroutines run one after the other, in the order their moments came: an async `closed` handler never starts
before the async `connected` handler fired ahead of it has finished.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pydantic import ValidationError as PydanticValidationError

from medstream.crypto.encrypted_self import ENCRYPTED_SELF
from medstream.errors import DecryptionError, MedstreamError
from medstream.events.client_state import Gap, SubscriptionState
from medstream.events.resume import Position
from medstream.events.types import EventType
from medstream.model.common import Entity
from medstream.sdk.subscription_types import SubscriptionEvent

log = logging.getLogger("medstream.sdk")

E = TypeVar("E", bound=Entity)
AnyCallback = Callable[..., Any]
HANDLER_NAMES = ("connected", "closed", "error", "reconnecting", "gap")


@dataclass(frozen=True)
class _Started:
    """What a callback run as its event was read returned: the delivery task awaits it before the next event."""

    awaitable: Awaitable[Any]
    event: SubscriptionEvent[Any]


@dataclass(frozen=True)
class _Decrypting:
    """An event whose entity is being decrypted (its keys fetched): delivered in its turn once that is done."""

    task: asyncio.Future[Entity]
    seq: int
    event_type: EventType
    entity_type: str
    epoch: str


@dataclass(frozen=True)
class _Failed:
    """An event that could not be decrypted, or whose decrypted entity does not parse: its error goes to the
    `error` handlers in its turn."""

    error: MedstreamError


class Decryptor(Protocol):
    """What a subscription of a kind with encrypted fields decrypts its events with."""

    def decrypt_now(self, wire: Mapping[str, Any]) -> Entity | None:
        """The entity of this wire dict, decrypted and validated; None when keys must be fetched first;
        DecryptionError when it cannot be decrypted."""
        ...

    async def decrypt(self, wire: Mapping[str, Any]) -> Entity:
        """The entity of this wire dict, decrypted and validated, fetching the keys it needs; DecryptionError when
        it cannot be decrypted."""
        ...


@dataclass(frozen=True)
class _Reached:
    """A position the delivery reaches once every event queued before it has gone through the callback."""

    position: Position


def arity(callback: AnyCallback) -> int:
    """How many positional arguments `callback` takes (2 for *args)."""
    try:
        parameters = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return 1
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return 2
    return sum(1 for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


class Delivery(Generic[E]):
    """One subscription's queue, callback and handlers. `hold(id)` asks the stream to stop reading the socket
    while `max_pending` events wait for the callback; `release(id)` to read it again."""

    def __init__(
        self,
        subscription: SubscriptionState,
        model: type[E],
        callback: Callable[..., Awaitable[None] | None],
        *,
        max_pending: int,
        hold: Callable[[str], None],
        release: Callable[[str], None],
        decryptor: Decryptor | None = None,
    ) -> None:
        self.subscription = subscription
        self.tracker = subscription.tracker
        self.entity_type = subscription.entity_type
        self._model = model
        self._callback = callback
        self._decryptor = decryptor
        self._callback_arity = arity(callback)  # once: inspecting it for every event was a tenth of the SDK's CPU
        self._handlers: dict[str, list[AnyCallback]] = {name: [] for name in HANDLER_NAMES}
        # Unbounded: the bound is kept by the stream, which stops reading the socket while this is full (`hold`).
        self._queue: asyncio.Queue[SubscriptionEvent[E] | _Started | _Reached | _Decrypting | _Failed] = asyncio.Queue()
        # A plain function runs as the event is read when nothing is ahead of it; a coroutine function always
        # runs in the delivery task.
        self._inline = not inspect.iscoroutinefunction(callback)
        self._busy = False  # the delivery task is running a callback
        self._max_pending = max(1, max_pending)
        self._hold, self._release = hold, release
        self._holding = False
        self._worker = asyncio.create_task(self._deliver_loop(), name=f"medstream-subscription-{subscription.id}")
        self.is_connected = False
        self.is_closed = False
        self.close_reason: str | None = None
        self.last_error: BaseException | None = None
        # The last event through the callback, or a position reached without one (the start, a gap): `position`.
        self._reached: SubscriptionEvent[E] | Position | None = subscription.start
        self._settled = asyncio.Event()  # set once connected or closed
        # Gaps that came before any `gap` handler was added: one found at subscribing (a `resume_from` past the
        # retention, or of another event log) comes with the acknowledgement, before the caller can add one.
        self._unheard_gaps: list[Gap] = []
        # The awaitables lifecycle handlers returned, run in turn: the last one's task. Held here, as the event loop
        # keeps only weak references to tasks; each task holds the one before it until that one is done.
        self._handler_tail: asyncio.Task[None] | None = None

    @property
    def position(self) -> Position | None:
        """Every event up to here has gone through the callback (or needs not: it is before the start)."""
        reached = self._reached
        return reached.position if isinstance(reached, SubscriptionEvent) else reached

    def add_handler(self, name: str, handler: AnyCallback) -> None:
        """Add a lifecycle handler; `connected` and `closed` fire at once if their moment has come, and the first
        `gap` handler at once with each gap that came before it."""
        self._handlers[name].append(handler)
        if name == "gap":
            unheard, self._unheard_gaps = self._unheard_gaps, []
            for gap in unheard:
                self._fire_one(handler, gap)
        elif name == "connected" and self.is_connected:
            self._fire_one(handler)
        elif name == "closed" and self.is_closed:
            self._fire_one(handler, self.close_reason)

    # -- what the socket brings ---------------------------------------------------------------------------

    def subscribed(self, position: Position) -> None:
        if self._reached is None:
            self._reached = position
        self.is_connected = True
        self._settled.set()
        self._fire("connected")

    def event(self, seq: int, event_type: str, entity: dict[str, Any]) -> None:
        """An event read as plain JSON: its entity is decrypted, when it is encrypted and this subscription
        decrypts, then parsed here, in one validation."""
        if self._decryptor is not None and entity.get(ENCRYPTED_SELF) is not None:
            kind = EventType(event_type)  # an event type this SDK does not know fails before its seq is taken
            if self.is_closed or not self.tracker.accept(seq):
                return
            self._decrypt(seq, kind, entity)
            return
        try:
            parsed = self._model.model_validate(entity)
        except Exception as exc:
            if not self.is_closed and self.tracker.accept(seq):
                self._fire("error", MedstreamError(f"event {seq}: entity does not parse: {exc}"))
            return
        self.parsed_event(seq, EventType(event_type), self.entity_type, parsed)

    def unreadable_event(self, seq: int, error: Exception) -> None:
        """An event message at `seq` that could not be read at all: said once, and passed over."""
        if not self.is_closed and self.tracker.accept(seq):
            self._fire("error", MedstreamError(f"event {seq}: the message cannot be read: {error}"))

    def parsed_event(self, seq: int, event_type: EventType, entity_type: str, entity: Entity) -> None:
        """Queue the event for the callback; at `max_pending` queued, the socket stops being read."""
        if entity_type != self.entity_type or not isinstance(entity, self._model):
            self._fire("error", MedstreamError(f"event {seq}: a {entity_type} on a {self.entity_type} subscription"))
            return
        if self.is_closed or not self.tracker.accept(seq):
            return
        if self._decryptor is not None and entity.encrypted_self is not None:
            self._decrypt(seq, event_type, entity.to_json_dict())
            return
        self._queue_event(seq, event_type, entity)

    def _decrypt(self, seq: int, event_type: EventType, wire: Mapping[str, Any]) -> None:
        """Decrypt an accepted event's entity and queue it: at once when the keys at hand suffice, in its turn
        after they are fetched otherwise; its error, in its turn, when it cannot be decrypted or parsed."""
        assert self._decryptor is not None
        try:
            decrypted = self._decryptor.decrypt_now(wire)
        except DecryptionError as exc:
            self._undecryptable(seq, exc)
            return
        except PydanticValidationError as exc:
            self._fail_in_turn(MedstreamError(f"event {seq}: decrypted entity does not parse: {exc}"))
            return
        if decrypted is None:
            task = asyncio.ensure_future(self._decryptor.decrypt(wire))
            self._queue.put_nowait(_Decrypting(task, seq, event_type, self.entity_type, self.tracker.epoch or ""))
            self._hold_if_full()
            return
        self._queue_event(seq, event_type, decrypted)

    def _queue_event(self, seq: int, event_type: EventType, entity: Entity) -> None:
        queue = self._queue
        epoch = self.tracker.epoch or ""
        event: SubscriptionEvent[E] = SubscriptionEvent(event_type, seq, self.entity_type, entity, epoch)  # type: ignore[arg-type]
        if self._inline and not self._busy and queue.empty():
            self._deliver_now(event)
            return
        queue.put_nowait(event)
        self._hold_if_full()

    def _undecryptable(self, seq: int, exc: DecryptionError) -> None:
        self._fail_in_turn(DecryptionError(f"event {seq}: {exc.message}", seq=seq))

    def _fail_in_turn(self, error: MedstreamError) -> None:
        if not self._busy and self._queue.empty():
            self._fire("error", error)
        else:
            self._queue.put_nowait(_Failed(error))

    def _hold_if_full(self) -> None:
        queue = self._queue
        if not self._holding and queue.qsize() >= self._max_pending:
            self._holding = True
            self._hold(self.subscription.id)

    def gap(self, gap: Gap) -> None:
        if self._busy or not self._queue.empty():
            self._queue.put_nowait(_Reached(gap.resume_from))  # after the events of before the gap
        else:
            self._reached = gap.resume_from
        if not self._handlers["gap"]:
            self._unheard_gaps.append(gap)
        self._fire("gap", gap)

    def disconnected(self) -> None:
        self.is_connected = False

    def reconnecting(self, attempt: int, delay: float) -> None:
        self._fire("reconnecting", attempt, delay)

    def failed(self, error: BaseException) -> None:
        self.last_error = error
        self._fire("error", error)

    def closed(self, reason: str) -> None:
        if self.is_closed:
            return
        self.is_closed = True
        self.is_connected = False
        self.close_reason = reason
        self._settled.set()
        if self._worker is not asyncio.current_task():  # a callback closing its own subscription runs to its end
            self._worker.cancel()
        while not self._queue.empty():  # nothing more is delivered
            item = self._queue.get_nowait()
            if isinstance(item, _Started) and inspect.iscoroutine(item.awaitable):
                item.awaitable.close()  # never to be awaited: said so, rather than warned about when collected
            elif isinstance(item, _Decrypting):
                item.task.cancel()
            self._queue.task_done()
        if self._holding:
            self._holding = False
            self._release(self.subscription.id)
        self._fire("closed", reason)

    # -- delivering ---------------------------------------------------------------------------------------

    def _deliver_now(self, event: SubscriptionEvent[E]) -> None:
        """Run the callback as the event is read, sparing the switch to the delivery task; an awaitable it returns
        goes to that task, and the events after it queue behind it."""
        try:
            result = self._callback(*(event.entity, event)[: self._callback_arity])
        except Exception as exc:
            log.exception("subscription %s: callback failed on seq %s", self.subscription.id, event.seq)
            self._fire("error", exc)
            result = None
        if result is not None and inspect.isawaitable(result):
            self._queue.put_nowait(_Started(result, event))
        else:
            self._reached = event

    async def _deliver_loop(self) -> None:
        while not self.is_closed:
            item = await self._queue.get()
            self._busy = True
            try:
                await self._deliver(item)
            finally:
                self._busy = False
                self._queue.task_done()
            # Read the socket again once the callback is half way through its backlog, not at each event.
            if self._holding and self._queue.qsize() <= self._max_pending // 2:
                self._holding = False
                self._release(self.subscription.id)

    async def _deliver(self, item: SubscriptionEvent[E] | _Started | _Reached | _Decrypting | _Failed) -> None:
        if isinstance(item, _Reached):
            self._reached = item.position
            return
        if isinstance(item, _Failed):
            self._fire("error", item.error)
            return
        if isinstance(item, _Decrypting):
            try:
                entity = await item.task
            except DecryptionError as exc:
                self._fire("error", DecryptionError(f"event {item.seq}: {exc.message}", seq=item.seq))
                return
            except MedstreamError as exc:  # the keys could not be fetched (the server unreachable...)
                self._fire("error", DecryptionError(f"event {item.seq}: keys not fetched: {exc}", seq=item.seq))
                return
            except PydanticValidationError as exc:
                self._fire("error", MedstreamError(f"event {item.seq}: decrypted entity does not parse: {exc}"))
                return
            item = SubscriptionEvent(item.event_type, item.seq, item.entity_type, entity, item.epoch)  # type: ignore[arg-type]
        event = item if isinstance(item, SubscriptionEvent) else item.event
        try:
            if isinstance(item, SubscriptionEvent):
                result = self._callback(*(item.entity, item)[: self._callback_arity])
                if inspect.isawaitable(result):
                    await result
            else:
                await item.awaitable
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("subscription %s: callback failed on seq %s", self.subscription.id, event.seq)
            self._fire("error", exc)
        self._reached = event

    async def wait_established(self) -> None:
        """Wait for the first acknowledgement; raise the error if the subscription ended before it."""
        await self._settled.wait()
        if self.is_closed and not self.is_connected and self.last_error is not None:
            raise self.last_error

    async def wait_delivered(self) -> None:
        """Wait until every event received so far has gone through the callback."""
        if not self.is_closed:
            await self._queue.join()

    # -- lifecycle handlers -------------------------------------------------------------------------------

    def _fire(self, name: str, *args: Any) -> None:
        for handler in list(self._handlers[name]):
            self._fire_one(handler, *args)

    def _fire_one(self, handler: AnyCallback, *args: Any) -> None:
        try:
            result = handler(*args[: arity(handler)])
        except Exception:
            log.exception("subscription %s: handler failed", self.subscription.id)
            return
        if inspect.isawaitable(result):
            self._run_in_turn(result)

    def _run_in_turn(self, awaitable: Awaitable[Any]) -> None:
        """Await `awaitable` once every awaitable of a handler fired before it is done."""
        task = asyncio.ensure_future(_after(self._handler_tail, awaitable))
        self._handler_tail = task
        task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        if self._handler_tail is task:
            self._handler_tail = None
        if not task.cancelled() and task.exception() is not None:
            log.error("subscription %s: handler failed", self.subscription.id, exc_info=task.exception())


async def _after(previous: asyncio.Task[None] | None, awaitable: Awaitable[Any]) -> None:
    if previous is not None:
        await asyncio.wait([previous])  # however it ended: its failure is its own, logged when it ended
    await awaitable
