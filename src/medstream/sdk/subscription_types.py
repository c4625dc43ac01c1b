"""The values a subscription is made with and hands out: its options, its events, and positions to resume from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from medstream.events.client_state import Gap, RetryPolicy
from medstream.events.resume import Position
from medstream.events.types import EventType
from medstream.model.common import Entity

E = TypeVar("E", bound=Entity)

__all__ = ["Gap", "Position", "SubscriptionEvent", "SubscriptionOptions"]


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

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            self.connection_max_retry,
            self.connection_retry_interval_ms / 1000,
            self.connection_retry_max_interval_ms / 1000,
        )


@dataclass(frozen=True)  # not slots=True: with Generic, that makes each event slower to build
class SubscriptionEvent(Generic[E]):
    """What happened: the event type, its place in the event log (`seq` of the log `epoch`: `position`, to store
    for resuming after it), and the entity after the write."""

    type: EventType
    seq: int
    entity_type: str
    entity: E
    epoch: str

    @property
    def position(self) -> Position:
        """Where this event is: pass it (or its text form) as `resume_from` to get every event after it."""
        return Position(self.seq, self.epoch)
