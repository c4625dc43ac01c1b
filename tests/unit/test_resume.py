"""Where a subscription starts on the server, and what the client accepts: no hole, no duplicate."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medstream.events.resume import DeliveryTracker, StartKind, plan_start
from medstream.sdk.subscription_types import SubscriptionOptions


def test_no_resume_point_starts_live_at_the_dispatcher_position() -> None:
    start = plan_start(None, None, log_epoch="e", floor_seq=0, position=50)
    assert (start.kind, start.after) == (StartKind.LIVE, 50)


def test_resume_point_in_retention_replays_from_it() -> None:
    start = plan_start(20, "e", log_epoch="e", floor_seq=10, position=50)
    assert (start.kind, start.after) == (StartKind.REPLAY, 20)


def test_resume_point_just_below_the_floor_still_replays() -> None:
    # events from 10 on are kept: a client that saw 9 misses nothing
    assert plan_start(9, "e", log_epoch="e", floor_seq=10, position=50).kind is StartKind.REPLAY
    assert plan_start(8, "e", log_epoch="e", floor_seq=10, position=50).kind is StartKind.GAP


def test_resume_point_from_another_epoch_is_a_gap_never_a_replay() -> None:
    start = plan_start(20, "old", log_epoch="new", floor_seq=0, position=50)
    assert (start.kind, start.after) == (StartKind.GAP, 50)
    assert "another event log" in start.reason


@pytest.mark.parametrize("epoch", ["e", None])
def test_resume_point_beyond_the_head_is_a_gap_from_the_head(epoch: str | None) -> None:
    start = plan_start(70, epoch, log_epoch="e", floor_seq=0, position=50)
    assert (start.kind, start.after) == (StartKind.GAP, 50)
    assert "beyond the log's head" in start.reason


def test_resume_point_at_the_head_replays_nothing_missing() -> None:
    start = plan_start(50, "e", log_epoch="e", floor_seq=0, position=50)
    assert (start.kind, start.after) == (StartKind.REPLAY, 50)


def test_tracker_drops_duplicates_and_replays_already_delivered() -> None:
    tracker = DeliveryTracker()
    tracker.on_subscribed(position=5, epoch="e")
    assert [tracker.accept(s) for s in (5, 6, 6, 7, 3, 9)] == [False, True, False, True, False, True]
    assert tracker.resume_point() == (9, "e")


def test_tracker_keeps_its_resume_point_across_a_reconnect() -> None:
    tracker = DeliveryTracker()
    tracker.on_subscribed(position=5, epoch="e")
    tracker.accept(8)
    tracker.on_subscribed(position=20, epoch="e")  # the reconnect's acknowledgement
    assert tracker.resume_point() == (8, "e")
    assert tracker.accept(9)


def test_tracker_after_a_gap_continues_from_the_server_position() -> None:
    tracker = DeliveryTracker()
    tracker.on_subscribed(position=5, epoch="old")
    tracker.on_gap(position=30, epoch="new")
    assert tracker.resume_point() == (30, "new")
    assert not tracker.accept(30) and tracker.accept(31)


@given(st.lists(st.integers(min_value=1, max_value=60), max_size=200))
def test_tracker_accepts_each_seq_at_most_once_and_in_increasing_order(arrivals: list[int]) -> None:
    tracker = DeliveryTracker()
    tracker.on_subscribed(position=0, epoch="e")
    accepted = [seq for seq in arrivals if tracker.accept(seq)]
    assert accepted == sorted(set(accepted))


def test_retry_delay_doubles_with_jitter_and_is_capped() -> None:
    options = SubscriptionOptions(connection_retry_interval_ms=1000, connection_retry_max_interval_ms=5000)
    rng = random.Random(1)
    delays = [options.retry_policy().delay(n, rng.random()) for n in range(1, 7)]
    for attempt, delay in enumerate(delays, start=1):
        nominal = min(2 ** (attempt - 1), 5.0)
        assert 0.75 * nominal <= delay <= 1.25 * nominal
    assert delays[5] <= 1.25 * 5
