"""Connection: the handle of one subscription, as in the Medtech SDK, plus what it lacks.

`on_connected`, `on_closed`, `on_error`, `on_reconnecting` and `on_gap` are chainable. The callback receives
the entity and, when it takes a second parameter, the `SubscriptionEvent` with its type and `seq`. Callbacks
run one at a time, in `seq` order; an exception in one goes to `on_error` and the log, and the subscription
goes on.

A lifecycle handler may be a plain function, which runs as its moment comes, or a coroutine function, whose
coroutines run one after the other, in the order their moments came: an async `on_closed` never starts before
the async `on_connected` fired ahead of it has finished. So a coroutine handler that never returns holds back
every one after it, as a callback that never returns holds back the events after it: start long work as a task of
your own.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from medstream.errors import MedstreamError
from medstream.events.resume import DeliveryTracker
from medstream.events.types import EventType
from medstream.model.common import Entity

if TYPE_CHECKING:
    from medstream.sdk.event_stream import EventStream

log = logging.getLogger("medstream.sdk")

E = TypeVar("E", bound=Entity)
AnyCallback = Callable[..., Any]


@dataclass(frozen=True)
class SubscriptionOptions:
    """How a subscription's socket behaves. Subscriptions with equal options share one socket."""

    connection_max_retry: int = 5
    connection_retry_interval_ms: int = 1000  # the first delay; it doubles at each retry, with jitter, capped
    connection_retry_max_interval_ms: int = 30_000
    heartbeat_ms: int = 20_000  # ping the server this often; silence for 3x this means a dead socket
    resume: bool = True  # resume after the last delivered seq on reconnect
    # Events received but not yet through a subscription's callback. Past this the socket is not read until the
    # callback catches up, so a slow callback holds back the server (which may close the socket as too slow,
    # 4429, and the SDK then resumes) instead of growing memory without bound.
    max_pending_events: int = 1_000


@dataclass(frozen=True)
class SubscriptionEvent(Generic[E]):
    """What happened: the event type, its position in the event log, and the entity after the write."""

    type: EventType
    seq: int
    entity_type: str
    entity: E


@dataclass(frozen=True)
class _Started:
    """What a callback run as its event was read returned: the delivery task awaits it before the next event."""

    awaitable: Awaitable[Any]
    seq: int


@dataclass(frozen=True)
class Gap:
    """Events after `from_seq` could not be replayed (past retention, or another event log): re-sync by a query.
    Delivery goes on from `position`."""

    from_seq: int
    position: int
    reason: str


def _arity(callback: AnyCallback) -> int:
    try:
        parameters = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return 1
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return 2
    return sum(1 for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


async def _call(callback: AnyCallback, *args: Any, arity: int | None = None) -> None:
    """Call with as many arguments as the callback takes (`arity`, if known); await it if it returns an
    awaitable."""
    result = callback(*args[: _arity(callback) if arity is None else arity])
    if inspect.isawaitable(result):
        await result


class Connection(Generic[E]):
    """One live subscription. Close it with `await connection.close()`."""

    def __init__(
        self,
        stream: EventStream,
        subscription_id: str,
        entity_type: str,
        model: type[E],
        event_types: list[EventType],
        filter_json: dict[str, Any] | None,
        callback: Callable[..., Awaitable[None] | None],
    ) -> None:
        self.subscription_id = subscription_id
        self.entity_type = entity_type
        self.event_types = event_types
        self.filter_json = filter_json
        self.tracker = DeliveryTracker()
        self._stream = stream
        self._model = model
        self._callback = callback
        self._callback_arity = _arity(callback)  # once: inspecting it for every event was a tenth of the SDK's CPU
        self._handlers: dict[str, list[AnyCallback]] = {
            k: [] for k in ("connected", "closed", "error", "reconnecting", "gap")
        }
        # Unbounded: the bound is kept by the stream, which stops reading the socket while this is full (`_hold`).
        self._queue: asyncio.Queue[SubscriptionEvent[E] | _Started] = asyncio.Queue()
        # A plain function runs as the event is read when nothing is ahead of it; a coroutine function always
        # runs in the delivery task.
        self._inline = not inspect.iscoroutinefunction(callback)
        self._busy = False  # the delivery task is running a callback
        self._max_pending = max(1, stream.options.max_pending_events)
        self._holding = False
        self._worker = asyncio.create_task(self._deliver_loop(), name=f"medstream-subscription-{subscription_id}")
        self.is_connected = False
        self.is_closed = False
        self.close_reason: str | None = None
        self.last_error: BaseException | None = None
        self._settled = asyncio.Event()  # set once connected or closed
        # The awaitables lifecycle handlers returned, run in turn: the last one's task. Held here, as the event loop
        # keeps only weak references to tasks; each task holds the one before it until that one is done.
        self._handler_tail: asyncio.Task[None] | None = None

    # -- the Medtech interface, chainable ----------------------------------------------------------------

    def on_connected(self, callback: AnyCallback) -> Connection[E]:
        """Called each time the subscription is (re)established; at once if it already is."""
        self._handlers["connected"].append(callback)
        if self.is_connected:
            self._fire_one(callback)
        return self

    def on_closed(self, callback: AnyCallback) -> Connection[E]:
        """Called once, when the subscription ends, with the reason; at once if it already has."""
        self._handlers["closed"].append(callback)
        if self.is_closed:
            self._fire_one(callback, self.close_reason)
        return self

    def on_error(self, callback: AnyCallback) -> Connection[E]:
        """Called with each error: a failing callback, a refused subscription, a lost connection."""
        self._handlers["error"].append(callback)
        return self

    def on_reconnecting(self, callback: AnyCallback) -> Connection[E]:
        """Called before each reconnection attempt, with the attempt number and the delay in seconds."""
        self._handlers["reconnecting"].append(callback)
        return self

    def on_gap(self, callback: AnyCallback) -> Connection[E]:
        """Called with a `Gap` when missed events cannot be replayed."""
        self._handlers["gap"].append(callback)
        return self

    async def close(self) -> None:
        """Unsubscribe and stop; `on_closed` fires once."""
        if not self.is_closed:
            await self._stream.unsubscribe(self)
            self._closed("closed by the client")

    # -- driven by the event stream ---------------------------------------------------------------------

    def _on_subscribed(self, position: int, epoch: str) -> None:
        self.tracker.on_subscribed(position, epoch)
        self.is_connected = True
        self._settled.set()
        self._fire("connected")

    def _on_event(self, seq: int, event_type: str, entity: dict[str, Any]) -> None:
        """Queue the event for the callback; at `max_pending_events` queued, the socket stops being read."""
        try:
            parsed = self._model.model_validate(entity)
        except Exception as exc:
            if not self.is_closed and self.tracker.accept(seq):
                self._fire("error", MedstreamError(f"event {seq}: entity does not parse: {exc}"))
            return
        self._on_parsed_event(seq, EventType(event_type), self.entity_type, parsed)

    def _on_unreadable_event(self, seq: int, error: Exception) -> None:
        """An event message at `seq` that could not be read at all: said once, and passed over."""
        if not self.is_closed and self.tracker.accept(seq):
            self._fire("error", MedstreamError(f"event {seq}: the message cannot be read: {error}"))

    def _on_parsed_event(self, seq: int, event_type: EventType, entity_type: str, entity: Entity) -> None:
        """`_on_event` for an entity already parsed (its type checked against this subscription's)."""
        if entity_type != self.entity_type or not isinstance(entity, self._model):
            self._fire("error", MedstreamError(f"event {seq}: a {entity_type} on a {self.entity_type} subscription"))
            return
        if self.is_closed or not self.tracker.accept(seq):
            return
        queue = self._queue
        event = SubscriptionEvent(event_type, seq, self.entity_type, entity)
        if self._inline and not self._busy and queue.empty():
            self._deliver_now(event)
            return
        queue.put_nowait(event)
        if not self._holding and queue.qsize() >= self._max_pending:
            self._holding = True
            self._stream._hold(self)

    def _on_gap(self, gap: Gap, epoch: str) -> None:
        self.tracker.on_gap(gap.position, epoch)
        self._fire("gap", gap)

    def _on_disconnected(self) -> None:
        self.is_connected = False

    def _on_reconnecting(self, attempt: int, delay: float) -> None:
        self._fire("reconnecting", attempt, delay)

    def _on_error(self, error: BaseException) -> None:
        self.last_error = error
        self._fire("error", error)

    def _closed(self, reason: str) -> None:
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
            self._queue.task_done()
        if self._holding:
            self._holding = False
            self._stream._release(self)
        self._fire("closed", reason)

    def _deliver_now(self, event: SubscriptionEvent[E]) -> None:
        """Run the callback as the event is read, sparing the switch to the delivery task; an awaitable it returns
        goes to that task, and the events after it queue behind it."""
        try:
            result = self._callback(*(event.entity, event)[: self._callback_arity])
        except Exception as exc:
            log.exception("subscription %s: callback failed on seq %s", self.subscription_id, event.seq)
            self._fire("error", exc)
            return
        if result is not None and inspect.isawaitable(result):
            self._queue.put_nowait(_Started(result, event.seq))

    async def _deliver_loop(self) -> None:
        while not self.is_closed:
            item = await self._queue.get()
            self._busy = True
            try:
                if isinstance(item, SubscriptionEvent):
                    await _call(self._callback, item.entity, item, arity=self._callback_arity)
                else:
                    await item.awaitable
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("subscription %s: callback failed on seq %s", self.subscription_id, item.seq)
                self._fire("error", exc)
            finally:
                self._busy = False
                self._queue.task_done()
            # Read the socket again once the callback is half way through its backlog, not at each event.
            if self._holding and self._queue.qsize() <= self._max_pending // 2:
                self._holding = False
                self._stream._release(self)

    async def wait_established(self) -> None:
        """Wait for the first acknowledgement; raise the error if the subscription ended before it."""
        await self._settled.wait()
        if self.is_closed and not self.is_connected and self.last_error is not None:
            raise self.last_error

    async def wait_delivered(self) -> None:
        """Wait until every event received so far has gone through the callback (for tests and shutdown)."""
        if not self.is_closed:
            await self._queue.join()

    def _fire(self, name: str, *args: Any) -> None:
        for handler in list(self._handlers[name]):
            self._fire_one(handler, *args)

    def _fire_one(self, handler: AnyCallback, *args: Any) -> None:
        try:
            result = handler(*args[: _arity(handler)])
        except Exception:
            log.exception("subscription %s: handler failed", self.subscription_id)
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
            log.error("subscription %s: handler failed", self.subscription_id, exc_info=task.exception())


async def _after(previous: asyncio.Task[None] | None, awaitable: Awaitable[Any]) -> None:
    if previous is not None:
        await asyncio.wait([previous])  # however it ended: its failure is its own, logged when it ended
    await awaitable
