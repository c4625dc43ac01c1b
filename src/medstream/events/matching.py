"""Matching an event to subscriptions: which ones it goes to, and the frame each of them gets. Pure, on the
dispatcher's hottest path (about 1-3 us per event, however many subscriptions it does not match).

A subscription receives an event when the event is past its cursor, of an event type it wants, readable by it
(`Subscription.wants`: its data owner is among the event's readers, or it is an admin) and matched by its filter.
The subscription index narrows the subscriptions to look at; an `EventView` computes what they look at once per
event, however many look: the entity parsed from the stored JSON (only if a filter or the index needs it), and
the frame, serialised once (each subscription's copy only splices in its id).
"""

from __future__ import annotations

from collections.abc import Iterable

from medstream.events.index import IndexKey, SubscriptionIndex
from medstream.events.protocol import EventFrameTemplate, gap_frame
from medstream.events.subscription import Subscription
from medstream.events.types import EntityEvent
from medstream.filters.index import entity_index_values
from medstream.filters.matcher import matches
from medstream.model.common import Entity
from medstream.model.entities import KIND_BY_NAME


class EventView:
    """An event plus what matching needs, computed at most once however many subscriptions look at it."""

    __slots__ = ("_entity", "_frame", "event")

    def __init__(self, event: EntityEvent, entity: Entity | None = None) -> None:
        self.event = event
        self._entity = entity
        self._frame: EventFrameTemplate | None = None

    @property
    def entity(self) -> Entity:
        if self._entity is None:
            self._entity = KIND_BY_NAME[self.event.entity_type].model.model_validate_json(self.event.document)
        return self._entity

    def values_of(self, key: IndexKey) -> frozenset[object]:
        """The event's values under an index key (`SubscriptionIndex.candidates` asks for them)."""
        if key == "id":
            return frozenset({self.event.entity_id})
        if key == "reader":
            return frozenset(self.event.readers)
        return entity_index_values(self.entity, key)

    def frame_for(self, subscription: Subscription) -> bytes | None:
        """The frame to send, or None when the subscription does not want this event."""
        event = self.event
        if event.seq <= subscription.cursor or not subscription.wants(event.event_type, event.readers):
            return None
        if subscription.filter is not None and not matches(subscription.filter, self.entity):
            return None
        if self._frame is None:
            self._frame = EventFrameTemplate(event.seq, event.event_type, event.entity_type, event.document)
        return self._frame.for_subscription(subscription.id)


def deliver(view: EventView, subscription: Subscription) -> bool:
    """Hand the event to `subscription`'s sink if it wants it, and move its cursor past it; whether it did."""
    frame = view.frame_for(subscription)
    if frame is None:
        return False
    subscription.sink.deliver(frame)
    subscription.cursor = view.event.seq
    subscription.delivered += 1
    return True


def dispatch_event(index: SubscriptionIndex, event: EntityEvent, entity: Entity | None = None) -> int:
    """Hand a live event to every live subscription of `index` that wants it; to how many. `entity` is the event's
    entity when the caller already holds it parsed (a write committed by this process), else it is parsed on
    demand."""
    view = EventView(event, entity)
    delivered = 0
    for subscription in index.candidates(event.entity_type, event.event_type, view.values_of):
        if subscription.live and deliver(view, subscription):
            delivered += 1
    return delivered


def replay_event(event: EntityEvent, subscription: Subscription) -> bool:
    """Hand one event of the log to a subscription catching up, which has seen the log up to it: the log holds
    every entity type, the subscription wants one. Whether it was delivered."""
    delivered = event.entity_type == subscription.entity_type and deliver(EventView(event), subscription)
    subscription.cursor = max(subscription.cursor, event.seq)
    return delivered


def skip_to(subscription: Subscription, position: int, epoch: str, reason: str) -> None:
    """Tell a subscription that the events after its cursor up to `position` cannot be delivered (a `gap`), and
    move its cursor there."""
    subscription.sink.deliver(gap_frame(subscription.id, subscription.cursor, position, epoch, reason))
    subscription.cursor = position


def skip_live_to(subscriptions: Iterable[Subscription], position: int, epoch: str, reason: str) -> None:
    """`skip_to` for every live subscription whose cursor is before `position` (the log lost events that no
    live subscription received)."""
    for subscription in subscriptions:
        if subscription.live and subscription.cursor < position:
            skip_to(subscription, position, epoch, reason)
