"""uvicorn's HTTP protocol, sending each response's head and body in one write instead of two.

uvicorn writes a response's status line and headers to the socket as soon as the app starts the response,
and the body in a second write. With TCP_NODELAY (uvloop sets it) that is two TCP segments, two send system
calls on the server and two wake-ups of the client, for every REST call: on a busy node the second one was
a tenth of a write's CPU. Here a request's first write is held back until its next one, which is the body
for every response Medstream makes, and both go out together. Whatever comes next, the held bytes go out at
the end of the event loop's current iteration, so no response can be held longer than that.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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
    """uvicorn's httptools protocol whose response cycles write through a HeadHeldTransport."""

    def on_headers_complete(self) -> None:
        previous = self.cycle
        super().on_headers_complete()
        # A new cycle (not an upgrade to a websocket): its task is created but has not run yet.
        if self.cycle is not previous and self.cycle is not None:
            self.cycle.transport = HeadHeldTransport(self.transport, self.loop)  # type: ignore[assignment]
