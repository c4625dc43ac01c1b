"""The websocket protocol's messages, parsed and built without a socket."""

from __future__ import annotations

from collections import deque

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medstream.errors import PayloadTooLargeError, ValidationError
from medstream.events.protocol import (
    BATCH_BYTES,
    BATCH_MESSAGES,
    MAX_MESSAGE_BYTES,
    AuthMessage,
    EventFrameTemplate,
    PingMessage,
    SubscribeMessage,
    UnsubscribeMessage,
    batch_frames,
    error_frame,
    fit_close_reason,
    gap_frame,
    parse_client_message,
    parse_event_message,
    subscribed_frame,
)
from medstream.events.types import EventType
from medstream.model.entities import ENTITY_KINDS
from tests.strategies import entities_of


def test_subscribe_message_parses_with_resume_point() -> None:
    message = parse_client_message(
        b'{"type":"subscribe","id":"s1","entity":"DataSample","events":["CREATE","DELETE"],'
        b'"filter":{"$type":"X"},"after":41,"epoch":"e1"}'
    )
    assert isinstance(message, SubscribeMessage)
    assert message.events == [EventType.CREATE, EventType.DELETE]
    assert (message.after, message.epoch, message.filter) == (41, "e1", {"$type": "X"})


def test_auth_and_unsubscribe_parse() -> None:
    assert isinstance(parse_client_message('{"type":"auth","token":"t"}'), AuthMessage)
    assert isinstance(parse_client_message('{"type":"unsubscribe","id":"s"}'), UnsubscribeMessage)


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (b"{not json", "message"),
        (b'{"type":"launch"}', "launch"),
        (b'{"type":"subscribe","id":"s","entity":"Patient","events":["EXPLODE"]}', "events"),
        (b'{"type":"subscribe","id":"s","entity":"Patient","events":[]}', "events"),
        (b'{"type":"subscribe","id":"s","entity":"Patient","events":["CREATE"],"after":-1}', "after"),
        (b'{"type":"subscribe","id":"s","entity":"Patient","events":["CREATE"],"extra":1}', "extra"),
        (b'{"type":"auth"}', "token"),
    ],
)
def test_malformed_messages_are_rejected_naming_the_problem(raw: bytes, named: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_client_message(raw)
    assert named in caught.value.message
    assert caught.value.close_code == 4400


def test_oversized_message_is_rejected_before_parsing() -> None:
    with pytest.raises(PayloadTooLargeError):
        parse_client_message(b" " * (MAX_MESSAGE_BYTES + 1))


def test_the_message_bound_counts_utf8_bytes_not_characters() -> None:
    under_in_characters = "€" * (MAX_MESSAGE_BYTES // 3 + 1)  # 3 bytes each: over the bound in bytes
    with pytest.raises(PayloadTooLargeError):
        parse_client_message(under_in_characters)
    with pytest.raises(PayloadTooLargeError):
        parse_client_message(under_in_characters.encode())
    assert isinstance(parse_client_message('{"type": "ping"}'), PingMessage)


def test_event_frame_embeds_the_document_once_and_names_each_subscription() -> None:
    document = b'{"id":"p1","firstName":"John"}'
    template = EventFrameTemplate(7, EventType.UPDATE, "Patient", document)
    first, second = (orjson.loads(template.for_subscription(s)) for s in ("a", 'quote"d'))
    assert first == {
        "type": "event",
        "id": "a",
        "seq": 7,
        "event": "UPDATE",
        "entityType": "Patient",
        "entity": {"id": "p1", "firstName": "John"},
    }
    assert second["id"] == 'quote"d' and second["entity"] == first["entity"]


@given(st.data())
def test_a_client_reads_every_event_frame_back_with_its_entity_as_its_types_model(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(ENTITY_KINDS))
    entity = data.draw(entities_of(kind.name))
    event_type = data.draw(st.sampled_from(list(EventType)))
    frame = EventFrameTemplate(42, event_type, kind.name, entity.to_json()).for_subscription("s-1")

    message = parse_event_message(frame.decode())

    assert message is not None
    assert (message.id, message.seq, message.event, message.entity_type) == ("s-1", 42, event_type, kind.name)
    assert type(message.entity) is kind.model and message.entity == entity
    # The same as reading it as plain JSON and validating the entity in a second step.
    assert message.entity == kind.model.model_validate(orjson.loads(frame)["entity"])


def test_a_message_that_is_not_an_event_that_parses_is_left_to_plain_json() -> None:
    assert parse_event_message(subscribed_frame("s-1", 3, "e")) is None
    unknown_field = b'{"type":"event","id":"s","seq":1,"event":"CREATE","entityType":"Patient","entity":{"nope":1}}'
    assert parse_event_message(unknown_field) is None
    unknown_type = b'{"type":"event","id":"s","seq":1,"event":"CREATE","entityType":"Invoice","entity":{}}'
    assert parse_event_message(unknown_type) is None
    later_server = b'{"type":"event","id":"s","seq":1,"event":"CREATE","entityType":"Patient","entity":{},"more":1}'
    parsed = parse_event_message(later_server)
    assert parsed is not None and parsed.seq == 1, "a field a later server adds to the message is ignored"


def test_server_frames_are_json_objects_with_their_type() -> None:
    assert orjson.loads(subscribed_frame("s", 3, "e")) == {"type": "subscribed", "id": "s", "position": 3, "epoch": "e"}
    assert orjson.loads(gap_frame("s", 1, 9, "e", "why"))["from"] == 1
    assert orjson.loads(error_frame("bad", "no", "s")) == {"type": "error", "code": "bad", "message": "no", "id": "s"}
    assert "id" not in orjson.loads(error_frame("bad", "no"))


def test_a_batch_takes_what_waits_up_to_its_message_and_byte_bounds() -> None:
    queue = deque(b'{"n":%d}' % i for i in range(BATCH_MESSAGES + 5))
    first = batch_frames(queue)
    assert [orjson.loads(line)["n"] for line in first.split(b"\n")] == list(range(BATCH_MESSAGES))
    assert batch_frames(queue).split(b"\n") == [b'{"n":%d}' % i for i in range(BATCH_MESSAGES, BATCH_MESSAGES + 5)]
    assert not queue

    big = b"x" * (BATCH_BYTES // 2)
    queue = deque([big, big, b"small"])
    assert batch_frames(queue) == big  # a second one would pass the byte bound
    assert batch_frames(queue) == big + b"\n" + b"small"
    huge = b"y" * (BATCH_BYTES * 2)
    queue = deque([huge, b"after"])
    assert batch_frames(queue) == huge  # a message over the bound goes alone
    assert batch_frames(queue) == b"after"


@given(st.text(max_size=200))
def test_a_close_reason_fits_a_close_frame_and_keeps_what_fits(reason: str) -> None:
    cut = fit_close_reason(reason)
    encoded = cut.encode("utf-8", "replace")
    assert len(encoded) <= 123
    assert reason.encode("utf-8", "replace").startswith(encoded)
    assert cut == reason or len(encoded) >= 123 - 3, "cut at most one character short of the bound"
