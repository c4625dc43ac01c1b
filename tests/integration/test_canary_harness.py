"""The canary harness (tests/integration/canary.py) finds what is there and only that: markers written in clear
through REST and the events websocket are found in the tap, the logs, the database files and dumps; a marker sent
only inside base64 is found by its base64 form at its alignment; a marker never sent is found nowhere."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import connect

from tests.integration.canary import MIN_MARKER_BYTES, AsgiTap, canary_server, find, forms, new_marker
from tests.integration.raw_events import WAIT, login, ws_url

# Its base64 has "+" and "/" at every alignment, so its URL-safe base64 differs.
URL_UNSAFE_TEXT = "???~~~>>>"
# Quotes, a backslash, a control character, Latin-1, the BMP and beyond it (a surrogate pair in UTF-16).
UNICODE_TEXT = ' "quoted" \\ tab\t é ✓ \U0001f600'


def test_the_forms_are_the_ways_a_marker_is_written() -> None:
    marker = new_marker("forms") + URL_UNSAFE_TEXT + UNICODE_TEXT
    utf8 = marker.encode()
    found = forms(marker)

    assert found["utf-8"] == utf8
    assert found["utf-16-le"] in marker.encode("utf-16-le") and found["utf-16-be"] in marker.encode("utf-16-be")
    assert found["json"] in json.dumps({"comment": marker}).encode()
    assert found["json utf-8"] in orjson.dumps({"comment": marker})
    assert found["json utf-8"] in json.dumps({"comment": marker}, ensure_ascii=False).encode()
    for every_char in (found["json \\u"], found["json \\U"]):
        assert json.loads(b'"' + every_char + b'"') == marker
        assert every_char.count(b"\\u") == len(marker.encode("utf-16-le")) // 2
    assert b"\\ud83d\\ude00" in found["json \\u"] and b"\\uD83D\\uDE00" in found["json \\U"]
    assert found["hex"] == utf8.hex().encode()
    assert found["HEX"] == utf8.hex().upper().encode()
    for offset in range(3):
        for before in (offset, offset + 3, offset + 30):
            for after in range(3):
                data = os.urandom(before) + utf8 + os.urandom(after)
                assert found[f"base64+{offset}"] in base64.b64encode(data)
                assert found[f"base64url+{offset}"] in base64.urlsafe_b64encode(data)
            # At most the two characters that share bits with the bytes around the marker are left out.
            assert len(found[f"base64+{offset}"]) >= 4 * len(utf8) // 3 - 2


def test_a_form_equal_to_an_earlier_one_is_left_out() -> None:
    ascii_marker = new_marker("plain")

    assert set(forms(ascii_marker)) >= {"utf-8", "utf-16-le", "json \\u", "base64+0", "hex", "HEX"}
    assert "json" not in forms(ascii_marker) and "json utf-8" not in forms(ascii_marker)
    assert "json" in forms(ascii_marker + '"') and "json utf-8" not in forms(ascii_marker + '"')
    assert "json" in forms(ascii_marker + "é") and "json utf-8" not in forms(ascii_marker + "é")
    assert "base64url+0" in forms(ascii_marker + URL_UNSAFE_TEXT)
    assert len(set(forms(ascii_marker).values())) == len(forms(ascii_marker))


def test_a_marker_shorter_than_the_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_MARKER_BYTES} bytes"):
        forms("x" * (MIN_MARKER_BYTES - 1))


def test_find_names_each_capture_and_form_and_nothing_for_an_absent_marker() -> None:
    marker = new_marker("find") + UNICODE_TEXT
    marker_forms = forms(marker)
    aligned = base64.b64encode(b"\x00" + marker.encode() + b"!")
    captures = {
        "request": b"POST ... " + orjson.dumps({"comment": marker}),
        "dump": b"INSERT ... '" + json.dumps(marker).encode() + b"'",
        "file": os.urandom(100) + marker.encode("utf-16-le") + os.urandom(100),
        "binary": b'{"binaryValue": "' + aligned + b'"}',
        "elsewhere": os.urandom(4096),
    }

    assert find(marker, captures) == [
        "request: json utf-8",
        "dump: json",
        "file: utf-16-le",
        "binary: base64+1",
    ]
    assert marker_forms["base64+1"] in aligned and marker_forms["base64+0"] not in aligned
    assert find(new_marker("absent") + UNICODE_TEXT, captures) == []


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    """A websocket app that answers each message with the same text or bytes, through the ASGI `send`."""
    assert scope["type"] == "websocket"
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})
        else:
            return


async def test_the_tap_records_websocket_messages_both_ways_through_the_asgi_receive_and_send() -> None:
    text, data = new_marker("text"), new_marker("bytes")
    tap = AsgiTap(_echo)
    server = uvicorn.Server(uvicorn.Config(tap, host="127.0.0.1", port=0, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "the echo server did not start"
            await asyncio.sleep(0.02)
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        async with connect(f"ws://{host}:{port}/echo", proxy=None, open_timeout=WAIT) as websocket:
            await websocket.send(text)
            assert await websocket.recv() == text
            await websocket.send(data.encode("utf-16-le"))
            assert await websocket.recv() == data.encode("utf-16-le")
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)

    assert find(text, tap.captures()) == [
        "tap 0001 WEBSOCKET /echo received: utf-8",
        "tap 0001 WEBSOCKET /echo sent: utf-8",
    ]
    assert find(data, tap.captures()) == [
        "tap 0001 WEBSOCKET /echo received: utf-16-le",
        "tap 0001 WEBSOCKET /echo sent: utf-16-le",
    ]


def _places(marker: str, captures: dict[str, bytes]) -> set[str]:
    return {where.rsplit(": ", 1)[0] for where in find(marker, captures)}


def _forms_found(marker: str, captures: dict[str, bytes]) -> set[str]:
    return {where.rsplit(": ", 1)[1] for where in find(marker, captures)}


def _any(places: set[str], *parts: str) -> bool:
    return any(all(part in place for part in parts) for place in places)


async def _await_event(websocket: Any, subscription: str, entity_type: str) -> dict[str, Any]:
    while True:
        for line in str(await websocket.recv()).split("\n"):
            message: dict[str, Any] = orjson.loads(line)
            if (
                message.get("type") == "event"
                and message["id"] == subscription
                and message["entityType"] == entity_type
            ):
                return message


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_markers_in_clear_are_found_where_they_went_and_an_unsent_one_nowhere(
    backend: str, tmp_path: Path
) -> None:
    label, comment, subscription, path = (new_marker(x) for x in ("label", "comment", "sub", "path"))
    binaries = [new_marker(f"binary{offset}") for offset in range(3)]
    never_sent = new_marker("never")

    # The harness must find the markers a server holds in clear: this one takes clear content.
    async with canary_server(backend, tmp_path, require_encryption=False) as server:
        token = (await login(server.url, server.admin_login, server.admin_password))["token"]
        headers = {"Authorization": f"Bearer {token}"}
        async with connect(ws_url(server.url), proxy=None, open_timeout=WAIT) as websocket:
            await websocket.send(orjson.dumps({"type": "auth", "token": token}).decode())
            subscribe = {"type": "subscribe", "id": subscription, "entity": "DataSample", "events": ["CREATE"]}
            await websocket.send(orjson.dumps({**subscribe, "filter": None}).decode())
            async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=WAIT) as http:
                patient = await http.post("/rest/v1/patients", json={"labels": [{"type": "CANARY", "code": label}]})
                assert patient.status_code == 200, patient.text
                # Each binary marker behind 0, 1 and 2 bytes: only its base64 text ever travels or is stored.
                content = {
                    language: {"binaryValue": base64.b64encode(os.urandom(offset) + marker.encode()).decode()}
                    for language, offset, marker in zip(("en", "fr", "nl"), range(3), binaries, strict=True)
                }
                sample = await http.post(
                    f"/rest/v1/patients/{patient.json()['id']}/data-samples",
                    json={"comment": comment, "content": content},
                )
                assert sample.status_code == 200, sample.text
                event = await _await_event(websocket, subscription, "DataSample")
                assert event["entity"]["comment"] == comment
                missing = await http.get(f"/rest/v1/patients/{path}")
                assert missing.status_code == 404, missing.text
    captures = server.captures

    database = "sqlite file" if backend == "sqlite" else "pg_dump"
    table = "sqlite table" if backend == "sqlite" else "postgresql table public."
    for marker in (label, comment):
        places = _places(marker, captures)
        assert _any(places, "tap", "POST /rest/v1/patients", "request"), places
        assert _any(places, "tap", "POST /rest/v1/patients", "response"), places
        assert _any(places, database, "(running 1)") and _any(places, database, "(stopped)"), places
        assert _any(places, table, "outbox", "(running 1)") and _any(places, table, "outbox", "(stopped)"), places
    assert _any(_places(label, captures), table, "patients", "(stopped)")
    assert _any(_places(comment, captures), table, "data_samples", "(stopped)")
    # The event frame the server sent (through the ASGI send or at once), and the subscribe message it received.
    assert _any(_places(comment, captures), "tap", "WEBSOCKET /ws/v1/events sent")
    assert _any(_places(subscription, captures), "tap", "WEBSOCKET /ws/v1/events received")
    # The access line of the 404 names its path, in both of the server's log formats.
    assert {"server logs (text)", "server logs (json)"} <= _places(path, captures)

    for offset, marker in enumerate(binaries):
        assert _forms_found(marker, captures) == {f"base64+{offset}"}, find(marker, captures)
        places = _places(marker, captures)
        assert _any(places, "tap", "data-samples", "request") and _any(places, database, "(stopped)"), places

    assert find(never_sent, captures) == []
