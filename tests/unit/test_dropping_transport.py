"""The event socket's transport wrapper (server/uvicorn_protocols.py): a close that cannot finish becomes an abort."""

from __future__ import annotations

import asyncio
import socket

from medstream.server.uvicorn_protocols import _DroppingTransport


class _Lost(asyncio.Protocol):
    def __init__(self) -> None:
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


async def _stalled_transport() -> tuple[_DroppingTransport, _Lost, socket.socket]:
    """A transport whose peer reads nothing, with far more written than the socket buffers hold."""
    server, peer = socket.socketpair()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    transport, protocol = await asyncio.get_running_loop().connect_accepted_socket(_Lost, sock=server)
    dropping = _DroppingTransport(transport, 0.2)
    for _ in range(64):
        dropping.write(b"x" * 65536)
    return dropping, protocol, peer


async def test_a_close_whose_buffer_never_drains_is_an_abort_after_the_timeout() -> None:
    transport, protocol, peer = await _stalled_transport()
    try:
        assert transport.get_write_buffer_size() > 0  # everything else is the transport's own
        transport.close()
        await asyncio.sleep(0.1)
        assert not protocol.lost.done(), "a close waits for the buffer first"
        assert await asyncio.wait_for(protocol.lost, 2) is None
    finally:
        peer.close()


async def test_a_transport_gone_is_not_aborted_later() -> None:
    transport, protocol, peer = await _stalled_transport()
    try:
        transport.abort()
        await asyncio.wait_for(protocol.lost, 2)
        transport.gone()
        transport.close()  # as uvicorn's connection_lost does: no timer is left behind
        assert transport._timer is None
    finally:
        peer.close()
