"""EventSocket: the SDK's websocket, websockets' asyncio client, read by one task that hands each text message to
a callback in the order the server sent them.

What the SDK asks of `websockets.asyncio.client.connect` (`open_event_socket`):
- **Back-pressure** (`max_queue`). While the SDK holds the socket (a subscription's callback is `max_pending_events`
  behind, `hold()`), the reader stops calling `recv()`; websockets' receive queue then fills past `MAX_QUEUE`
  frames (with what its last read brought) and stops reading the TCP socket, so the server's sends back up
  instead of memory here, until `release()`.
- **No keepalive pings** (`ping_interval=None`): liveness is Medstream's own heartbeat (docs/protocol.md), which
  the event stream runs with `send` and `ping`.
- **Proxy** (`proxy=True`): the one the environment names for the URL, as websockets finds it (`WSS_PROXY` or
  `WS_PROXY`, then SOCKS, `HTTPS_PROXY`, `HTTP_PROXY`; `NO_PROXY` honoured). An HTTP(S) proxy is asked for a tunnel
  (CONNECT); a SOCKS proxy needs the python-socks package.
- **Compression**: permessage-deflate is offered (`compression="deflate"`); a server that has it on gets it.
- **Redirects** of the opening handshake are followed as websockets follows them (never from wss:// to ws://).
- **Close**: `close()` is websockets' closing handshake, given up after `close_timeout` seconds (the connection
  is then dropped). While it runs the reader goes on reading, and drops what it reads, so that the server's answer
  is not stuck behind messages nobody waits for any more. `close_code` and `close_reason` are the server's (1006
  and "" when no close frame came).

A message the callback cannot handle (it raises) ends the connection with 1011 and nothing after it is handed
over: the SDK resumes before that message on a new socket. Binary messages are not part of Medstream's protocol:
they are logged and skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from medstream.errors import CloseCode

log = logging.getLogger("medstream.sdk")

# Frames websockets' client keeps read ahead of `recv()` before it stops reading the TCP socket (it reads again
# once one is left). Few, because a frame may hold up to 64 events (batched) and each one read ahead is one more a
# held subscription waits behind, and one more that a socket closed as too slow hands over before the SDK resumes:
# at 16 (websockets' default) a slow callback's backlog could grow by a thousand events.
MAX_QUEUE = 4

# A callback's answer to one message: the messages to send back, if any.
Replies = Iterable[str] | None


async def open_event_socket(
    url: str,
    on_message: Callable[[str], Replies],
    *,
    max_size: int,
    open_timeout: float,
    close_timeout: float,
) -> EventSocket:
    """Connect to the ws:// or wss:// `url` and complete the opening handshake within `open_timeout` seconds.

    Raises websockets' `InvalidURI`, `InvalidProxy`, `InvalidHandshake` (`InvalidStatus` for an answer other than
    101), `OSError` or `TimeoutError`. For wss://, the server's certificate is checked against the system's
    trusted certificates."""
    connection = await connect(
        url,
        compression="deflate",
        proxy=True,
        open_timeout=open_timeout,
        ping_interval=None,
        close_timeout=close_timeout,
        max_size=max_size,
        max_queue=MAX_QUEUE,
    )
    return EventSocket(connection, on_message)


class EventSocket:
    """One client websocket: `run()` reads it, handing each text message to the callback; `send`, `ping`, `hold`,
    `release`, `close`."""

    def __init__(self, connection: ClientConnection, on_message: Callable[[str], Replies]) -> None:
        self.connection = connection
        self._on_message = on_message
        self._readable = asyncio.Event()  # clear while held
        self._readable.set()
        self._discarding = False  # closing: what is read now is for nobody
        self._closing: asyncio.Task[None] | None = None

    @property
    def close_code(self) -> int | None:
        """The code of the server's close frame (1006 if none came); None until the connection is closed."""
        return self.connection.close_code

    @property
    def close_reason(self) -> str | None:
        """The reason in the server's close frame ("" if none came); None until the connection is closed."""
        return self.connection.close_reason

    @property
    def close_exc(self) -> ConnectionClosed:
        """The ConnectionClosed that says how the connection ended (once it has)."""
        return self.connection.close_exc

    @property
    def is_open(self) -> bool:
        return self.connection.state is State.OPEN

    @property
    def is_closed(self) -> bool:
        return self.connection.state is State.CLOSED

    @property
    def held(self) -> bool:
        """True between `hold()` and `release()`: messages wait in websockets' queue, then in the TCP socket."""
        return not self._readable.is_set()

    def hold(self) -> None:
        """Hand over no more messages until `release()` (the one being handled is the last). No-op once closing,
        as the server's answer must be read."""
        if self._closing is None:
            self._readable.clear()

    def release(self) -> None:
        self._readable.set()

    async def send(self, text: str) -> bool:
        """Send one text message; False (nothing sent) once the connection is closing or closed. The frame is
        written before anything is awaited, so messages go out in the order `send` is called."""
        if self.connection.state is not State.OPEN:
            return False
        try:
            await self.connection.send(text)
        except ConnectionClosed:
            return False
        return True

    async def ping(self) -> Awaitable[float]:
        """Send a ping; what it returns is done when its pong (or a later one) arrives. ConnectionClosed once the
        connection is closed."""
        return await self.connection.ping()

    async def run(self) -> None:
        """Read the socket until the connection is closed, handing each text message to the callback and sending
        its replies."""
        connection, on_message, readable = self.connection, self._on_message, self._readable
        try:
            while True:
                if not readable.is_set():
                    await readable.wait()
                message = await connection.recv()
                if self._discarding:
                    continue
                if not isinstance(message, str):
                    log.warning("event socket: a binary message from the server, ignored")
                    continue
                try:
                    replies = on_message(message)
                except Exception:
                    # The message is not lost quietly: the connection ends, as lost, and the SDK resumes before it.
                    log.exception("event socket: a message could not be handled; closing the connection")
                    self.begin_close(CloseCode.INTERNAL_ERROR, "client error")
                    continue
                if replies is not None:
                    for reply in replies:
                        await self.send(reply)
        except ConnectionClosed:
            return

    def begin_close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> asyncio.Task[None]:
        """Start the closing handshake (once; later calls return the same task) and hand over no more messages.
        The task ends when the connection is closed, at most `close_timeout` seconds after the close frame."""
        if self._closing is None:
            self._discarding = True
            self._readable.set()  # a held reader reads on, so that the server's answer gets through
            self._closing = asyncio.create_task(self.connection.close(code, reason), name="medstream-socket-close")
        return self._closing

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """The closing handshake: send a close frame, then wait for the server to close the connection, at most
        `close_timeout` seconds (after which the connection is dropped)."""
        await asyncio.shield(self.begin_close(code, reason))
