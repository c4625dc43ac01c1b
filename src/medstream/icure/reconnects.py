"""Recognising an iCure client's reconnect, sans I/O: where its previous socket left off, so that the new one
replays what it missed.

iCure's protocol has no resume point: a client whose socket dropped opens another and sends the same
`Subscription` frame again. The server takes a socket for the reconnect of an earlier one when both have the same
key (the same user, the same login session and the same subscription, canonicalised) and the earlier one ended,
without the client closing it on purpose, at most `window` seconds before. A socket whose key is held by a socket
still open is another client (or another tab of the same page), never a reconnect. What is remembered is bounded
in count and time, and is this node's only.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from medstream.errors import CloseCode

# The close a cardinal client sends when the server's pings stopped coming: a close it reconnects after, with
# the code of a deliberate one.
CARDINAL_MISSED_PING = (CloseCode.NORMAL_CLOSURE, "Server ping timeout")
# A client's deliberate close: it is done (cardinal's `close()`), or its page is going away.
_ON_PURPOSE = frozenset({CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY})


@dataclass(frozen=True, slots=True)
class Left:
    """Where a socket left off: every event up to `seq` of the event log `epoch` was handled for it."""

    seq: int
    epoch: str


def reconnect_key(user_id: str, session: str, subscription: str) -> str:
    """The key of a socket: its user, its login session (the refresh-token family its token came from) and its
    subscription in canonical form (`icure.socket.ParsedSubscription.identity`), hashed to a fixed size."""
    digest = hashlib.sha256()
    for part in (user_id, session, subscription):
        digest.update(part.encode())
        digest.update(b"\x00")
    return digest.hexdigest()


def client_closed_on_purpose(code: int | None, reason: str | None) -> bool:
    """Whether a socket's end was the client's deliberate close (1000 or 1001), after which it does not come back
    for what it missed; an abrupt end (no close frame: 1005, 1006), any other code, and cardinal's close for
    missed pings, which it reconnects after, are not."""
    if code not in _ON_PURPOSE:
        return False
    return (code, reason or "") != CARDINAL_MISSED_PING


class ReconnectMemory:
    """The keys of this node's open sockets, and where recently ended sockets left off (at most `capacity` of
    them, each for `window` seconds). Times are the caller's monotonic clock, in seconds."""

    def __init__(self, *, window: float, capacity: int) -> None:
        self.window = window
        self.capacity = capacity
        self._open: dict[str, int] = {}  # key -> sockets open with it
        self._left: OrderedDict[str, tuple[float, Left]] = OrderedDict()  # key -> (ended at, where), oldest first

    def __len__(self) -> int:
        """The ended sockets remembered."""
        return len(self._left)

    def opened(self, key: str, now: float) -> Left | None:
        """A socket with `key` subscribed: where the socket it reconnects left off, or None when it is no
        reconnect (nothing ended with that key within the window, or a socket with it is still open). What is
        returned is forgotten: one reconnect replays it, once."""
        self._expire(now)
        held = self._open.get(key, 0)
        self._open[key] = held + 1
        remembered = self._left.pop(key, None)
        if remembered is None or held:
            return None
        return remembered[1]

    def ended(self, key: str, left: Left | None, now: float) -> None:
        """A socket with `key` ended; `left` is where it left off, None when it is not to be resumed (its client
        closed it on purpose, or where it left off is unknown). It is remembered only when no other socket with
        the key is still open: which of two clients would a reconnect be?"""
        held = self._open.get(key, 0) - 1
        if held > 0:
            self._open[key] = held
            self._left.pop(key, None)
            return
        self._open.pop(key, None)
        self._left.pop(key, None)
        if left is None or self.window <= 0 or self.capacity <= 0:
            return
        self._expire(now)
        while len(self._left) >= self.capacity:
            self._left.popitem(last=False)
        self._left[key] = (now, left)

    def _expire(self, now: float) -> None:
        while self._left:
            key, (ended_at, _) = next(iter(self._left.items()))
            if now - ended_at <= self.window:
                return
            del self._left[key]
