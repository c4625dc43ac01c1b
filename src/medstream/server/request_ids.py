"""Request ids: each HTTP request and each websocket connection gets one (from the edge middleware,
server/edge.py), put on every line logged while it is served (server/log_format.py), on its HTTP answer
(`X-Request-ID`) and in the body of an error answer.

An `X-Request-ID` header sent by the client (or set by a reverse proxy in front of the node) is kept when it is
sane: 1 to 128 characters among letters, digits and `._:+/=-`, so that it can neither split a log line nor
carry markup. Otherwise the id is 16 random hex digits.
"""

from __future__ import annotations

import re
from contextvars import ContextVar

from medstream.model.ids import random_hex

HEADER = "X-Request-ID"
HEADER_KEY = HEADER.lower().encode("latin-1")
MAX_LENGTH = 128
_SANE = re.compile(rb"[A-Za-z0-9._:+/=-]{1,%d}" % MAX_LENGTH)

# The id of the request or websocket connection being served; None outside of one (start-up, the dispatcher).
current_request_id: ContextVar[str | None] = ContextVar("medstream_request_id", default=None)


def new_request_id() -> str:
    return random_hex(8)  # from a pool of random bytes: one system call per many requests


def request_id_from(value: bytes | None) -> str:
    """The id of a request that sent `value` as its `X-Request-ID` (None: it sent none): `value` when it is sane,
    else a new id."""
    return value.decode("ascii") if value is not None and _SANE.fullmatch(value) else new_request_id()


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The request's own `X-Request-ID` when it is sane, else a new id."""
    return request_id_from(next((value for name, value in headers if name == HEADER_KEY), None))
