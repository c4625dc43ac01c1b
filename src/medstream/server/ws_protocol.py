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
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

SEND_NOW = "medstream.send_now"


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets protocol, offering permessage-deflate with no context takeover either way, and
    `send_now` in each socket's scope."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
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
