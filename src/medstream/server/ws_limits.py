"""The bounds of the events endpoint, and what each user (and each peer address before auth) holds against them.

Everything a socket makes the server keep is counted against its user: the sockets, the subscriptions over all
of them, and the weight of their filters (`filters/weight.py`: an estimate, in bytes, of the memory a filter
holds). A socket that has not authenticated yet has no user: it counts against its peer's address. The counts
are per server node, in memory, as the sockets are: a user connected to two nodes holds the bounds on each.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from medstream.errors import TooSlowError


@dataclass(frozen=True)
class WebSocketLimits:
    auth_timeout: float = 10.0
    heartbeat_interval: float = 20.0
    heartbeat_timeout: float = 60.0
    send_queue: int = 10_000  # messages waiting for one slow socket before it is closed with 4429
    subscriptions: int = 1_000  # per connection
    sockets_per_user: int = 100
    subscriptions_per_user: int = 10_000  # over all the user's sockets
    filter_bytes_per_user: int = 64 * 1024 * 1024  # the weight of all the user's filters together
    unauthenticated_per_peer: int = 100  # sockets of one peer address that have not authenticated yet


@dataclass
class _Usage:
    sockets: int = 0
    subscriptions: int = 0
    filter_bytes: int = 0


class Quotas:
    """What each user holds on this node's sockets; `TooSlowError` (4429) names the bound a request is over."""

    def __init__(self, limits: WebSocketLimits) -> None:
        self.limits = limits
        self._users: dict[str, _Usage] = {}
        self._unauthenticated: Counter[str] = Counter()

    def open_unauthenticated(self, peer: str) -> None:
        limit = self.limits.unauthenticated_per_peer
        if self._unauthenticated[peer] >= limit:
            raise TooSlowError(f"too many sockets waiting for auth from this address (at most {limit})")
        self._unauthenticated[peer] += 1

    def close_unauthenticated(self, peer: str) -> None:
        self._unauthenticated[peer] -= 1
        if self._unauthenticated[peer] <= 0:
            del self._unauthenticated[peer]

    def open_socket(self, user_id: str) -> None:
        usage = self._users.setdefault(user_id, _Usage())
        if usage.sockets >= self.limits.sockets_per_user:
            self._forget_if_idle(user_id, usage)
            raise TooSlowError(f"too many sockets for this user (at most {self.limits.sockets_per_user})")
        usage.sockets += 1

    def close_socket(self, user_id: str) -> None:
        usage = self._users[user_id]
        usage.sockets -= 1
        self._forget_if_idle(user_id, usage)

    def add_subscription(self, user_id: str, filter_bytes: int) -> None:
        """Count a subscription whose filter weighs `filter_bytes`, or refuse it."""
        usage = self._users[user_id]
        if usage.subscriptions >= self.limits.subscriptions_per_user:
            raise TooSlowError(
                f"too many subscriptions for this user (at most {self.limits.subscriptions_per_user} over its sockets)"
            )
        if usage.filter_bytes + filter_bytes > self.limits.filter_bytes_per_user:
            raise TooSlowError(
                f"filters too large for this user: this one weighs {filter_bytes} bytes, its subscriptions hold "
                f"{usage.filter_bytes} of at most {self.limits.filter_bytes_per_user}"
            )
        usage.subscriptions += 1
        usage.filter_bytes += filter_bytes

    def remove_subscription(self, user_id: str, filter_bytes: int) -> None:
        usage = self._users[user_id]
        usage.subscriptions -= 1
        usage.filter_bytes -= filter_bytes

    def held_by(self, user_id: str) -> tuple[int, int, int]:
        """The user's sockets, subscriptions and filter bytes."""
        usage = self._users.get(user_id, _Usage())
        return usage.sockets, usage.subscriptions, usage.filter_bytes

    def _forget_if_idle(self, user_id: str, usage: _Usage) -> None:
        if usage.sockets <= 0 and usage.subscriptions <= 0:
            del self._users[user_id]


__all__ = ["Quotas", "WebSocketLimits"]
