"""Connection: the handle of one subscription, as in the Medtech SDK, plus what it lacks.

`on_connected`, `on_closed`, `on_error`, `on_reconnecting` and `on_gap` are chainable. The callback receives
the entity and, when it takes a second parameter, the `SubscriptionEvent` with its type, `seq` and `position`.
Callbacks run one at a time, in `seq` order; an exception in one goes to `on_error` and the log, and the
subscription goes on. `position` is how far the callback has got: store it (or each event's `position`) to
resume after it when the application starts again (`resume_from`).

A lifecycle handler may be a plain function, which runs as its moment comes, or a coroutine function, whose
coroutines run one after the other, in the order their moments came: an async `on_closed` never starts before
the async `on_connected` fired ahead of it has finished. So a coroutine handler that never returns holds back
every one after it, as a callback that never returns holds back the events after it: start long work as a task of
your own.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from medstream.events.resume import DeliveryTracker, Position
from medstream.events.types import EventType
from medstream.model.common import Entity
from medstream.sdk.delivery import AnyCallback, Delivery
from medstream.sdk.event_stream import EventStream
from medstream.sdk.subscription_types import Gap, SubscriptionEvent, SubscriptionOptions

E = TypeVar("E", bound=Entity)

__all__ = ["Connection", "Gap", "SubscriptionEvent", "SubscriptionOptions"]


class Connection(Generic[E]):
    """One live subscription. Close it with `await connection.close()`."""

    def __init__(self, stream: EventStream, delivery: Delivery[E]) -> None:
        self._stream = stream
        self._delivery = delivery
        subscription = delivery.subscription
        self.subscription_id = subscription.id
        self.entity_type = subscription.entity_type
        self.event_types = [EventType(t) for t in subscription.event_types]
        self.filter_json = subscription.filter

    @property
    def position(self) -> Position | None:
        """Every event up to here (`seq` of the event log `epoch`) has gone through the callback; None until the
        server has acknowledged the subscription, when it was made with no `resume_from`."""
        return self._delivery.position

    @property
    def tracker(self) -> DeliveryTracker:
        """How far events have been received (the callback may still be behind): where a reconnection resumes."""
        return self._delivery.tracker

    @property
    def is_connected(self) -> bool:
        return self._delivery.is_connected

    @property
    def is_closed(self) -> bool:
        return self._delivery.is_closed

    @property
    def close_reason(self) -> str | None:
        return self._delivery.close_reason

    @property
    def last_error(self) -> BaseException | None:
        return self._delivery.last_error

    # -- the Medtech interface, chainable ----------------------------------------------------------------

    def on_connected(self, callback: AnyCallback) -> Connection[E]:
        """Called each time the subscription is (re)established; at once if it already is."""
        self._delivery.add_handler("connected", callback)
        return self

    def on_closed(self, callback: AnyCallback) -> Connection[E]:
        """Called once, when the subscription ends, with the reason; at once if it already has."""
        self._delivery.add_handler("closed", callback)
        return self

    def on_error(self, callback: AnyCallback) -> Connection[E]:
        """Called with each error: a failing callback, a refused subscription, a lost connection."""
        self._delivery.add_handler("error", callback)
        return self

    def on_reconnecting(self, callback: AnyCallback) -> Connection[E]:
        """Called before each reconnection attempt, with the attempt number and the delay in seconds."""
        self._delivery.add_handler("reconnecting", callback)
        return self

    def on_gap(self, callback: AnyCallback) -> Connection[E]:
        """Called with a `Gap` when missed events cannot be replayed; the first handler added also hears at once of
        the gaps that came before it (one found at subscribing comes with the acknowledgement)."""
        self._delivery.add_handler("gap", callback)
        return self

    async def close(self) -> None:
        """Unsubscribe and stop; `on_closed` fires once."""
        if not self._delivery.is_closed:
            await self._stream.unsubscribe(self.subscription_id)
            self._delivery.closed("closed by the client")

    async def wait_established(self) -> None:
        """Wait for the first acknowledgement; raise the error if the subscription ended before it."""
        await self._delivery.wait_established()

    async def wait_delivered(self) -> None:
        """Wait until every event received so far has gone through the callback (for tests and shutdown)."""
        await self._delivery.wait_delivered()
