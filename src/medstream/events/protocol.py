"""The websocket protocol's messages (docs/protocol.md): parsing what clients send, building what servers send.

Client messages are validated pydantic models; a message that does not parse is a ProtocolError whose close
code is 4400. Server messages are built as bytes: an event frame embeds the entity's stored JSON as it is, so
an event is serialised once however many subscriptions receive it. A client reads an event message, entity
and all, in one pass of pydantic's JSON parser (`parse_event_message`).
"""

from __future__ import annotations

from collections import deque
from typing import Annotated, Any, Literal, Union

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model
from pydantic import ValidationError as PydanticValidationError

from medstream.errors import PayloadTooLargeError, ValidationError
from medstream.events.types import EventType
from medstream.model.base import MedstreamModel
from medstream.model.common import Entity
from medstream.model.entities import ENTITY_KINDS

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 256 * 1024  # a client message; server frames are bounded by entity size
BATCH_MESSAGES = 64  # a batched frame holds at most this many messages...
BATCH_BYTES = 256 * 1024  # ...and no more bytes than this, unless its one message is bigger
SubscriptionId = Annotated[str, Field(min_length=1, max_length=64)]


class AuthMessage(MedstreamModel):
    """First message on a socket, and again whenever the client has a fresher access token."""

    type: Literal["auth"]
    token: str = Field(min_length=1, max_length=8192)
    # On the first auth: the client reads frames that hold several messages, one per line (see `batch_frames`).
    batch: bool = False


class SubscribeMessage(MedstreamModel):
    """Start a subscription; `after` and `epoch` resume one after the last `seq` the client delivered."""

    type: Literal["subscribe"]
    id: SubscriptionId
    entity: str = Field(min_length=1, max_length=64)
    events: list[EventType] = Field(min_length=1, max_length=3)
    filter: dict[str, Any] | None = None
    after: int | None = Field(default=None, ge=0)
    epoch: str | None = Field(default=None, max_length=64)


class UnsubscribeMessage(MedstreamModel):
    type: Literal["unsubscribe"]
    id: SubscriptionId


class PingMessage(MedstreamModel):
    type: Literal["ping"]


class PongMessage(MedstreamModel):
    type: Literal["pong"]


ClientMessage = Annotated[
    AuthMessage | SubscribeMessage | UnsubscribeMessage | PingMessage | PongMessage,
    Field(discriminator="type"),
]
_client_message: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


def parse_client_message(data: str | bytes) -> ClientMessage:
    """Parse one client frame; ValidationError (close 4400) names what is wrong."""
    if _size_over(data, MAX_MESSAGE_BYTES):
        raise PayloadTooLargeError(f"message over {MAX_MESSAGE_BYTES} bytes")
    try:
        return _client_message.validate_json(data)
    except PydanticValidationError as exc:
        first = exc.errors(include_input=False)[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "message"
        raise ValidationError(f"malformed message: {where}: {first.get('msg', 'invalid')}") from None


def _size_over(data: str | bytes, limit: int) -> bool:
    """Whether `data` is over `limit` bytes; a text frame counts in UTF-8 bytes, up to 4 per character."""
    if len(data) > limit:
        return True
    return isinstance(data, str) and len(data) * 4 > limit and len(data.encode("utf-8", "surrogatepass")) > limit


MAX_CLOSE_REASON_BYTES = 123  # RFC 6455 5.5: a close frame's payload is at most 125 bytes, 2 of them the code


def fit_close_reason(reason: str) -> str:
    """`reason` cut to what a close frame holds, in UTF-8 bytes and at a character's boundary: a longer one
    makes the websocket layer drop the connection without a close frame (the client sees 1006). Reasons may
    quote what a client sent, in any script."""
    encoded = reason.encode("utf-8", "replace")
    if len(encoded) <= MAX_CLOSE_REASON_BYTES:
        return reason
    return encoded[:MAX_CLOSE_REASON_BYTES].decode("utf-8", "ignore")


# -- server messages -------------------------------------------------------------------------------------


def subscribed_frame(subscription_id: str, position: int, epoch: str) -> bytes:
    return orjson.dumps({"type": "subscribed", "id": subscription_id, "position": position, "epoch": epoch})


def unsubscribed_frame(subscription_id: str) -> bytes:
    return orjson.dumps({"type": "unsubscribed", "id": subscription_id})


def gap_frame(subscription_id: str, from_seq: int, position: int, epoch: str, reason: str) -> bytes:
    return orjson.dumps(
        {"type": "gap", "id": subscription_id, "from": from_seq, "position": position, "epoch": epoch, "reason": reason}
    )


def error_frame(code: str, message: str, subscription_id: str | None = None) -> bytes:
    payload: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if subscription_id is not None:
        payload["id"] = subscription_id
    return orjson.dumps(payload)


PING_FRAME = orjson.dumps({"type": "ping"})
PONG_FRAME = orjson.dumps({"type": "pong"})


EVENT_FRAME_HEAD = b'{"type":"event","id":'


def is_event_frame(frame: bytes) -> bool:
    """Is this server frame (not batched) an event message?"""
    return frame.startswith(EVENT_FRAME_HEAD)


class EventFrameTemplate:
    """An event serialised once; `for_subscription` only splices in the subscription id."""

    __slots__ = ("_head", "_tail")

    def __init__(self, seq: int, event_type: EventType, entity_type: str, document: bytes) -> None:
        self._head = EVENT_FRAME_HEAD
        self._tail = (
            b',"seq":'
            + str(seq).encode()
            + b',"event":"'
            + event_type.value.encode()
            + b'","entityType":"'
            + entity_type.encode()
            + b'","entity":'
            + document
            + b"}"
        )

    def for_subscription(self, subscription_id: str) -> bytes:
        return self._head + orjson.dumps(subscription_id) + self._tail


def batch_frames(queue: deque[bytes]) -> bytes:
    """Take the next frame's worth of messages from `queue` (not empty) for a client that asked for batches:
    as many as are waiting, up to BATCH_MESSAGES and BATCH_BYTES, joined by newlines (which compact JSON never
    holds). One frame for many messages is one send instead of many: sending, not matching, was the largest
    cost of an event on the server."""
    frame = queue.popleft()
    if not queue:
        return frame
    parts = [frame]
    size = len(frame)
    while queue and len(parts) < BATCH_MESSAGES and size + 1 + len(queue[0]) <= BATCH_BYTES:
        part = queue.popleft()
        parts.append(part)
        size += 1 + len(part)
    return b"\n".join(parts)


# -- server messages, as a client reads them ---------------------------------------------------------------


class EventMessage(BaseModel):
    """An `event` message as a client reads it: the entity is its entity type's model. Fields a later server
    adds are ignored."""

    model_config = ConfigDict(extra="ignore", validate_by_name=True, validate_by_alias=True)

    type: Literal["event"]
    id: str
    seq: int
    event: EventType
    entity_type: str = Field(alias="entityType")
    entity: Entity


def _event_message_of(name: str, model: type[Entity]) -> type[EventMessage]:
    """EventMessage for one entity type: its `entityType` is `name`, and its entity a `model`."""
    entity_type: Any = Literal[name]
    return create_model(
        f"{name}EventMessage", __base__=EventMessage, entity_type=(entity_type, Field(alias="entityType")), entity=model
    )


_EVENT_MESSAGES = tuple(_event_message_of(kind.name, kind.model) for kind in ENTITY_KINDS)
_ONE_OF_THEM: Any = Annotated[Union[_EVENT_MESSAGES], Field(discriminator="entity_type")]  # noqa: UP007
_event_message: TypeAdapter[EventMessage] = TypeAdapter(_ONE_OF_THEM)


def parse_event_message(data: str | bytes) -> EventMessage | None:
    """An event message, its entity validated as its type's model, in one pass of the JSON parser (reading the
    message with orjson and then validating its entity as Python objects costs half as much again); None when
    `data` is not an event message that parses, for the caller to read it as plain JSON and say what is wrong."""
    try:
        return _event_message.validate_json(data)
    except PydanticValidationError:
        return None
