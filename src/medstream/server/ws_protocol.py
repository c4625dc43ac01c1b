"""uvicorn's websockets protocol as Medstream runs it: permessage-deflate without a compression context kept
per connection, and a way to send a text message at once, without the ASGI round.

**Deflate** (RFC 7692 section 7.1.1). uvicorn negotiates permessage-deflate with context takeover: each socket
keeps a zlib compressor and decompressor for its whole life, about 40 KB, whether it sends anything or not.
With `server_no_context_takeover` and `client_no_context_takeover`, each message is compressed on its own and
the zlib state exists only while a message is being compressed or decompressed: an idle socket holds none.
The price is a lower ratio on small messages (an event frame: 1.5x instead of 3.4x), not on batched frames,
which carry their own repetition (3.6x for 16 events).

**Sending at once.** An ASGI send is a coroutine that goes through Starlette's WebSocket, its exception
wrapper and uvicorn's `send`, with the frame decoded to text on the way in and encoded back on the way out;
for one event to ten subscribers that was a fifth of the event loop's work per write. The endpoint finds
`send_now` in the scope's extensions (`SEND_NOW`) and calls it with the frame's bytes: it frames and writes
them as uvicorn's `send` would, and declines (returns False) whenever that `send` would have to wait (the
transport's buffer is full) or could not send (handshake not done, closing, closed), for the caller to take
the ASGI way instead.

**Dropping a client that stopped reading.** uvicorn's close waits for the transport's buffer to drain twice:
its `send` of the close frame waits until the transport takes writes again, and closing the transport waits
until its buffer is sent. For a client that stopped reading (the one a full send queue closes with 4429, one
silent past the heartbeat), neither ever comes: the endpoint's close gave up after its own 5 s, and the
connection, its buffers and its file descriptor stayed for as long as the client's TCP stack acknowledged the
server's probes. Here the close frame is queued behind what the buffer holds, without waiting, and a transport
that has not gone `close_timeout` seconds after it began to close (by that close, by the end of the endpoint,
or by a server shutdown) is aborted.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, cast

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

from medstream.errors import CloseCode

SEND_NOW = "medstream.send_now"


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets protocol, offering permessage-deflate with no context takeover either way, and
    `send_now` in each socket's scope. `with_close_timeout` makes one with another close timeout."""

    close_timeout_seconds: ClassVar[float] = 10.0

    @classmethod
    def with_close_timeout(cls, seconds: float) -> type[WebSocketProtocol]:
        return type(cls.__name__, (cls,), {"close_timeout_seconds": seconds})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.close_timeout = self.close_timeout_seconds
        if self.config.ws_per_message_deflate:
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
        self.transport = cast(asyncio.Transport, _DroppingTransport(self.transport, self.close_timeout))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)  # which closes the transport once more
        transport = self.transport
        if isinstance(transport, _DroppingTransport):
            transport.gone()

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
