"""The dispatcher: reads the outbox in `seq` order and hands each event to the subscriptions that match it
(which ones, and what each receives, is `events.matching`'s to decide).

One per server node. On SQLite, what this process commits comes to it straight from the commit, events
with their positions and parsed entities (`outbox.WrittenEvent`): because positions are dense, an event
whose `seq` follows on from the dispatcher's position is the next event of the log, and needs no read. The
log itself is read when something else wrote in between (a gap in those positions), after a commit whose
events are in the log only (PostgreSQL, where positions are given after commit), when the backend says that
other nodes committed (PostgreSQL's notices, `Backend.listen`), and at every poll of its tail, the safety net
for writes it was not told of (every 50 ms on SQLite, for other processes; every second on PostgreSQL, for a
notice lost with the listening connection). New subscriptions catch up from the outbox
(replay) and then join the live stream with no gap and no duplicate at the seam: the dispatcher skips a
subscription until it is live, and delivers only `seq` above its cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from medstream.errors import MedstreamError
from medstream.events.index import SubscriptionIndex
from medstream.events.matching import dispatch_event, replay_event, skip_live_to, skip_to
from medstream.events.protocol import gap_frame, subscribed_frame
from medstream.events.resume import StartKind, plan_start
from medstream.events.subscription import Subscription
from medstream.events.types import EntityEvent
from medstream.model.common import Entity
from medstream.server.loop_histogram import LoopHistogram
from medstream.store import outbox
from medstream.store.database import Database

log = logging.getLogger("medstream.dispatcher")

_PAGE = 1000


class Dispatcher:
    """Fans the outbox out to subscriptions; `position` is the last `seq` it has dispatched."""

    def __init__(self, database: Database, *, poll_interval: float = 0.05) -> None:
        self.database = database
        self.index = SubscriptionIndex()
        self.poll_interval = poll_interval
        self.position = 0
        self.epoch = ""
        self.floor_seq = 0
        self.log_head = 0  # the log's last position as this node last read it, or committed it (SQLite)
        self.dispatched = 0
        self.dispatch_nanos = 0  # time spent matching and handing out events (for /health and the benchmarks)
        self.delivered_live = 0  # events handed to live subscriptions' sockets, one per subscription (metrics)
        self.delivered_replay = 0  # and to subscriptions catching up from the log
        # Set by the metrics: the time from each event's write to its first delivery, in seconds.
        self.send_delays: LoopHistogram | None = None
        self._wake = asyncio.Event()
        self._written: deque[outbox.WrittenEvent] = deque()  # committed here, not dispatched yet
        self._read_wanted = True  # the log must be read before the dispatcher is up to date
        self._task: asyncio.Task[None] | None = None
        self._user_listeners: list[Callable[[str], None]] = []
        database.on_commit(self._committed)

    def wake(self) -> None:
        """Read the log soon: events committed elsewhere may be in it."""
        self._read_wanted = True
        self._wake.set()

    def _committed(self, published: Sequence[Any]) -> None:
        written = [item for item in published if isinstance(item, outbox.WrittenEvent)]
        if written:
            self._written.extend(written)
            self.log_head = max(self.log_head, written[-1].event.seq)
        else:  # its events, if any, are in the log only (PostgreSQL)
            self._read_wanted = True
        self._wake.set()

    async def start(self) -> None:
        """Start live from the log's current head: earlier events are there for replay."""
        head = await self.database.run_read(outbox.head)
        self.position, self.epoch, self.floor_seq = head.last_seq, head.epoch, head.floor_seq
        self.log_head = head.last_seq
        self._task = asyncio.create_task(self._run(), name="medstream-dispatcher")
        self.database.backend.listen(self.wake)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _tail_and_page(self) -> tuple[outbox.LogHead, list[EntityEvent]]:
        """The log's head and, when it is past `position`, the next page of events: one snapshot, one hop (a
        thread hop on SQLite; on PostgreSQL one statement in autocommit through the driver, which first runs a
        numbering round: the events committed since the last get their positions)."""
        head, events, more = await self.database.backend.tail_and_page(self.position, _PAGE)
        if more:
            self._read_wanted = True  # more events wait for their positions: another round after this page
        return head, events

    async def _run(self) -> None:
        failures = 0
        while True:
            self._wake.clear()
            try:
                await self._drain()
                failures = 0
            except (MedstreamError, OSError, Exception) as exc:  # keep dispatching whatever one read did
                self._read_wanted = True
                failures += 1
                log.warning("dispatcher read failed (%s), retrying: %s", failures, exc)
                await asyncio.sleep(min(0.05 * 2**failures, 2.0))
                continue
            # The poll, when nothing woke it for `poll_interval`: other nodes and processes write too. A timer
            # rather than `wait_for`, which wraps the wait in a task of its own at every wake-up (every write).
            poll = asyncio.get_running_loop().call_later(self.poll_interval, self._poll)
            try:
                await self._wake.wait()
            finally:
                poll.cancel()

    def _poll(self) -> None:
        self._read_wanted = True
        self._wake.set()

    async def _drain(self) -> None:
        while True:
            self._dispatch_written()
            if self._written:  # the next of those does not follow on from `position`: something else wrote first
                self._read_wanted = True
            if not self._read_wanted:
                return
            self._read_wanted = False
            head, events = await self._tail_and_page()
            self.epoch, self.floor_seq, self.log_head = head.epoch, head.floor_seq, head.last_seq
            if head.last_seq <= self.position:
                continue
            if events and events[0].seq > self.position + 1:
                # Positions are dense: a hole means retention trimmed events this node had not dispatched yet.
                self._gap_for_live(events[0].seq - 1, f"events after {self.position} were trimmed by retention")
            for event in events:
                self._dispatch_timed(event, None)
            if head.last_seq > self.position:  # more pages
                self._read_wanted = True
            # else keep what was asked for while this read was in flight: a commit then may not be in it, and
            # must not wait for the next poll
            await asyncio.sleep(0)  # let sockets write between pages

    def _dispatch_written(self) -> None:
        """Dispatch the events committed here that follow on from `position`, without reading the log: positions
        are dense, so the event at `position + 1` is the next one of the log, whoever reads it. Those already
        dispatched from the log are dropped."""
        written = self._written
        while written and written[0].event.seq <= self.position:
            written.popleft()
        while written and written[0].event.seq == self.position + 1:
            item = written.popleft()
            self._dispatch_timed(item.event, item.entity)

    def _dispatch_timed(self, event: EntityEvent, entity: Entity | None) -> None:
        started = time.perf_counter_ns()
        if event.entity_type == "User":
            for listener in self._user_listeners:
                listener(event.entity_id)
        delivered = dispatch_event(self.index, event, entity)
        self.dispatch_nanos += time.perf_counter_ns() - started
        self.position = event.seq
        self.dispatched += 1
        if delivered:
            self.delivered_live += delivered
            if self.send_delays is not None:
                # `created` is the write's time (epoch ms), stamped as the server built it, before its commit.
                self.send_delays.observe(time.time() - event.created / 1000)

    @property
    def lag(self) -> int:
        """Events of the log (as of `log_head`) that this node has not dispatched yet."""
        return max(0, self.log_head - self.position)

    def saw_head(self, last_seq: int) -> None:
        """The log's head was read elsewhere (the metrics' scrape): `lag` counts up to it."""
        self.log_head = max(self.log_head, last_seq)

    def on_user_write(self, listener: Callable[[str], None]) -> None:
        """Call `listener(user_id)` for every write to a user, made through any node (access revocation)."""
        self._user_listeners.append(listener)

    async def register(self, subscription: Subscription, after: int | None, epoch: str | None) -> bool:
        """Acknowledge a subscription and index it; True when it must `replay` before it goes live."""
        # A new subscription starts at the log's committed head, not at how far this node has dispatched: a
        # write that committed before the subscribe (its REST answer already back) is never delivered, whatever
        # the dispatcher's timing. Events between the two are dispatched later and skipped by the cursor.
        # On PostgreSQL such a write's event may still wait for its position: number it first, so that it is below
        # the head read next.
        await outbox.number_committed(self.database)
        position = max(self.position, (await self.database.run_read(outbox.head)).last_seq)
        if subscription.removed:  # unsubscribed while we read the head
            return False
        start = plan_start(after, epoch, log_epoch=self.epoch, floor_seq=self.floor_seq, position=position)
        subscription.cursor = start.after
        subscription.sink.deliver(subscribed_frame(subscription.id, position, self.epoch))
        if start.kind is StartKind.GAP:
            subscription.sink.deliver(gap_frame(subscription.id, after or 0, position, self.epoch, start.reason))
        self.index.add(subscription)
        if start.kind is StartKind.REPLAY:
            return True
        subscription.live = True
        return False

    async def replay(self, subscription: Subscription) -> None:
        """Send a registered subscription the events it missed, then make it live."""
        await self._catch_up(subscription)
        subscription.live = not subscription.removed

    async def _catch_up(self, subscription: Subscription) -> None:
        # No await separates the last "cursor >= position" check from going live (set by the caller), and the
        # dispatcher only moves `position` after handing an event to live subscriptions, so every event is
        # either replayed here or dispatched live, and the cursor drops the ones that are both.
        while subscription.cursor < self.position and not subscription.removed:
            # A page never holds more than the socket's queue can take (one frame is kept for a gap): a replay
            # goes at the client's pace instead of overflowing the queue it shares with live events.
            room = await subscription.sink.wait_for_room()
            page = partial(outbox.read_after, after_seq=subscription.cursor, limit=max(1, min(_PAGE, room - 1)))
            events = await self.database.run_read(page)
            first = events[0].seq if events else self.position + 1
            if first > subscription.cursor + 1:
                # Positions are dense: a hole means retention trimmed what this subscription still needed.
                reason = f"events after {subscription.cursor} were trimmed by retention"
                skip_to(subscription, first - 1, self.epoch, reason)
            for event in events:
                if replay_event(event, subscription):
                    self.delivered_replay += 1

    def _gap_for_live(self, position: int, reason: str) -> None:
        skip_live_to(self.index.subscriptions(), position, self.epoch, reason)

    def remove(self, subscription: Subscription) -> None:
        subscription.live = False
        subscription.removed = True
        self.index.remove(subscription)
