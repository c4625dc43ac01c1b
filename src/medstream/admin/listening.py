"""The server's listening socket, bound before anything else starts, so that a port in use is one clear line."""

from __future__ import annotations

import errno
import socket

from medstream.admin.exits import CommandError, Exit
from medstream.server.settings import env_of


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port`, for uvicorn to listen on; CommandError if it cannot be bound."""
    where = f"{host}:{port} (settings host and port: --host, --port, {env_of('host')}, {env_of('port')})"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise CommandError(Exit.CANNOT_LISTEN, f"cannot listen on {where}: {exc.strerror}") from exc
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restart over TIME_WAIT
        sock.bind(address)
    except OSError as exc:
        sock.close()
        problem = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise CommandError(Exit.CANNOT_LISTEN, f"cannot listen on {where}: {problem}") from exc
    sock.set_inheritable(True)
    return sock
