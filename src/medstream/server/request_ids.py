"""Request ids: each HTTP request and each websocket connection gets one, put on every line logged while it is
served (server/log_format.py), on its HTTP answer (`X-Request-ID`) and in the body of an error answer.

An `X-Request-ID` header sent by the client (or set by a reverse proxy in front of the node) is kept when it is
sane: 1 to 128 characters among letters, digits and `._:+/=-`, so that it can neither split a log line nor
carry markup. Otherwise the id is 16 random hex digits.
"""

from __future__ import annotations

import re
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medstream.model.ids import random_hex

HEADER = "X-Request-ID"
_HEADER_KEY = HEADER.lower().encode("latin-1")
MAX_LENGTH = 128
_SANE = re.compile(rb"[A-Za-z0-9._:+/=-]{1,%d}" % MAX_LENGTH)

# The id of the request or websocket connection being served; None outside of one (start-up, the dispatcher).
current_request_id: ContextVar[str | None] = ContextVar("medstream_request_id", default=None)


def new_request_id() -> str:
    return random_hex(8)  # from a pool of random bytes: one system call per many requests


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The request's own `X-Request-ID` when it is sane, else a new id."""
    for name, value in headers:
        if name == _HEADER_KEY:
            return value.decode("ascii") if _SANE.fullmatch(value) else new_request_id()
    return new_request_id()


class RequestIds:
    """Pure ASGI middleware: sets `current_request_id` for an HTTP request or a websocket connection, and adds
    `X-Request-ID` to an HTTP answer.

    The id is set and not reset: each request and each connection runs in an asyncio task of its own (uvicorn's),
    so it ends with the task, and what is logged after the app returned or raised (uvicorn's "Exception in ASGI
    application", the 500 handler outside every middleware) still carries it. The tasks a websocket connection
    starts inherit it. A websocket's handshake answer carries no header: its id is for the logs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "websocket":
                current_request_id.set(request_id_of(scope["headers"]))
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope["headers"])
        current_request_id.set(request_id)
        header = (_HEADER_KEY, request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        await self.app(scope, receive, send_with_id)
