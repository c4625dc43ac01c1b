"""Recognising an iCure client's reconnect (`icure.reconnects`): which socket is one, where it resumes, and the
bounds on what a node remembers."""

from __future__ import annotations

import pytest

from medstream.icure.reconnects import Left, ReconnectMemory, client_closed_on_purpose, reconnect_key

KEY = reconnect_key("user-1", "session-1", '{"entityClass":"x"}')
HERE = Left(41, "epoch-1")


def test_a_key_names_user_session_and_subscription() -> None:
    keys = {
        reconnect_key("user-1", "session-1", "s"),
        reconnect_key("user-2", "session-1", "s"),
        reconnect_key("user-1", "session-2", "s"),
        reconnect_key("user-1", "session-1", "t"),
        reconnect_key("user-1", "session-1s", ""),  # parts are separated, not run together
    }
    assert len(keys) == 5
    assert reconnect_key("user-1", "session-1", "s") in keys


@pytest.mark.parametrize(
    ("code", "reason", "on_purpose"),
    [
        (1000, "Closed by the client", True),  # cardinal's close()
        (1001, "", True),  # a page going away
        (1000, "Server ping timeout", False),  # cardinal gave up on the server's pings: it reconnects
        (1005, "", False),  # the connection was lost, or closed with no code
        (1006, None, False),
        (4000, "mine", False),
    ],
)
def test_only_a_deliberate_close_by_the_client_is_on_purpose(code: int, reason: str | None, on_purpose: bool) -> None:
    assert client_closed_on_purpose(code, reason) is on_purpose


def test_a_reconnect_within_the_window_resumes_once() -> None:
    memory = ReconnectMemory(window=60, capacity=10)
    assert memory.opened(KEY, 0) is None  # the first socket
    memory.ended(KEY, HERE, 1)
    assert memory.opened(KEY, 61) == HERE  # 60 s after the drop: still a reconnect
    assert len(memory) == 0
    memory.ended(KEY, None, 62)  # closed on purpose: nothing to resume
    assert memory.opened(KEY, 63) is None


def test_past_the_window_nothing_is_resumed() -> None:
    memory = ReconnectMemory(window=60, capacity=10)
    memory.opened(KEY, 0)
    memory.ended(KEY, HERE, 0)
    other = reconnect_key("user-1", "session-1", "other")
    memory.opened(other, 1)
    assert len(memory) == 1
    assert memory.opened(KEY, 60.5) is None
    assert len(memory) == 0  # and it is forgotten


def test_a_socket_opened_while_another_with_its_key_is_open_is_no_reconnect() -> None:
    memory = ReconnectMemory(window=60, capacity=10)
    memory.opened(KEY, 0)
    assert memory.opened(KEY, 1) is None  # a second client of the same session and subscription
    memory.ended(KEY, Left(5, "epoch-1"), 2)  # one drops while the other is open: not remembered
    assert memory.opened(KEY, 3) is None
    memory.ended(KEY, Left(6, "epoch-1"), 4)
    memory.ended(KEY, Left(7, "epoch-1"), 5)  # the last one open drops: remembered
    assert memory.opened(KEY, 6) == Left(7, "epoch-1")


def test_a_remembered_position_is_not_taken_while_a_socket_with_its_key_is_open() -> None:
    memory = ReconnectMemory(window=60, capacity=10)
    memory.opened(KEY, 0)
    memory.ended(KEY, HERE, 1)
    assert memory.opened(KEY, 2) == HERE
    assert memory.opened(KEY, 3) is None  # a second socket while the reconnected one is open


def test_the_oldest_is_forgotten_past_the_capacity() -> None:
    memory = ReconnectMemory(window=60, capacity=2)
    keys = [reconnect_key("user", "session", str(i)) for i in range(3)]
    for i, key in enumerate(keys):
        memory.opened(key, i)
        memory.ended(key, Left(i, "epoch-1"), i)
    assert len(memory) == 2
    assert memory.opened(keys[0], 4) is None
    assert memory.opened(keys[2], 4) == Left(2, "epoch-1")


def test_a_window_or_capacity_of_zero_remembers_nothing() -> None:
    for memory in (ReconnectMemory(window=0, capacity=10), ReconnectMemory(window=60, capacity=0)):
        memory.opened(KEY, 0)
        memory.ended(KEY, HERE, 0)
        assert memory.opened(KEY, 0) is None
