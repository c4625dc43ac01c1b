"""Slow or idle connections cannot fill the server (server/uvicorn_protocols.py, server/connection_limits.py): request
heads time out, connections are capped per peer address (websockets included), and the total stays below the
open-file limit. Real sockets; clients on 127.0.0.2 are another address of the loopback."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect

from medstream.server.connection_limits import FILE_HEADROOM, ConnectionLimits
from medstream.server.runner import MedstreamServer, make_server, start_server
from medstream.server.settings import Settings

CAP = 8
HEAD_TIMEOUT = 0.5
WAIT = 20  # generous bound on anything the server does within HEAD_TIMEOUT, for a loaded machine
HALF_HEAD = b"GET /health HTTP/1.1\r\nHost: medstream\r\n"  # no blank line: the head never ends
HEALTH = HALF_HEAD + b"\r\n"


@pytest_asyncio.fixture
async def limited(tmp_path: Path) -> AsyncIterator[tuple[MedstreamServer, str, int]]:
    settings = Settings(
        host="127.0.0.1",
        port=0,
        database_url=f"sqlite:///{tmp_path / 'limits.db'}",
        max_connections_per_address=CAP,
        http_head_timeout_seconds=HEAD_TIMEOUT,
        http_keep_alive_seconds=1,
    )
    server, task, url = await start_server(settings)
    try:
        yield server, url, int(url.rsplit(":", 1)[1])
    finally:
        server.should_exit = True
        await task


def limits_of(server: MedstreamServer) -> ConnectionLimits:
    limits = cast(Any, server.config.http).limits
    assert isinstance(limits, ConnectionLimits)
    return limits


async def open_from(address: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))


async def health_from(address: str, url: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, transport=httpx.AsyncHTTPTransport(local_address=address)) as http:
        return await http.get("/health")


async def wait_for_open(server: MedstreamServer, count: int) -> None:
    async with asyncio.timeout(WAIT):
        while limits_of(server).open != count:  # noqa: ASYNC110 - polling the server's own count, bounded
            await asyncio.sleep(0.01)


async def test_half_open_connections_fill_only_their_address_cap_and_are_closed_after_the_head_timeout(
    limited: tuple[MedstreamServer, str, int],
) -> None:
    server, url, port = limited
    stalled = [await open_from("127.0.0.1", port) for _ in range(CAP)]
    for i, (_reader, writer) in enumerate(stalled):
        if i % 2:  # half of them send half a head, the others nothing at all
            writer.write(HALF_HEAD)
            await writer.drain()
    await wait_for_open(server, CAP)

    # Another address is still served...
    assert (await health_from("127.0.0.2", url)).status_code == 200
    # ...but one more from the first address is refused at once, with a reason.
    reader, writer = await open_from("127.0.0.1", port)
    refusal = await asyncio.wait_for(reader.read(), WAIT)
    writer.close()
    head, _, body = refusal.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503"), refusal
    assert "too many connections from 127.0.0.1" in orjson.loads(body)["message"]

    # The stalled connections are closed by the server (EOF), none having sent a complete head.
    for reader, writer in stalled:
        assert await asyncio.wait_for(reader.read(), WAIT) == b""
        writer.close()
    await wait_for_open(server, 0)
    assert (await health_from("127.0.0.1", url)).status_code == 200  # their places are free again


async def test_a_kept_alive_connection_must_complete_its_next_head_too_and_idle_ones_are_closed(
    limited: tuple[MedstreamServer, str, int],
) -> None:
    _server, _url, port = limited
    idle = await open_from("127.0.0.1", port)
    slow = await open_from("127.0.0.1", port)
    for _reader, writer in (idle, slow):
        writer.write(HEALTH)
    for reader, _writer in (idle, slow):
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)).startswith(b"HTTP/1.1 200")
    slow[1].write(HALF_HEAD)  # within the keep-alive time, a next request that never completes its head

    for reader, writer in (idle, slow):
        await asyncio.wait_for(reader.read(), WAIT)  # the rest of the response, then EOF: not a timeout
        assert reader.at_eof()
        writer.close()


async def test_websockets_count_in_the_address_cap_until_they_are_gone(
    limited: tuple[MedstreamServer, str, int],
) -> None:
    server, url, port = limited
    ws_url = url.replace("http", "ws", 1) + "/ws/v1/events"
    sockets = [await connect(ws_url, local_addr=("127.0.0.1", 0)) for _ in range(CAP)]
    try:
        await wait_for_open(server, CAP)
        reader, writer = await open_from("127.0.0.1", port)
        assert (await asyncio.wait_for(reader.read(), WAIT)).startswith(b"HTTP/1.1 503")
        writer.close()
        await sockets.pop().close()
        await wait_for_open(server, CAP - 1)
        assert (await health_from("127.0.0.1", url)).status_code == 200
    finally:
        for socket in sockets:
            await socket.close()


def test_the_soft_open_file_limit_is_raised_at_start_and_the_cap_stays_below_it(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no finite hard limit on open files to raise the soft one to")
    lowered = min(soft, max(hard // 2, FILE_HEADROOM + 64))
    if lowered >= hard:
        pytest.skip(f"the hard open-file limit ({hard}) leaves no lower soft limit to start from")
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        server = make_server(Settings(port=0, database_url=f"sqlite:///{tmp_path / 'x.db'}"), log_level="warning")
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
        assert limits_of(server).total == hard - FILE_HEADROOM
        configured = make_server(Settings(port=0, database_url=f"sqlite:///{tmp_path / 'y.db'}", max_connections=10**9))
        assert limits_of(configured).total == hard - FILE_HEADROOM, "a setting above the limit is capped by it"
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
