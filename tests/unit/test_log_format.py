"""The log line formats, the request id's filter, the redaction of query strings and of the websockets library's
wire lines, and which incoming X-Request-ID is kept (server/log_format.py, server/request_ids.py)."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import websockets

from medstream.server.log_format import (
    REDACTED,
    JsonFormatter,
    NoWebSocketWire,
    RedactQueries,
    RequestIdFilter,
    TextFormatter,
    redacted_query,
)
from medstream.server.request_ids import MAX_LENGTH, current_request_id, request_id_of

# 2026-01-31T09:15:02.481Z
CREATED = 1_769_850_902.481


def record(
    name: str = "medstream.server",
    level: int = logging.INFO,
    message: str = "hello %s",
    args: tuple[object, ...] = ("world",),
    *,
    pathname: str = __file__,
    exc_info: Any = None,
) -> logging.LogRecord:
    made = logging.LogRecord(name, level, pathname, 1, message, args, exc_info)
    made.created, made.msecs = CREATED, 481.0
    return made


def filtered(made: logging.LogRecord, request_id: str | None) -> logging.LogRecord:
    """`made` through RequestIdFilter while `request_id` is the current request's."""

    def run() -> None:
        current_request_id.set(request_id)
        assert RequestIdFilter().filter(made)

    contextvars.copy_context().run(run)
    return made


def test_a_text_line_has_utc_time_with_milliseconds_level_logger_request_id_and_message() -> None:
    line = TextFormatter().format(filtered(record(), "req-1"))
    assert line == "2026-01-31T09:15:02.481Z INFO medstream.server [req-1] hello world"


def test_a_text_line_outside_of_a_request_shows_a_dash_and_an_exception_follows_it() -> None:
    try:
        raise RuntimeError("broken")
    except RuntimeError:
        made = record(level=logging.ERROR, message="failed", args=(), exc_info=sys.exc_info())
    first, *rest = TextFormatter().format(filtered(made, None)).splitlines()
    assert first == "2026-01-31T09:15:02.481Z ERROR medstream.server [-] failed"
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "RuntimeError: broken"


def test_a_json_line_is_one_object_with_the_same_fields() -> None:
    line = JsonFormatter().format(filtered(record(message='say "%s"\nnext', args=("hi",)), "req-2"))
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "2026-01-31T09:15:02.481Z",
        "level": "INFO",
        "logger": "medstream.server",
        "requestId": "req-2",
        "message": 'say "hi"\nnext',
    }


def test_a_json_access_line_has_its_request_fields_and_an_error_its_traceback() -> None:
    access = record("uvicorn.access", message='%s - "%s %s HTTP/%s" %d', args=("10.0.0.7:5", "GET", "/h", "1.1", 200))
    entry = json.loads(JsonFormatter().format(filtered(access, None)))
    assert entry["requestId"] is None
    assert (entry["client"], entry["method"], entry["path"], entry["status"]) == ("10.0.0.7:5", "GET", "/h", 200)
    assert entry["message"] == '10.0.0.7:5 - "GET /h HTTP/1.1" 200'
    try:
        raise ValueError("bad")
    except ValueError:
        failed = record(level=logging.ERROR, exc_info=sys.exc_info())
    assert json.loads(JsonFormatter().format(filtered(failed, None)))["exception"].endswith("ValueError: bad")


JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("/health", "/health"),
        ("/rest/v1/patients?limit=3&startAfter=abc", "/rest/v1/patients?limit=3&startAfter=abc"),
        (f"/x?access_token={JWT}&limit=3", f"/x?access_token={REDACTED}&limit=3"),
        ("/x?Password=p%40ss&user=me", f"/x?Password={REDACTED}&user=me"),
        (
            "/x?api-key=k1&API_KEY=k2&key=k3&sig=s&auth=a",
            f"/x?api-key={REDACTED}&API_KEY={REDACTED}" + f"&key={REDACTED}&sig={REDACTED}&auth={REDACTED}",
        ),
        (f"/x?note={JWT}", f"/x?note={REDACTED}"),  # a JWT under any name
        ("/x?refresh%5Ftoken=abc&author=me&flag", f"/x?refresh%5Ftoken={REDACTED}&author=me&flag"),
    ],
)
def test_secret_query_values_are_redacted(path: str, shown: str) -> None:
    assert redacted_query(path) == shown


def test_uvicorn_lines_have_their_paths_redacted_and_others_are_left_alone() -> None:
    access = record("uvicorn.access", message='%s - "%s %s HTTP/%s" %d', args=("c", "GET", "/x?token=t", "1.1", 200))
    handshake = record("uvicorn.error", message='%s - "WebSocket %s" [accepted]', args=("c", "/ws?jwt=t"))
    own = record("medstream.server", args=("/x?token=t",))
    for made in (access, handshake, own):
        assert RedactQueries().filter(made)
    assert access.getMessage() == f'c - "GET /x?token={REDACTED} HTTP/1.1" 200'
    assert handshake.getMessage() == f'c - "WebSocket /ws?jwt={REDACTED}" [accepted]'
    assert own.getMessage() == "hello /x?token=t"


def test_the_websockets_librarys_debug_lines_are_dropped_and_nothing_else() -> None:
    library = str(Path(websockets.__file__).parent / "protocol.py")
    frame = record("uvicorn.error", logging.DEBUG, "< TEXT %r", ('{"type":"auth","token":"x"}',), pathname=library)
    library_warning = record("uvicorn.error", logging.WARNING, pathname=library)
    uvicorn_debug = record("uvicorn.error", logging.DEBUG)
    assert not NoWebSocketWire().filter(frame)
    assert NoWebSocketWire().filter(library_warning) and NoWebSocketWire().filter(uvicorn_debug)


@pytest.mark.parametrize(
    "value", [b"abc", b"7c9e6679-7425-40de-944b-e07fc1f90ae7", b"req:1/2+3=4_5.6", b"x" * MAX_LENGTH]
)
def test_a_sane_incoming_request_id_is_kept(value: bytes) -> None:
    assert request_id_of([(b"accept", b"*/*"), (b"x-request-id", value)]) == value.decode()


@pytest.mark.parametrize(
    "value", [b"", b"x" * (MAX_LENGTH + 1), b"two words", b"a\tb", b'a"b', b"<b>", "\u00e9".encode(), b"a\r\nb"]
)
def test_an_insane_or_missing_request_id_is_replaced_by_a_new_one(value: bytes) -> None:
    made = request_id_of([(b"x-request-id", value)])
    assert re.fullmatch(r"[0-9a-f]{16}", made) and made != value.decode(errors="replace")
    assert re.fullmatch(r"[0-9a-f]{16}", request_id_of([]))
    assert request_id_of([]) != request_id_of([])
