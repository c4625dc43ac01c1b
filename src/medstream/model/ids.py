"""Entity ids the server makes: UUID version 7 (RFC 9562, section 5.7).

A version 7 UUID starts with its creation time in milliseconds, so ids made one after the other sort one
after the other. New rows then land at the end of every index keyed by id (the entity table's primary key, the
terms and readers indexes) instead of at random places: a batch write touches a few pages instead of one page
per row per index, and stays as fast as the tables grow. The other 74 bits are random (from the operating
system's generator, as `secrets`), enough that two ids made in the same millisecond, on one node or several,
do not collide.

What it costs: an id tells when its entity was created, to the millisecond, to anyone who sees the id.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62


class _RandomPool:
    """Bytes from `os.urandom`, read 4 KiB at a time and each handed out once. Every write made a new id and a
    new rev, two `getrandom` system calls; under load a system call is where the kernel hands the core to
    another process, so the event loop lost the core there more often than anywhere else. A child process
    starts with an empty pool, never with bytes its parent hands out too."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0

    def take(self, count: int) -> bytes:
        with self._lock:
            if self._offset + count > len(self._buffer):
                self._buffer = os.urandom(max(self._size, count))
                self._offset = 0
            start = self._offset
            self._offset += count
            return self._buffer[start : self._offset]


_pool = _RandomPool()
os.register_at_fork(after_in_child=_pool._reset)


def random_bits(count: int) -> int:
    """`count` random bits, as `secrets.randbits`."""
    return int.from_bytes(_pool.take((count + 7) // 8)) >> (-count % 8)


def random_hex(nbytes: int) -> str:
    """`nbytes` random bytes as hex, as `secrets.token_hex`."""
    return _pool.take(nbytes).hex()


def _uuid7_value() -> int:
    millis = time.time_ns() // 1_000_000
    random = random_bits(74)
    return (millis & 0xFFFF_FFFF_FFFF) << 80 | _VERSION | (random >> 62) << 64 | _VARIANT | (random & (2**62 - 1))


def uuid7() -> uuid.UUID:
    """A new version 7 UUID: 48 bits of Unix time in ms, version, 12 + 62 random bits, variant."""
    return uuid.UUID(int=_uuid7_value())


def new_entity_id() -> str:
    """A new version 7 UUID in its canonical text form, as `str(uuid7())` without the UUID object."""
    text = f"{_uuid7_value():032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
