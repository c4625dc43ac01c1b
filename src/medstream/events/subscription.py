"""A subscription as the server holds it: who, what, which filter, and how far it has been delivered."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from medstream.access import Actor
from medstream.events.types import EventType
from medstream.filters.tree import Filter


class EventSink(Protocol):
    """Where a subscription's frames go (a websocket connection's bounded send queue)."""

    def deliver(self, frame: bytes) -> None: ...

    async def wait_for_room(self) -> int:
        """Wait until the sink can take more frames without overflowing; how many it can take (at least 1).
        A replay paces itself with it; live dispatch never waits for one sink."""
        ...


@dataclass(eq=False)
class Subscription:
    """One client subscription. `cursor` is the last `seq` handled for it: delivered, or seen and not
    matching. While `live` is False it is catching up from the outbox and the dispatcher leaves it alone."""

    id: str
    entity_type: str
    event_types: frozenset[EventType]
    filter: Filter | None
    actor: Actor
    sink: EventSink
    cursor: int
    live: bool = False
    removed: bool = False  # unsubscribed or its socket closed; a replay in progress stops
    delivered: int = field(default=0)

    def wants(self, event_type: EventType, readers: frozenset[str]) -> bool:
        """The checks that need no entity: event type and the access rule."""
        return event_type in self.event_types and self.actor.can_read(readers)
