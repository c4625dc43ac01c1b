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


MAX_EPOCH_LENGTH = 64  # as a subscribe message may carry it


@dataclass(frozen=True, slots=True)
class Position:
    """A place in one event log: every event up to `seq` of the log `epoch`. What a client stores to resume from
    after a restart; its text form, `str(position)`, is `"<seq>@<epoch>"`, read back by `Position.parse`."""

    seq: int
    epoch: str

    def __post_init__(self) -> None:
        if isinstance(self.seq, bool) or not isinstance(self.seq, int) or self.seq < 0:
            raise ValueError(f"a position's seq is an integer from 0 up, not {self.seq!r}")
        if not isinstance(self.epoch, str) or not 0 < len(self.epoch) <= MAX_EPOCH_LENGTH:
            raise ValueError(f"a position's epoch is 1 to {MAX_EPOCH_LENGTH} characters, not {self.epoch!r}")

    def __str__(self) -> str:
        return f"{self.seq}@{self.epoch}"

    @classmethod
    def parse(cls, text: str) -> Position:
        """The position `str(position)` wrote; ValueError saying what is wrong for any other text."""
        seq, at, epoch = text.partition("@")
        if not at or not seq.isascii() or not seq.isdigit():
            raise ValueError(f"a position reads <seq>@<epoch>, not {text!r}")
        return cls(int(seq), epoch)


class DeliveryTracker:
    """Client side of "no duplicate, no hole": remembers the last `seq` accepted and the log's epoch, from
    `start` (a position stored by an earlier run) if there is one."""

    def __init__(self, start: Position | None = None) -> None:
        self.last_seq: int | None = None if start is None else start.seq
        self.epoch: str | None = None if start is None else start.epoch

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
