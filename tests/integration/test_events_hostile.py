"""Hostile clients, generated: every message a client sends is answered as docs/protocol.md says, by an answer
naming it (`subscribed`, `error`, `unsubscribed`, `pong`) or by a close with a documented code and a reason,
and another client of the server keeps receiving its events throughout.

Each example is one socket, authenticated or not, and a few messages: malformed JSON, wrong types, unknown
message types and fields, binary frames, oversized and deeply nested payloads, filters of random JSON or over
their bounds, unknown entities, duplicate ids, unsubscribes of what was never subscribed, an `auth` with a bad
token. The server runs on an event loop of its own thread, so that hypothesis drives the examples (and shrinks
a failing one) from the test's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medstream.events.protocol import MAX_MESSAGE_BYTES
from medstream.filters.parse import MAX_DEPTH
from medstream.model.entities import KIND_BY_NAME
from tests.integration.raw_events import Frame, RawClient, create_patients, dedicated_server

T = TypeVar("T")
TRANSPORT_MAX_BYTES = 1 << 20  # uvicorn's ws_max_size in server/runner.py
IDS = st.sampled_from(["a", "b", "c"])  # few ids: duplicates and unsubscribes of live ids happen often


PAD = "@PAD@"


@dataclass(frozen=True)
class Sent:
    """A message to send and what it must get: `answer` (the type of the frame naming `id`, or one of
    several), or a close with `close`. A `payload` holding PAD is sent with `pad` characters in its place (so
    that hypothesis reports a huge message in a few words)."""

    payload: str | bytes
    close: int | None = None
    answer: frozenset[str] = frozenset()
    id: str | None = None
    pad: int = 0

    def wire(self) -> str | bytes:
        return self.payload.replace(PAD, "x" * self.pad) if isinstance(self.payload, str) else self.payload


def _json(message: Any) -> str:
    """Compact JSON, integers of any size included (the client may send them)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _subscribe(subscription_id: str, **fields: Any) -> dict[str, Any]:
    return {"type": "subscribe", "id": subscription_id, "entity": "Patient", "events": ["CREATE"]} | fields


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _not_json(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return True
    return False


def _nested_filter(depth: int) -> dict[str, Any]:
    tree: dict[str, Any] = {"$type": "PatientByIdsFilter", "ids": ["x"]}
    for _ in range(depth - 1):
        tree = {"$type": "ComplementFilter", "superSet": {"$type": "PatientByIdsFilter", "ids": ["y"]}, "subSet": tree}
    return tree


def _deeply_nested_message(depth: int) -> str:
    """A subscribe holding lists nested `depth` deep: more than the JSON reader takes."""
    return _json(_subscribe("x")).replace('"events"', '"n":' + "[" * depth + "]" * depth + ',"events"')


MALFORMED = st.one_of(
    st.text(max_size=30).filter(_not_json).map(lambda t: Sent(t, close=4400)),
    st.binary(min_size=1, max_size=30).filter(lambda b: _not_json(b.decode("latin-1"))).map(lambda b: Sent(b, 4400)),
    JSON_VALUES.filter(lambda v: not isinstance(v, dict)).map(lambda v: Sent(_json(v), close=4400)),
    st.text(max_size=12)
    .filter(lambda t: t not in {"auth", "subscribe", "unsubscribe", "ping", "pong"})
    .map(lambda t: Sent(_json({"type": t}), close=4400)),
    st.builds(lambda i, v: Sent(_json(_subscribe("x", id=v)), close=4400), IDS, st.integers() | st.lists(IDS)),
    st.builds(lambda v: Sent(_json(_subscribe("x", events=v)), close=4400), st.just([]) | st.just(["READ"])),
    st.builds(
        lambda v: Sent(_json(_subscribe("x", after=v)), close=4400),
        st.integers(max_value=-1) | st.sampled_from(["soon", "", "1.5"]),
    ),
    st.builds(lambda v: Sent(_json(_subscribe("x", filter=v)), close=4400), st.integers() | st.lists(st.integers())),
    st.builds(lambda k: Sent(_json({"type": "ping", k: 1}), close=4400), st.text(min_size=1, max_size=8)),
    st.builds(lambda v: Sent(_json({"type": "unsubscribe", "id": v}), close=4400), st.integers() | st.none()),
    st.integers(300, 2_000).map(lambda d: Sent(_deeply_nested_message(d), close=4400)),
    st.just(Sent(_json(_subscribe("x", filter={"ids": [PAD]})), close=4400, pad=MAX_MESSAGE_BYTES + 1)),
    st.just(Sent(_json({"type": "ping", "pad": PAD}), close=1009, pad=TRANSPORT_MAX_BYTES)),
    st.just(Sent(_json({"type": "auth", "token": "not-a-token"}), close=4001)),
)

ANSWERED = st.one_of(
    st.builds(
        lambda i, f: Sent(_json(_subscribe(i, filter=f)), answer=frozenset({"error", "subscribed"}), id=i),
        IDS,
        st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4),
    ),
    st.builds(
        lambda i, d: Sent(_json(_subscribe(i, filter=_nested_filter(d))), answer=frozenset({"error"}), id=i),
        IDS,
        st.integers(MAX_DEPTH + 1, 60),
    ),
    st.builds(
        lambda i, e: Sent(_json(_subscribe(i, entity=e)), answer=frozenset({"error"}), id=i),
        IDS,
        st.text(min_size=1, max_size=20).filter(lambda e: e not in KIND_BY_NAME),
    ),
    st.builds(lambda i: Sent(_json(_subscribe(i)), answer=frozenset({"error", "subscribed"}), id=i), IDS),
    st.builds(lambda i: Sent(_json({"type": "unsubscribe", "id": i}), answer=frozenset({"unsubscribed"}), id=i), IDS),
    st.just(Sent(_json({"type": "pong"}))),
)

SESSIONS = st.tuples(st.booleans(), st.lists(st.one_of(ANSWERED, ANSWERED, MALFORMED), min_size=1, max_size=5))


class Background:
    """An event loop in a thread of its own, for the server and the clients."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hostile-server", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], within: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(within)

    def stop(self) -> None:
        self.run(self._cancel_the_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @staticmethod
    async def _cancel_the_rest() -> None:
        """Cancel what the server left running (its heartbeat ends on its own only with the next tick)."""
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class Served:
    background: Background
    url: str
    token: str
    witness: RawClient

    async def witness_receives(self) -> None:
        [patient] = await create_patients(self.url, self.token)
        await self.witness.event_for("witness", patient["id"])
        assert self.witness.websocket.close_code is None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    background = Background()
    stack = contextlib.AsyncExitStack()
    try:
        server = background.run(stack.enter_async_context(dedicated_server(tmp_path_factory.mktemp("hostile"))))
        token = background.run(server.admin_token())
        witness = background.run(stack.enter_async_context(RawClient.opened(server.url, token)))
        assert background.run(witness.subscribe("witness"))["type"] == "subscribed"
        yield Served(background, server.url, token, witness)
    finally:
        background.run(stack.aclose())
        background.stop()


async def _session(served: Served, authenticated: bool, messages: list[Sent]) -> None:
    async with RawClient.opened(served.url, served.token if authenticated else None) as client:
        for message in messages:
            with contextlib.suppress(Exception):  # the server may have closed the socket already
                await client.send(message.wire())
        with contextlib.suppress(Exception):
            await client.send(_json({"type": "ping"}))
        closing = next((m for m in messages if m.close is not None), None)
        # A frame over the transport's bound fails the connection as it arrives, before the endpoint has handled
        # the messages ahead of it: it may close the socket first, whatever they were.
        cut = any(m.close == 1009 for m in messages)
        if not authenticated:  # anything but a valid auth first is refused, unanswered
            code, reason = await client.closed()
            assert code == 4001 or (cut and code == 1009), (code, reason)
            assert client.frames == [] and (reason or code == 1009)
        elif closing is None:
            await client.recv_until(lambda f: f["type"] == "pong")
            _assert_each_answered(client.frames, messages)
        else:
            code, reason = await client.closed()
            if not (cut and code == 1009):
                assert code == closing.close, f"closed with {code} ({reason!r}) for {closing.payload[:200]!r}"
                assert reason
                _assert_each_answered(client.frames, messages[: messages.index(closing)])
    await served.witness_receives()


def _assert_each_answered(frames: list[Frame], answered: list[Sent]) -> None:
    """Each message before the close (or the ping) got its answer, in order."""
    rest = [f for f in frames if f["type"] != "ping"]
    for message in answered:
        if not message.answer:
            continue
        found = next((f for f in rest if f.get("id") == message.id and f["type"] in message.answer), None)
        assert found is not None, f"no {set(message.answer)} for {message.payload[:200]!r} in {frames}"
        if found["type"] == "error":
            assert found["code"] and found["message"], found
        rest = rest[rest.index(found) + 1 :]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(session=SESSIONS)
def test_every_hostile_message_is_answered_or_closed_as_documented_and_another_client_is_served(
    served: Served, session: tuple[bool, list[Sent]]
) -> None:
    authenticated, messages = session
    served.background.run(_session(served, authenticated, messages))
