"""The event socket's client state, without a socket: what it sends, what it makes of the server's messages,
when it reconnects, and the positions an application stores to resume from."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medstream.events.client_state import (
    ClientState,
    CloseVerdict,
    Gap,
    GapFound,
    Refused,
    Reply,
    Retry,
    RetryPolicy,
    ServerError,
    Subscribed,
    SubscriptionState,
)
from medstream.events.resume import Position

POLICY = RetryPolicy(max_retry=3, first_delay=1.0, max_delay=3.0)


def _subscription(sub_id: str = "s1", start: Position | None = None) -> SubscriptionState:
    return SubscriptionState(sub_id, "Patient", ["CREATE"], None, start=start)


def _state(*subscriptions: SubscriptionState, resume: bool = True) -> ClientState:
    state = ClientState(POLICY, resume=resume)
    for subscription in subscriptions:
        state.add(subscription)
    return state


def test_opening_a_socket_authenticates_then_subscribes_each_subscription() -> None:
    state = _state(_subscription("a"), _subscription("b"))
    messages = state.opening("tok")
    assert messages[0] == {"type": "auth", "token": "tok", "batch": True}
    assert [(m["type"], m["id"]) for m in messages[1:]] == [("subscribe", "a"), ("subscribe", "b")]
    assert all("after" not in m for m in messages[1:])  # nothing to resume from yet: from the present


def test_a_reconnect_resubscribes_after_the_last_event_received() -> None:
    subscription = _subscription()
    state = _state(subscription)
    state.opening("tok")
    assert state.on_message({"type": "subscribed", "id": "s1", "position": 5, "epoch": "e"}) == Subscribed(
        subscription, Position(5, "e")
    )
    assert [subscription.tracker.accept(seq) for seq in (6, 6, 7)] == [True, False, True]
    resubscribe = state.opening("tok")[1]
    assert (resubscribe["after"], resubscribe["epoch"]) == (7, "e")


def test_a_stored_position_is_sent_on_the_first_subscribe_even_without_resume_on_reconnect() -> None:
    subscription = _subscription(start=Position(40, "e"))
    state = _state(subscription, resume=False)
    first = state.opening("tok")[1]
    assert (first["after"], first["epoch"]) == (40, "e")
    state.on_message({"type": "subscribed", "id": "s1", "position": 90, "epoch": "e"})
    assert "after" not in state.opening("tok")[1]  # resume=False: a reconnect starts from the present


def test_the_server_acknowledging_keeps_a_stored_position_of_its_log_and_drops_what_came_before() -> None:
    subscription = _subscription(start=Position(40, "e"))
    state = _state(subscription)
    state.on_message({"type": "subscribed", "id": "s1", "position": 90, "epoch": "e"})
    assert [subscription.tracker.accept(seq) for seq in (40, 41)] == [False, True]


def test_a_gap_moves_the_resume_point_to_the_server_position_in_its_epoch() -> None:
    subscription = _subscription(start=Position(40, "old"))
    state = _state(subscription)
    state.on_message({"type": "subscribed", "id": "s1", "position": 90, "epoch": "new"})
    action = state.on_message(
        {"type": "gap", "id": "s1", "from": 40, "position": 90, "epoch": "new", "reason": "another log"}
    )
    assert action == GapFound(subscription, Gap(40, 90, "another log", "new"))
    assert isinstance(action, GapFound) and action.gap.resume_from == Position(90, "new")
    assert subscription.tracker.resume_point() == (90, "new")
    assert not subscription.tracker.accept(90) and subscription.tracker.accept(91)


def test_a_refused_subscription_is_forgotten_and_a_general_error_goes_to_all() -> None:
    subscription = _subscription()
    state = _state(subscription, _subscription("other"))
    refused = state.on_message({"type": "error", "id": "s1", "code": "bad_filter", "message": "no such field"})
    assert refused == Refused(subscription, "bad_filter", "no such field")
    assert list(state.subscriptions) == ["other"]
    assert state.on_message({"type": "error", "code": "x", "message": "y"}) == ServerError("x", "y")


def test_ping_is_answered_and_unknown_or_foreign_messages_do_nothing() -> None:
    state = _state(_subscription())
    assert state.on_message({"type": "ping"}) == Reply({"type": "pong"})
    assert state.on_message({"type": "unsubscribed", "id": "s1"}) is None
    assert state.on_message({"type": "subscribed", "id": "nobody", "position": 1, "epoch": "e"}) is None


def test_unsubscribing_forgets_the_subscription_and_says_so_to_the_server() -> None:
    state = _state(_subscription())
    assert state.remove("s1") == {"type": "unsubscribe", "id": "s1"}
    assert state.opening("tok") == [{"type": "auth", "token": "tok", "batch": True}]


def test_an_unreadable_event_message_is_traced_to_its_subscription_and_seq() -> None:
    subscription = _subscription()
    state = _state(subscription)
    assert state.unreadable_event('{"type":"event","id":"s1","seq":12,"event":"MERGE"}') == (subscription, 12)
    assert state.unreadable_event('{"type":"event","id":"other","seq":12}') is None
    assert state.unreadable_event('{"type":"subscribed","id":"s1"}') is None


def test_retries_back_off_and_run_out_unless_a_socket_was_subscribed_between() -> None:
    state = _state(_subscription())
    retries = [state.on_lost(jitter=0.5) for _ in range(3)]
    assert retries == [Retry(1, 1.0), Retry(2, 2.0), Retry(3, 3.0)]  # doubling, capped at max_delay
    assert state.on_lost(jitter=0.5) is None  # a fourth loss in a row: give up
    state = _state(_subscription())
    state.on_lost(jitter=0.0)
    state.on_lost(jitter=0.0)
    state.opening("tok")
    state.on_message({"type": "subscribed", "id": "s1", "position": 1, "epoch": "e"})
    assert state.on_lost(jitter=0.0) == Retry(1, 0.75)  # the count starts afresh: the socket was up


@given(st.integers(min_value=1, max_value=40), st.floats(min_value=0.0, max_value=0.999))
def test_retry_delay_is_within_a_quarter_of_its_doubling_and_never_over_the_cap(attempt: int, jitter: float) -> None:
    nominal = min(2.0 ** (attempt - 1), POLICY.max_delay)
    assert 0.75 * nominal <= POLICY.delay(attempt, jitter) <= 1.25 * nominal


def test_close_codes_tell_fatal_from_renewing_the_token_from_retrying() -> None:
    assert ClientState.on_close(4400) is CloseVerdict.FATAL
    assert ClientState.on_close(4003) is CloseVerdict.FATAL
    assert ClientState.on_close(4001) is CloseVerdict.RENEW_TOKEN
    assert ClientState.on_close(1012) is CloseVerdict.RETRY
    assert ClientState.on_close(None) is CloseVerdict.RETRY


@given(st.integers(min_value=0, max_value=2**63), st.text(min_size=1, max_size=64))
def test_a_position_reads_back_from_its_text_form(seq: int, epoch: str) -> None:
    position = Position(seq, epoch)
    assert Position.parse(str(position)) == position


@pytest.mark.parametrize("text", ["", "12", "@e", "x@e", "-1@e", "12@", "١٢@e", "12@" + "e" * 65])
def test_a_position_text_that_is_not_one_is_refused_with_the_reason(text: str) -> None:
    with pytest.raises(ValueError, match="position"):
        Position.parse(text)
