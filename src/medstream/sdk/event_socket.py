"""EventSocket: the SDK's client websocket, websockets' sans-I/O `ClientProtocol` run on an `asyncio.Protocol`.

Each text message goes to a callback straight from `data_received`, with no queue and no task switch per message
(websockets' asyncio client spends 40-60% more CPU per message). So back-pressure is the caller's to keep:
`pause_reading()` stops reading the socket, and the server's sends back up, until `resume_reading()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl as ssl_module
import struct
from collections.abc import Callable
from typing import Any, cast

from websockets.asyncio.client import connect_http_proxy, connect_socks_proxy
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.http11 import USER_AGENT
from websockets.protocol import CLOSED, CONNECTING, OPEN
from websockets.proxy import Proxy, get_proxy, parse_proxy
from websockets.uri import WebSocketURI, parse_uri

from medstream.errors import CloseCode

log = logging.getLogger("medstream.sdk")

_TEXT, _BINARY, _CONT, _PONG = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.PONG
_Payload = bytes | bytearray | memoryview


async def open_event_socket(
    url: str,
    on_message: Callable[[str], None],
    *,
    max_size: int,
    open_timeout: float,
    close_timeout: float,
    ssl: ssl_module.SSLContext | None = None,
) -> EventSocket:
    """Connect to the ws:// or wss:// `url` and complete the opening handshake within `open_timeout` seconds.

    Raises websockets' `InvalidURI`, `InvalidHandshake` (`InvalidStatus` for an answer other than 101), `OSError`
    or `TimeoutError`. For wss://, `ssl` defaults to the system's trusted certificates."""
    uri = parse_uri(url)
    tls: dict[str, Any] = {}
    if uri.secure:
        tls = {"ssl": ssl or ssl_module.create_default_context(), "server_hostname": uri.host}
    elif ssl is not None:
        raise ValueError("an ssl context is for a wss:// URL")
    # permessage-deflate is offered, as websockets' own client does: a server that has it on gets it.
    protocol = ClientProtocol(uri, extensions=enable_client_permessage_deflate(None), max_size=max_size)
    socket = EventSocket(protocol, on_message, close_timeout)
    proxy = get_proxy(uri)
    try:
        async with asyncio.timeout(open_timeout):
            if proxy is None:
                await asyncio.get_running_loop().create_connection(lambda: socket, uri.host, uri.port, **tls)
            else:
                await _connect_through(parse_proxy(proxy), uri, socket, tls)
            await socket._opened
    except BaseException:
        socket._give_up_opening()
        raise
    return socket


async def _connect_through(proxy: Proxy, uri: WebSocketURI, socket: EventSocket, tls: dict[str, Any]) -> None:
    """Connect `socket` to `uri` through `proxy`, as websockets' own client does: the proxy the environment names
    for the URL (`WSS_PROXY`/`WS_PROXY`, then SOCKS, `HTTPS_PROXY`, `HTTP_PROXY`; `NO_PROXY` honoured). An HTTP(S)
    proxy is asked for a tunnel (CONNECT); a SOCKS proxy needs the python-socks package."""
    loop = asyncio.get_running_loop()
    if proxy.scheme.startswith("socks"):
        sock = await connect_socks_proxy(proxy, uri)
        await loop.create_connection(lambda: socket, sock=sock, **tls)
        return
    transport = await connect_http_proxy(proxy, uri, user_agent_header=USER_AGENT, ssl=proxy.scheme == "https" or None)
    try:
        transport.set_protocol(socket)
        if tls:
            tunnelled = await loop.start_tls(transport, socket, tls["ssl"], server_hostname=tls["server_hostname"])
            assert tunnelled is not None
            transport = tunnelled
    except BaseException:
        transport.abort()
        raise
    socket.connection_made(transport)


class EventSocket(asyncio.Protocol):
    """One client websocket: text messages to a callback as they are read, `send`, `ping`, `close`."""

    def __init__(self, protocol: ClientProtocol, on_message: Callable[[str], None], close_timeout: float) -> None:
        loop = asyncio.get_running_loop()
        self._protocol = protocol
        self._loop = loop
        self._on_message = on_message
        self._close_timeout = close_timeout
        self._transport: asyncio.Transport | None = None
        self._open = False  # the handshake is over (`_opened` is done)
        self._opened: asyncio.Future[None] = loop.create_future()
        self._closed: asyncio.Future[None] = loop.create_future()
        self._lost: BaseException | None = None
        self._fragments: list[_Payload] | None = None  # a fragmented message being received
        self._fragments_text = False
        self._failed = False  # a message could not be handled: the connection is closing, read no more
        self._pings: dict[bytes, asyncio.Future[None]] = {}
        self._close_timer: asyncio.TimerHandle | None = None
        self._paused = False

    # -- what the SDK uses --------------------------------------------------------------------------------

    @property
    def close_code(self) -> int | None:
        """The code of the server's close frame (1006 if none came); None until the connection is closed."""
        return self._protocol.close_code

    @property
    def close_reason(self) -> str | None:
        """The reason in the server's close frame ("" if none came); None until the connection is closed."""
        return self._protocol.close_reason

    @property
    def close_exc(self) -> ConnectionClosed:
        """The ConnectionClosed that says how the connection ended (once it has)."""
        exc = self._protocol.close_exc
        if self._lost is not None:
            exc.__cause__ = self._lost
        return exc

    @property
    def reading_paused(self) -> bool:
        """True between `pause_reading()` and `resume_reading()` (or the start of the closing handshake)."""
        return self._paused

    def send(self, text: str) -> None:
        """Send one text message; ConnectionClosed once the connection is closing or closed."""
        transport = self._transport
        if self._protocol.state is not OPEN or transport is None or transport.is_closing():
            raise self._closing_exc()
        self._protocol.send_text(text.encode())
        self._flush()

    def ping(self) -> asyncio.Future[None]:
        """Send a ping; the future is done when its pong (or a later one) arrives."""
        if self._protocol.state is not OPEN:
            raise self._closing_exc()
        payload = struct.pack("!I", random.getrandbits(32))
        while payload in self._pings:
            payload = struct.pack("!I", random.getrandbits(32))
        pong = self._pings[payload] = self._loop.create_future()
        self._protocol.send_ping(payload)
        self._flush()
        return pong

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """The closing handshake: send a close frame, then wait for the server to close the connection, at most
        the close timeout (after which the connection is dropped)."""
        if self._protocol.state is OPEN and self._transport is not None:
            self._protocol.send_close(code, reason)
            self._flush()
            self._expect_close()
            self.resume_reading()  # the server's answer must be read, even behind messages nobody waits for now
        elif self._protocol.state is CONNECTING:
            self.abort()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed, by either side or by its loss."""
        await asyncio.shield(self._closed)

    def abort(self, code: int | None = None, reason: str = "") -> None:
        """Drop the connection at once (no-op once it is closed). With `code`, a close frame that says why goes
        first, for a server that may still read it; nothing waits for its answer."""
        if self._transport is not None and not self._closed.done():
            if code is not None and self._protocol.state is OPEN:
                self._protocol.send_close(code, reason)
                self._flush()
            self._transport.abort()

    def pause_reading(self) -> None:
        """Stop reading the socket until `resume_reading()`: the server's sends back up instead of memory here.
        No-op once the connection is closing, as its closing handshake must be read."""
        transport = self._transport
        if not self._paused and self._protocol.state is OPEN and transport is not None and not transport.is_closing():
            self._paused = True
            transport.pause_reading()

    def resume_reading(self) -> None:
        """Read the socket again after `pause_reading()`."""
        if self._paused:
            self._paused = False
            if self._transport is not None and not self._transport.is_closing():
                self._transport.resume_reading()

    # -- asyncio.Protocol ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes
        request = self._protocol.connect()
        request.headers["User-Agent"] = USER_AGENT
        self._protocol.send_request(request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        protocol = self._protocol
        protocol.receive_data(data)
        events = protocol.events_received()
        self._flush()  # pongs to the server's pings and the echo of its close frame, queued by the protocol
        if not self._open:
            self._check_handshake()
        if protocol.close_expected():
            self._expect_close()
        for event in events:
            if not isinstance(event, Frame):
                continue  # the handshake's response, checked above
            opcode = event.opcode
            if opcode is _TEXT:
                if event.fin:
                    self._message(event.data)
                    if self._failed:
                        return
                else:
                    self._fragments, self._fragments_text = [event.data], True
            elif opcode is _CONT and self._fragments is not None:
                self._fragments.append(event.data)
                if event.fin:
                    message, self._fragments = b"".join(self._fragments), None
                    if self._fragments_text:
                        self._message(message)
                        if self._failed:
                            return
            elif opcode is _BINARY:
                # Not part of Medstream's protocol: dropped, the text messages around it are what count.
                log.warning("event socket: a binary message from the server, ignored")
                if not event.fin:
                    self._fragments, self._fragments_text = [], False
            elif opcode is _PONG:
                self._pong(bytes(event.data))

    def eof_received(self) -> bool | None:
        self._protocol.receive_eof()
        self._flush()
        if not self._open:
            self._check_handshake()
        return None  # the transport closes: after EOF there is nothing left to say

    def connection_lost(self, exc: Exception | None) -> None:
        self._protocol.receive_eof()  # idempotent; makes the state CLOSED
        self._lost = exc
        if self._close_timer is not None:
            self._close_timer.cancel()
        if not self._open:
            self._check_handshake()
            if not self._opened.done():
                self._opened.set_exception(ConnectionError("connection lost during the opening handshake"))
        for pong in self._pings.values():
            if not pong.done():
                pong.set_exception(self.close_exc)
        self._pings.clear()
        self._closed.set_result(None)

    # -- inside -------------------------------------------------------------------------------------------

    def _message(self, data: _Payload) -> None:
        try:
            text = str(data, "utf-8")
        except UnicodeDecodeError as exc:
            self._fail(CloseCode.INVALID_DATA, f"invalid UTF-8 at position {exc.start}")
            return
        try:
            self._on_message(text)
        except Exception:
            # The message is not lost quietly: the connection ends, as lost, and the SDK resumes before it.
            log.exception("event socket: a message could not be handled; closing the connection")
            self._fail(CloseCode.INTERNAL_ERROR, "client error")

    def _fail(self, code: int, reason: str) -> None:
        """Close with `code` and handle no more messages; the server's answer ends the connection."""
        self._failed = True
        self._protocol.fail(code, reason)
        self._flush()
        self._expect_close()
        self.resume_reading()

    def _pong(self, payload: bytes) -> None:
        if payload in self._pings:
            for sent in list(self._pings):  # a pong answers its ping and every ping before it
                pong = self._pings.pop(sent)
                if not pong.done():
                    pong.set_result(None)
                if sent == payload:
                    break

    def _give_up_opening(self) -> None:
        """`open_event_socket` failed or was cancelled: drop the connection; nobody waits for the handshake now."""
        if not self._opened.cancel() and not self._opened.cancelled():
            self._opened.exception()  # seen: an error nobody will await is not "never retrieved" at collection
        self.abort()

    def _check_handshake(self) -> None:
        protocol = self._protocol
        if protocol.handshake_exc is not None:
            self._open = True
            if not self._opened.done():
                self._opened.set_exception(protocol.handshake_exc)
        elif protocol.state is not CONNECTING:
            self._open = True
            if not self._opened.done():
                self._opened.set_result(None)

    def _expect_close(self) -> None:
        if self._close_timer is None and self._transport is not None:
            self._close_timer = self._loop.call_later(self._close_timeout, self._transport.abort)

    def _flush(self) -> None:
        transport = self._transport
        if transport is None:
            return
        for data in self._protocol.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():  # the protocol's end-of-stream marker: half-close
                with contextlib.suppress(OSError, RuntimeError):  # already closing (uvloop raises RuntimeError)
                    transport.write_eof()
            else:
                transport.close()

    def _closing_exc(self) -> ConnectionClosed:
        protocol = self._protocol
        if protocol.state is CLOSED:
            return self.close_exc
        return ConnectionClosedError(protocol.close_rcvd, protocol.close_sent, protocol.close_rcvd_then_sent)
