"""A lean HTTP/1.1 client for the REST writers: keep-alive connections, one request in flight on each.

A benchmark's writers share the 2 cores with the server they measure. httpx spends about 1.5 ms of CPU on a
request here, so at 1,000 requests/s the writers alone would need most of a core; this client, which frames
requests by hand and reads `Content-Length` bodies, spends a small fraction of that. It speaks plain HTTP/1.1
to the server's real socket, as any client would; it is not a general client (no chunked bodies, no TLS, no
redirects), only what the writers need.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class HttpError(Exception):
    """The connection failed or the answer could not be read."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None and not self.waiter.done():
            try:
                answer = self._answer()
            except HttpError as exc:
                self.waiter.set_exception(exc)
                return
            if answer is not None:
                self.waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = HttpError(f"connection closed: {exc!r}")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    def _answer(self) -> tuple[int, bytes] | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            raise HttpError(f"not an HTTP status line: {lines[0]!r}") from None
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                raise HttpError(f"unsupported transfer-encoding {value.strip()!r}")
        total = end + 4 + length
        if len(self.buffer) < total:
            return None
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        return status, body

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        if self.lost is not None or self.transport is None:
            raise self.lost or HttpError("not connected")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class HttpClient:
    """Up to `connections` keep-alive connections to one server; `request` waits for a free one."""

    def __init__(self, url: str, headers: dict[str, str], *, connections: int = 1) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"only http://host:port URLs are supported, not {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        fixed = {"Host": f"{self.host}:{self.port}", "Connection": "keep-alive", **headers}
        self._head = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())
        self._idle: asyncio.LifoQueue[_Connection | None] = asyncio.LifoQueue()
        for _ in range(connections):
            self._idle.put_nowait(None)  # a slot, connected on first use
        self._open: list[_Connection] = []

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """Send one request and return (status, body). Raises HttpError if the connection fails."""
        data = f"{method} {path} HTTP/1.1\r\n{self._head}Content-Length: {len(body)}\r\n\r\n".encode() + body
        connection = await self._idle.get()
        try:
            if connection is None or connection.lost is not None:
                connection = await self._connect()
            answer = await connection.exchange(data)
        except (HttpError, OSError) as exc:
            if connection is not None:
                connection.close()
            self._idle.put_nowait(None)
            raise HttpError(str(exc)) from exc
        self._idle.put_nowait(connection)
        return answer

    async def _connect(self) -> _Connection:
        _, connection = await asyncio.get_running_loop().create_connection(_Connection, self.host, self.port)
        self._open.append(connection)
        return connection

    async def close(self) -> None:
        for connection in self._open:
            connection.close()
        self._open.clear()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()
