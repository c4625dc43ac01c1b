"""What a client of the event socket knows and decides, without doing any I/O.

`ClientState` holds one socket's subscriptions and where each resumes from (`DeliveryTracker`, with the event
log's epoch), builds the messages to send when a socket opens or a subscription is added, reads the server's
control messages into what to do, and decides after a lost socket whether to reconnect and when (back-off with
jitter, a bounded number of retries). The caller brings the socket, the clock and the randomness: it sends what
this returns, sleeps the delays it is given and passes in the jitter, so every decision is testable in
microseconds. Event messages do not go through here: the caller keeps each subscription's tracker and asks it
whether an event is new (`DeliveryTracker.accept`), which is all an event costs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson

from medstream.errors import AuthenticationError, CloseCode
from medstream.events.resume import DeliveryTracker, Position

# Close codes after which reconnecting cannot help: the server refused what this client sends.
FATAL_CLOSE_CODES: dict[int, str] = {
    CloseCode.FORBIDDEN: "forbidden",
    CloseCode.MALFORMED_MESSAGE: "malformed message",
    CloseCode.MESSAGE_TOO_BIG: "message too big",
}
# The subscription id (a JSON string) and seq at the head of an event message, as Medstream servers write it.
_EVENT_HEAD = re.compile(r'\{"type":"event","id":("(?:[^"\\]|\\.)*"),"seq":(\d+)[,}]')


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, and how far apart, a lost socket is opened again."""

    max_retry: int = 5
    first_delay: float = 1.0  # seconds; doubles at each retry, with +-25% jitter, up to `max_delay`
    max_delay: float = 30.0

    def delay(self, attempt: int, jitter: float) -> float:
        """Seconds before retry number `attempt` (1-based), for a `jitter` drawn uniformly from [0, 1)."""
        capped = min(self.first_delay * 2.0 ** (attempt - 1), self.max_delay)
        return capped * (0.75 + 0.5 * jitter)


@dataclass(frozen=True, slots=True)
class Gap:
    """Events after `from_seq` could not be replayed (past retention, or another event log): re-sync by a query.
    Delivery goes on after `position` of the event log `epoch` (`resume_from` is the two as a `Position`)."""

    from_seq: int
    position: int
    reason: str
    epoch: str = ""

    @property
    def resume_from(self) -> Position:
        return Position(self.position, self.epoch)


@dataclass(eq=False)
class SubscriptionState:
    """One subscription as its client knows it: what it asks for, and where it resumes from."""

    id: str
    entity_type: str
    event_types: Sequence[str]
    filter: dict[str, Any] | None
    start: Position | None = None  # where its first subscribe asks to start after (a stored position), if any
    tracker: DeliveryTracker = field(init=False)
    acknowledged: bool = False  # the server has acknowledged it at least once

    def __post_init__(self) -> None:
        self.tracker = DeliveryTracker(self.start)


# What the caller does with a control message of the server.


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The server acknowledged `subscription`; everything up to `position` is behind it."""

    subscription: SubscriptionState
    position: Position


@dataclass(frozen=True, slots=True)
class GapFound:
    subscription: SubscriptionState
    gap: Gap


@dataclass(frozen=True, slots=True)
class Refused:
    """The server refused `subscription` (bad filter, unknown entity): it is removed, and will not come back."""

    subscription: SubscriptionState
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class ServerError:
    """An error about no subscription in particular: every subscription hears of it."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Reply:
    """Send `message` back."""

    message: dict[str, Any]


Action = Subscribed | GapFound | Refused | ServerError | Reply


class CloseVerdict(Enum):
    RETRY = "retry"
    RENEW_TOKEN = "renew the access token, then retry"
    FATAL = "give up: the server refuses what this client sends"


@dataclass(frozen=True, slots=True)
class Retry:
    """Open the socket again after `delay` seconds: the `attempt`-th retry in a row."""

    attempt: int
    delay: float


class ClientState:
    """One event socket's subscriptions, their resume points, and its reconnection decisions."""

    def __init__(self, policy: RetryPolicy, *, resume: bool = True) -> None:
        self.policy = policy
        self.resume = resume  # resume each subscription after its last event on reconnect
        self.subscriptions: dict[str, SubscriptionState] = {}
        self.failures = 0  # sockets lost in a row
        self.acknowledged = False  # the current socket has had a subscription acknowledged

    # -- subscriptions -----------------------------------------------------------------------------------

    def add(self, subscription: SubscriptionState) -> None:
        self.subscriptions[subscription.id] = subscription

    def remove(self, subscription_id: str) -> dict[str, Any]:
        """Forget the subscription; the message that ends it on an open socket."""
        self.subscriptions.pop(subscription_id, None)
        return {"type": "unsubscribe", "id": subscription_id}

    def subscribe_message(self, subscription: SubscriptionState) -> dict[str, Any]:
        """The message that starts `subscription`: after its last event when resuming, after its stored start
        position until the server has acknowledged it once."""
        message: dict[str, Any] = {
            "type": "subscribe",
            "id": subscription.id,
            "entity": subscription.entity_type,
            "events": list(subscription.event_types),
            "filter": subscription.filter,
        }
        after, epoch = subscription.tracker.resume_point()
        stored_start = subscription.start is not None and not subscription.acknowledged
        if after is not None and (self.resume or stored_start):
            message["after"], message["epoch"] = after, epoch
        return message

    # -- a socket's life ---------------------------------------------------------------------------------

    def opening(self, token: str) -> list[dict[str, Any]]:
        """A socket is open: authenticate (asking for batched frames), then subscribe every subscription."""
        self.acknowledged = False
        auth: dict[str, Any] = {"type": "auth", "token": token, "batch": True}
        return [auth, *(self.subscribe_message(s) for s in self.subscriptions.values())]

    def on_message(self, message: dict[str, Any]) -> Action | None:
        """What to do about one control message of the server (any message but an event); None: nothing."""
        kind = message.get("type")
        if kind == "ping":
            return Reply({"type": "pong"})
        subscription = self.subscriptions.get(str(message.get("id")))
        if kind == "error":
            code, text = str(message.get("code")), str(message.get("message"))
            if subscription is None:
                return ServerError(code, text)
            self.subscriptions.pop(subscription.id, None)
            return Refused(subscription, code, text)
        if subscription is None:
            return None
        if kind == "subscribed":
            position, epoch = int(message["position"]), str(message["epoch"])
            subscription.tracker.on_subscribed(position, epoch)
            subscription.acknowledged = self.acknowledged = True
            return Subscribed(subscription, Position(position, epoch))
        if kind == "gap":
            epoch = str(message["epoch"])
            gap = Gap(int(message["from"]), int(message["position"]), str(message.get("reason", "")), epoch)
            subscription.tracker.on_gap(gap.position, epoch)
            return GapFound(subscription, gap)
        return None

    def unreadable_event(self, text: str) -> tuple[SubscriptionState, int] | None:
        """For a message that could not be read: the subscription and seq, when it is an event message of one
        of these subscriptions and the first at that seq (it is then passed over, as an entity that does not
        parse: failing the socket would resume before it and meet it again, without end). None otherwise."""
        found = _EVENT_HEAD.match(text)
        if found is None:
            return None
        try:
            subscription_id = orjson.loads(found.group(1))  # a JSON string, matched as one
        except orjson.JSONDecodeError:
            return None
        subscription = self.subscriptions.get(subscription_id) if isinstance(subscription_id, str) else None
        if subscription is None:
            return None
        return subscription, int(found.group(2))

    @staticmethod
    def on_close(code: int | None) -> CloseVerdict:
        """What the server's close code says about opening the socket again."""
        if code in FATAL_CLOSE_CODES:
            return CloseVerdict.FATAL
        if code == AuthenticationError.close_code:
            return CloseVerdict.RENEW_TOKEN
        return CloseVerdict.RETRY

    def on_lost(self, jitter: float) -> Retry | None:
        """The socket was lost (or could not be opened): when to retry, or None to give up. A socket that was up
        and subscribed starts the count afresh."""
        self.failures = 1 if self.acknowledged else self.failures + 1
        self.acknowledged = False
        if self.failures > self.policy.max_retry:
            return None
        return Retry(self.failures, self.policy.delay(self.failures, jitter))

    def on_closed_by_client(self) -> None:
        """The client closed the socket itself: the next one starts with no failure counted."""
        self.failures = 0
        self.acknowledged = False
