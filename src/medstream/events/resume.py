"""Resume logic, both sides: where a subscription starts on the server, and what the client delivers."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class StartKind(StrEnum):
    LIVE = "live"  # no resume point: from the current position on
    REPLAY = "replay"  # replay from the outbox after `after`, then live
    GAP = "gap"  # the resume point cannot be honoured: say so, then live


@dataclass(frozen=True)
class Start:
    kind: StartKind
    after: int  # the cursor the subscription starts from
    reason: str = ""


def plan_start(after: int | None, epoch: str | None, *, log_epoch: str, floor_seq: int, position: int) -> Start:
    """Where a new subscription starts. `position` is the dispatcher's (every event up to it is dispatched),
    `floor_seq` the lowest `seq` still kept by retention (events below it are gone)."""
    if after is None:
        return Start(StartKind.LIVE, position)
    if epoch is not None and epoch != log_epoch:
        return Start(StartKind.GAP, position, f"resume point is from another event log (epoch {epoch})")
    if after > position:
        # `position` is the log's committed head, which every node reads alike: no event past it exists yet. A
        # client that delivered one resumes from a log restored to an earlier state (whose `seq`s will be given
        # to other events) or made its resume point up. Waiting for `after` would be silence, and would skip
        # the events numbered up to it: the client re-syncs from the head instead.
        return Start(StartKind.GAP, position, f"resume point {after} is beyond the log's head ({position})")
    if after < floor_seq - 1:
        return Start(StartKind.GAP, position, f"events after {after} are past the retention (kept from {floor_seq})")
    return Start(StartKind.REPLAY, after)


class DeliveryTracker:
    """Client side of "no duplicate, no hole": remembers the last `seq` accepted and the log's epoch."""

    def __init__(self) -> None:
        self.last_seq: int | None = None
        self.epoch: str | None = None

    def on_subscribed(self, position: int, epoch: str) -> None:
        if self.epoch != epoch:
            self.epoch = epoch
            if self.last_seq is None:
                self.last_seq = position

    def on_gap(self, position: int, epoch: str) -> None:
        """After a gap the client re-syncs by a query and continues from the server's position."""
        self.epoch = epoch
        self.last_seq = position

    def accept(self, seq: int) -> bool:
        """True the first time an event at `seq` arrives in order; False for a duplicate or a replay."""
        if self.last_seq is not None and seq <= self.last_seq:
            return False
        self.last_seq = seq
        return True

    def resume_point(self) -> tuple[int | None, str | None]:
        return self.last_seq, self.epoch
