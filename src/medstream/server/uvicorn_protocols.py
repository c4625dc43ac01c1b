"""Every adaptation of uvicorn's and websockets' protocols that Medstream makes, each for a measured reason.

Tested with uvicorn 0.55 and websockets 17.4; every attribute listed under "Relies on" below is there from uvicorn
0.53 and websockets 15 on, which pyproject.toml pins as the range (`WebSocketsSansIOProtocol` came in 0.35, its
`close_timeout`, `close_timer` and `disconnected` in 0.53). `missing_attributes()` checks the installed versions
(tests/unit/test_uvicorn_protocols.py runs it).

**One write per response** (`HttpProtocol`, `HeadHeldTransport`). uvicorn writes a response's status line and
headers as soon as the app starts the response, and the body in a second write: with TCP_NODELAY (uvloop sets it)
two segments, two send system calls and two client wake-ups per REST call; on a busy node the second was a tenth
of a write's CPU (REST writer client CPU 156-181 -> 140-143 us per request, bench/README.md). A cycle's first write
is held until its next one (the body, for every response Medstream makes) or the end of the loop's iteration.

**Deflate without context takeover** (`WebSocketProtocol.__init__`, RFC 7692 section 7.1.1). uvicorn negotiates
permessage-deflate with context takeover: each socket keeps a zlib compressor and decompressor for its whole life,
about 40 KB, idle or not (memory per idle connection with deflate on: 87 -> 46 KB, bench.connections). Without it
the zlib state exists only while a message is compressed; the price is a lower ratio on small messages (an event
frame 1.5x instead of 3.4x), not on batched frames (3.6x for 16 events). `ws_deflate_context_takeover` restores
uvicorn's own negotiation.

**Sending at once** (`WebSocketProtocol.send_now`, in the scope's extensions as `SEND_NOW`). An ASGI send goes
through Starlette's WebSocket, its exception wrapper and uvicorn's `send`, the frame decoded to text and encoded
back: a fifth of the event loop's work per write for one event to ten subscribers. `send_now` frames and writes
the bytes as uvicorn's `send` would, and declines (False) whenever that `send` would wait or could not send
(bench.fanout, 100 subscribers: 43-48k -> 64-66k deliveries/s).

**Dropping a client that stopped reading** (`WebSocketProtocol.send`, `_DroppingTransport`). uvicorn's close waits
for the transport's buffer to drain, twice; for a client that stopped reading (closed with 4429, or silent past
the heartbeat) that never comes, and its connection, buffers and descriptor stayed for as long as its TCP stack
acknowledged probes. The close frame is queued behind the buffer without waiting, and a transport not gone
`close_timeout` seconds after it began to close is aborted.

**Slow or idle connections cannot fill the server** (`HttpProtocol.connection_made`, `on_message_begin`,
`on_headers_complete`, `connection_lost`; `WebSocketProtocol.connection_lost`). uvicorn times out a keep-alive
connection only after a response: one that never sends a byte, or sends half a request head, is held for ever
(20,000 of them blocked every new connection, `/health` included, by exhausting file descriptors). A connection
must complete each request head within `head_timeout` seconds of opening or of starting that request. Each
accepted connection is counted, in all and per peer address (server/connection_limits.py), until it is gone,
websocket or not; past a cap it is answered 503 with a JSON reason and closed before anything is read.

Relies on (checked by `missing_attributes`):
- `uvicorn.protocols.http.httptools_impl.HttpToolsProtocol`: `connection_made`, `connection_lost`,
  `on_message_begin`, `on_headers_complete` (overridden, called through `super()`); `cycle`, `transport`, `loop`.
- `uvicorn.protocols.http.httptools_impl.RequestResponseCycle`: `transport` (replaced; every write goes through it).
- `uvicorn.protocols.websockets.websockets_sansio_impl.WebSocketsSansIOProtocol`: `handle_connect`,
  `connection_made`, `connection_lost`, `send` (overridden); `config`, `conn`, `scope`, `transport`, `loop`,
  `close_timeout`, `close_timer`, `handshake_complete`, `initial_response`, `writable`, `disconnected`,
  `close_sent`, `read_paused`, `queue`.
- `uvicorn.config.Config`: `ws_per_message_deflate`.
- `websockets.server.ServerProtocol`: `available_extensions`, `send_close`, `send_text`, `data_to_send`.
- `websockets.extensions.permessage_deflate.ServerPerMessageDeflateFactory` parameters: `server_no_context_takeover`,
  `client_no_context_takeover`, `server_max_window_bits`, `client_max_window_bits`, `compress_settings`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from typing import Any, ClassVar, cast

import orjson
import uvicorn.config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.server import ServerProtocol

from medstream.errors import CloseCode
from medstream.server.connection_limits import ConnectionLimits

SEND_NOW = "medstream.send_now"

log = logging.getLogger("medstream.server")

RELIED_ON: dict[type, tuple[str, ...]] = {
    HttpToolsProtocol: (
        "connection_made",
        "connection_lost",
        "on_message_begin",
        "on_headers_complete",
        "cycle",
        "transport",
        "loop",
    ),
    RequestResponseCycle: ("transport",),
    WebSocketsSansIOProtocol: (
        "handle_connect",
        "connection_made",
        "connection_lost",
        "send",
        "config",
        "conn",
        "scope",
        "transport",
        "loop",
        "close_timeout",
        "close_timer",
        "handshake_complete",
        "initial_response",
        "writable",
        "disconnected",
        "close_sent",
        "read_paused",
        "queue",
    ),
    uvicorn.config.Config: ("ws_per_message_deflate",),
    ServerProtocol: ("available_extensions", "send_close", "send_text", "data_to_send"),
}
RELIED_ON_PARAMETERS: dict[type, tuple[str, ...]] = {
    ServerPerMessageDeflateFactory: (
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
        "compress_settings",
    ),
}


def has_attribute(cls: type, name: str) -> bool:
    """`cls` has `name` as a class attribute, or one of its classes' code assigns `self.<name>`."""
    if hasattr(cls, name):
        return True
    assigned = re.compile(rf"\bself\.{re.escape(name)}\s*(:[^=\n]*)?=[^=]")
    for owner in cls.__mro__:
        try:
            source = inspect.getsource(owner)
        except (OSError, TypeError):
            continue
        if assigned.search(source):
            return True
    return False


def missing_attributes(
    relied_on: dict[type, tuple[str, ...]] = RELIED_ON, parameters: dict[type, tuple[str, ...]] = RELIED_ON_PARAMETERS
) -> list[str]:
    """`module.Class.name` for every attribute or constructor parameter relied on that the installed class lacks."""
    missing = [
        f"{cls.__module__}.{cls.__qualname__}.{name}"
        for cls, names in relied_on.items()
        for name in names
        if not has_attribute(cls, name)
    ]
    for cls, names in parameters.items():
        accepted = inspect.signature(cls).parameters
        missing += [f"{cls.__module__}.{cls.__qualname__}({name}=...)" for name in names if name not in accepted]
    return missing


def _peer_address(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


def _refusal(reason: str) -> bytes:
    body = orjson.dumps({"error": "unavailable", "message": reason, "details": []})
    head = (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
        b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head + body


class HeadHeldTransport:
    """A transport as one request's response cycle sees it: its first write is held until its second (or the
    end of this loop iteration, or `close`), then both go out as one."""

    __slots__ = ("_held", "_loop", "_started", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._started = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._started:
            self._started = True
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
            return
        if self._held is not None:
            data = self._held + data
            self._held = None
        self._transport.write(data)

    def flush(self) -> None:
        """Send what is held, if anything, and if the connection is still open."""
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose response cycles write through a HeadHeldTransport, which counts its
    connection in `limits` and closes one whose request head is not complete `head_timeout` seconds after it
    began. `configured` makes one with its own limits."""

    limits: ClassVar[ConnectionLimits | None] = None
    head_timeout: ClassVar[float | None] = None
    _head_timer: asyncio.TimerHandle | None = None

    @classmethod
    def configured(cls, limits: ConnectionLimits, head_timeout: float) -> type[HttpProtocol]:
        return type(cls.__name__, (cls,), {"limits": limits, "head_timeout": head_timeout})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.limits is not None:
            refused = self.limits.admit(transport, _peer_address(transport))
            if refused is not None:
                if self.limits.report_due(self.loop.time()):
                    log.warning("refusing connections: %s (%d refused since start)", refused, self.limits.refused)
                transport.write(_refusal(refused))
                transport.close()
                return
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)
        if self.limits is not None:
            self.limits.release(self.transport)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # a later request on a kept-alive connection: the first one's runs on
            self._start_head_timer()

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        previous = self.cycle
        super().on_headers_complete()
        # A new cycle (not an upgrade to a websocket): its task is created but has not run yet.
        if self.cycle is not previous and self.cycle is not None:
            self.cycle.transport = HeadHeldTransport(self.transport, self.loop)  # type: ignore[assignment]

    def _start_head_timer(self) -> None:
        if self.head_timeout is not None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets protocol, offering permessage-deflate with no context takeover either way (unless
    `context_takeover`), `send_now` in each socket's scope, a close that cannot drain becoming an abort, and its
    connection released from `limits` when it is gone. `configured` makes one with its own settings."""

    close_timeout_seconds: ClassVar[float] = 10.0
    context_takeover: ClassVar[bool] = False
    limits: ClassVar[ConnectionLimits | None] = None
    _counted: asyncio.BaseTransport | None = None

    @classmethod
    def configured(
        cls, *, close_timeout: float, context_takeover: bool = False, limits: ConnectionLimits | None = None
    ) -> type[WebSocketProtocol]:
        attributes = {"close_timeout_seconds": close_timeout, "context_takeover": context_takeover, "limits": limits}
        return type(cls.__name__, (cls,), attributes)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.close_timeout = self.close_timeout_seconds
        if self.config.ws_per_message_deflate and not self.context_takeover:
            self.conn.available_extensions = [
                ServerPerMessageDeflateFactory(
                    server_no_context_takeover=True,
                    client_no_context_takeover=True,
                    server_max_window_bits=12,
                    client_max_window_bits=12,
                    compress_settings={"memLevel": 5},
                )
            ]

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        extensions: dict[str, Any] = self.scope["extensions"]
        extensions[SEND_NOW] = self.send_now

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._counted = transport  # admitted by the HTTP protocol it was upgraded from
        self.transport = cast(asyncio.Transport, _DroppingTransport(self.transport, self.close_timeout))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)  # which closes the transport once more
        transport = self.transport
        if isinstance(transport, _DroppingTransport):
            transport.gone()
        if self.limits is not None and self._counted is not None:
            self.limits.release(self._counted)

    async def send(self, message: Any) -> None:
        if (
            message["type"] == "websocket.close"
            and self.handshake_complete
            and self.initial_response is None
            and not self.writable.is_set()
        ):
            self._close_behind_buffer(message.get("code", CloseCode.NORMAL_CLOSURE), message.get("reason", "") or "")
            return
        await super().send(message)

    def _close_behind_buffer(self, code: int, reason: str) -> None:
        """uvicorn's `send` of a close, without first waiting until the transport takes writes again."""
        if self.disconnected:
            raise ClientDisconnected()
        if self.close_sent or self.transport.is_closing():
            return
        try:
            self.conn.send_close(code, reason)
        except InvalidState:
            raise ClientDisconnected() from None
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)

    def send_now(self, text: bytes) -> bool:
        """Send `text` (UTF-8) as one text message now; False, sending nothing, if it cannot go without waiting."""
        if (
            self.disconnected
            or self.close_sent
            or not self.handshake_complete
            or self.initial_response is not None
            or not self.writable.is_set()
            or self.transport.is_closing()
        ):
            return False
        try:
            self.conn.send_text(text)
        except InvalidState:
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True


class _DroppingTransport:
    """A socket's transport whose `close()` becomes an abort if the transport has not gone `timeout` seconds
    later (its buffer never drained). Everything else is the transport's own; `write` and `is_closing` are
    bound once, as every frame sent calls them."""

    __slots__ = ("_gone", "_timeout", "_timer", "_transport", "is_closing", "write")

    def __init__(self, transport: asyncio.Transport, timeout: float) -> None:
        self._transport = transport
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self._gone = False
        self.write = transport.write
        self.is_closing = transport.is_closing

    def close(self) -> None:
        self._transport.close()
        if self._timer is None and not self._gone:
            self._timer = asyncio.get_running_loop().call_later(self._timeout, self._transport.abort)

    def gone(self) -> None:
        """The connection is lost: nothing is left to abort, now or later."""
        self._gone = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
