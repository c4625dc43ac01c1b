"""How many connections the server holds, in all and per peer address, and the open-file limit that bounds them.

A connection costs a file descriptor from the moment it is accepted, before anything is read from it: these
counts are taken as it is accepted (server/uvicorn_protocols.py) and released when it is gone, whether it stayed
an HTTP connection or became a websocket.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass, field

# File descriptors kept for everything but client connections: the database's files and sockets (SQLite's database,
# log and shared-memory files for six connections; up to 30 PostgreSQL connections), the listening sockets, the
# event loop's own descriptors, logs, and what a reload of the TLS context or an import may open.
FILE_HEADROOM = 256


def raise_open_file_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit, where it may; return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # pragma: no cover - a platform that refuses its own hard limit
            return soft
        return hard
    return soft


def connection_cap(configured: int | None, open_files: int) -> int:
    """The total connections allowed: `configured`, never more than the open-file limit leaves after the
    headroom (a connection past it would fail to be accepted, and every new one with it, `/health` included)."""
    available = max(open_files - FILE_HEADROOM, 1)
    return available if configured is None else min(configured, available)


# Refusals are logged at most this often (seconds), with how many there were: a flood must not flood the log too.
REPORT_EVERY = 60.0


@dataclass
class ConnectionLimits:
    """Counts of admitted connections; `per_address` 0 means no cap per address. `refused` counts refusals."""

    total: int
    per_address: int
    refused: int = 0
    _by_address: dict[str, int] = field(default_factory=dict)
    _admitted: dict[object, str] = field(default_factory=dict)
    _reported_at: float | None = None

    @property
    def open(self) -> int:
        return len(self._admitted)

    def admit(self, connection: object, address: str) -> str | None:
        """Count `connection` from `address`; or, past a cap, count nothing and say why it is refused."""
        if len(self._admitted) >= self.total:
            self.refused += 1
            return f"the server holds its most connections ({self.total}); try again shortly"
        held = self._by_address.get(address, 0)
        if self.per_address and held >= self.per_address:
            self.refused += 1
            return f"too many connections from {address} (at most {self.per_address})"
        self._by_address[address] = held + 1
        self._admitted[connection] = address
        return None

    def report_due(self, now: float) -> bool:
        """Whether a refusal at `now` (monotonic seconds) should be logged: the first, then one a minute."""
        if self._reported_at is not None and now - self._reported_at < REPORT_EVERY:
            return False
        self._reported_at = now
        return True

    def release(self, connection: object) -> None:
        """`connection` is gone; nothing happens for one that was never admitted or is already released."""
        address = self._admitted.pop(connection, None)
        if address is None:
            return
        left = self._by_address[address] - 1
        if left:
            self._by_address[address] = left
        else:
            del self._by_address[address]
