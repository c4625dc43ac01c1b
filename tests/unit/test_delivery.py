"""A subscription's delivery, fed as the event stream feeds it (no socket): the position it reports is how far
the callback has got, gaps included, in the order things arrived."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from medstream.crypto import EntityKey, decrypt_fields, encrypt_fields, encrypted_self_kid
from medstream.events.client_state import ClientState, Gap, GapFound, RetryPolicy, Subscribed, SubscriptionState
from medstream.events.resume import Position
from medstream.events.types import EventType
from medstream.model import Patient
from medstream.model.common import Entity
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


class _GatedKeys:
    """Decrypts with real AES-GCM: the `now` keys at once, the `later` keys once `gate` is set (as keys the SDK
    must first fetch), no others."""

    def __init__(self, now: EntityKey, later: EntityKey) -> None:
        self.known = {now.kid: now.key}
        self.later = {later.kid: later.key}
        self.gate = asyncio.Event()

    def decrypt_now(self, wire: Mapping[str, Any]) -> Entity | None:
        if encrypted_self_kid(wire, "Patient") in self.later and not self.gate.is_set():
            return None
        return Patient.model_validate(decrypt_fields(wire, "Patient", {**self.known, **self.later}))

    async def decrypt(self, wire: Mapping[str, Any]) -> Entity:
        await self.gate.wait()
        decrypted = self.decrypt_now(wire)
        assert decrypted is not None
        return decrypted


def _encrypted(seq: int, key: EntityKey) -> dict[str, Any]:
    return encrypt_fields({"id": f"p{seq}", "firstName": f"name {seq}"}, "Patient", ("firstName",), key)


async def test_encrypted_events_are_decrypted_in_seq_order_and_one_that_fails_is_an_error_naming_its_seq() -> None:
    now, later, unknown = EntityKey.generate(), EntityKey.generate(), EntityKey.generate()
    keys = _GatedKeys(now, later)
    seen: list[str] = []
    state = ClientState(RetryPolicy())
    subscription = SubscriptionState("s1", "Patient", ["CREATE"], None)
    state.add(subscription)
    delivery: Delivery[Patient] = Delivery(
        subscription,
        Patient,
        lambda patient: seen.append(str(patient.first_name)),
        max_pending=100,
        hold=lambda _id: None,
        release=lambda _id: None,
        decryptor=keys,
    )
    delivery.add_handler("error", lambda error: seen.append(f"error {getattr(error, 'seq', None)}: {error}"))
    _feed(state, delivery, {"type": "subscribed", "position": 10, "epoch": "e"})
    # Events come as wire dicts (decrypted, then validated once) or, read by the one-pass parser, as models.
    delivery.event(11, "CREATE", _encrypted(11, later))
    delivery.parsed_event(12, EventType.CREATE, "Patient", Patient.model_validate(_encrypted(12, now)))
    delivery.event(13, "CREATE", _encrypted(13, unknown))
    delivery.event(14, "CREATE", _encrypted(14, now))
    malformed = encrypt_fields({"id": "p15", "firstName": 15}, "Patient", ("firstName",), now)
    delivery.event(15, "CREATE", malformed)
    delivery.event(16, "CREATE", _encrypted(16, now))
    await asyncio.sleep(0)
    assert seen == [], "12 waits behind 11, whose keys are being fetched"
    keys.gate.set()
    await delivery.wait_delivered()
    assert seen[:2] == ["name 11", "name 12"] and seen[3] == "name 14"
    assert seen[2].startswith("error 13: event 13: Patient p13: encryptedSelf: no key for kid")
    assert seen[4].startswith("error None: event 15: decrypted entity does not parse") and seen[5] == "name 16"
    assert delivery.position == Position(16, "e")
    # An encrypted event of a type this SDK does not know fails before its seq is taken, so that the stream's
    # report of it as unreadable reaches the error handlers.
    with pytest.raises(ValueError):
        delivery.event(17, "PURGE", _encrypted(17, now))
    delivery.unreadable_event(17, ValueError("'PURGE' is not a valid EventType"))
    assert seen[-1].startswith("error None: event 17: the message cannot be read")
    delivery.closed("done")
