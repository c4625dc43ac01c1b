"""The bound on a request's body: 413 for a body over `max_body_bytes`, declared or streamed, before any route
reads it.

A body's length is what the HTTP framing says it is, and the server (uvicorn) enforces the framing: a body
with a `Content-Length` ends there, and an HTTP/1.x request with neither `Content-Length` nor
`Transfer-Encoding` has none (RFC 9112, 6.3). Such requests are bounded by their headers alone, and the route
reads the body straight from the server. Only a body of unknown length (chunked, or over HTTP/2) is read
ahead here, up to the bound, and handed on from memory.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medstream.errors import PayloadTooLargeError
from medstream.server.errors import error_response

_FRAMED_VERSIONS = frozenset({"1.0", "1.1"})


def framed_length(scope: Scope, declared: bytes | None, chunked: bool) -> int | None:
    """The body's length as its framing fixes it (`declared`: its `Content-Length`; `chunked`: whether it came
    with a `Transfer-Encoding`), or None when only reading it tells."""
    if chunked:
        return None
    if declared is not None:
        return int(declared) if declared.isdigit() else None
    return 0 if scope.get("http_version") in _FRAMED_VERSIONS else None


async def bounded_receive(receive: Receive, max_bytes: int, length: int | None) -> Receive | None:
    """The `receive` a route reads the body from, or None when the body is over `max_bytes`. `length`: the
    body's length as its framing fixes it (`framed_length`), or None to read it ahead here."""
    if length is not None:
        return receive if length <= max_bytes else None
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if size > max_bytes:
            return None
        if not message.get("more_body", False):
            break

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay


async def answer_too_large(max_bytes: int, scope: Scope, receive: Receive, send: Send) -> None:
    await error_response(PayloadTooLargeError(f"request body over {max_bytes} bytes"))(scope, receive, send)


def body_headers(scope: Scope) -> tuple[bytes | None, bool]:
    """The request's `Content-Length` (raw) and whether it has a `Transfer-Encoding`."""
    declared = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            declared = value
        elif name == b"transfer-encoding":
            chunked = True
    return declared, chunked


class BodySizeLimit:
    """Pure ASGI middleware: the body bound alone, for a stack where other middleware stands between it and the
    edge (server/edge.py, which bounds the body itself otherwise)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, chunked = body_headers(scope)
        bounded = await bounded_receive(receive, self.max_bytes, framed_length(scope, declared, chunked))
        if bounded is None:
            await answer_too_large(self.max_bytes, scope, receive, send)
            return
        await self.app(scope, bounded, send)
