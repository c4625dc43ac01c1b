"""A subscription's delivery, fed as the event stream feeds it (no socket): the position it reports is how far
the callback has got, gaps included, in the order things arrived."""

from __future__ import annotations

import asyncio
from typing import Any

from medstream.events.client_state import ClientState, Gap, GapFound, RetryPolicy, Subscribed, SubscriptionState
from medstream.events.resume import Position
from medstream.events.types import EventType
from medstream.model import Patient
from medstream.sdk.delivery import Delivery
from medstream.sdk.subscription_types import SubscriptionEvent


def _delivery(callback: Any, start: Position | None = None) -> tuple[ClientState, Delivery[Patient]]:
    state = ClientState(RetryPolicy())
    subscription = SubscriptionState("s1", "Patient", ["CREATE"], None, start=start)
    state.add(subscription)
    held: list[str] = []
    delivery: Delivery[Patient] = Delivery(
        subscription, Patient, callback, max_pending=100, hold=held.append, release=held.remove
    )
    return state, delivery


def _feed(state: ClientState, delivery: Delivery[Patient], message: dict[str, Any]) -> None:
    """A control message of the server, read by the client state and acted on as the event stream does."""
    action = state.on_message({"id": "s1", **message})
    if isinstance(action, Subscribed):
        delivery.subscribed(action.position)
    elif isinstance(action, GapFound):
        delivery.gap(action.gap)


def _event(delivery: Delivery[Patient], seq: int) -> None:
    delivery.parsed_event(seq, EventType.CREATE, "Patient", Patient(first_name=f"p{seq}"))


async def test_the_position_follows_the_callback_not_the_socket() -> None:
    gate = asyncio.Event()
    seen: list[Position] = []

    async def slow(patient: Patient, event: SubscriptionEvent[Patient]) -> None:
        await gate.wait()
        seen.append(event.position)

    state, delivery = _delivery(slow)
    _feed(state, delivery, {"type": "subscribed", "position": 10, "epoch": "e"})
    assert delivery.position == Position(10, "e")
    for seq in (11, 12):
        _event(delivery, seq)
    await asyncio.sleep(0)
    assert delivery.position == Position(10, "e")  # received, not yet through the callback
    assert delivery.tracker.resume_point() == (12, "e")  # a reconnect resumes after what was received
    gate.set()
    await delivery.wait_delivered()
    assert seen == [Position(11, "e"), Position(12, "e")] and delivery.position == Position(12, "e")
    delivery.closed("done")


async def test_a_gap_behind_queued_events_moves_the_position_only_once_they_are_delivered() -> None:
    gate = asyncio.Event()
    positions: list[Position | None] = []

    async def slow(patient: Patient) -> None:
        await gate.wait()

    state, delivery = _delivery(slow, start=Position(5, "e"))
    _feed(state, delivery, {"type": "subscribed", "position": 20, "epoch": "e"})
    _event(delivery, 6)
    _feed(state, delivery, {"type": "gap", "from": 6, "position": 30, "epoch": "e", "reason": "trimmed"})
    delivery.add_handler("gap", lambda gap: positions.append(delivery.position))
    assert delivery.position == Position(5, "e") and positions == [Position(5, "e")]
    gate.set()
    await delivery.wait_delivered()
    assert delivery.position == Position(30, "e")
    delivery.closed("done")


async def test_a_gap_before_any_handler_is_heard_by_the_first_one_added_only() -> None:
    state, delivery = _delivery(lambda patient: None, start=Position(5, "old"))
    _feed(state, delivery, {"type": "subscribed", "position": 20, "epoch": "new"})
    _feed(state, delivery, {"type": "gap", "from": 5, "position": 20, "epoch": "new", "reason": "another event log"})
    assert delivery.position == Position(20, "new")
    first: list[Gap] = []
    second: list[Gap] = []
    delivery.add_handler("gap", first.append)
    delivery.add_handler("gap", second.append)
    assert first == [Gap(5, 20, "another event log", "new")] and second == []
    delivery.closed("done")
