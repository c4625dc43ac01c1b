"""Locks between the suite's processes: the pytest-xdist workers of one run, and any other run on the machine.

`one_at_a_time(path)` makes a one-time set-up (an install into `.venv`) happen in one process while the others
wait for it, then find it done.

`machine_slot(exclusive)` is held by every test from its setup to its teardown: shared by ordinary tests, which
run beside each other, and whole for a test marked `exclusive` (it restarts the machine's PostgreSQL cluster, or
measures throughput against a load of its own), which runs while no other test of any worker or run is between
its setup and its teardown. It is a readers-writer lock over two files: a test takes the gate before the slot, so
that an exclusive test waiting for the slot holds back the tests that would start after it, and is not starved by
them. The locks are `flock` locks: the system releases them when a process dies, whatever it was doing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

MACHINE_LOCKS = Path(tempfile.gettempdir())
GATE = MACHINE_LOCKS / "medstream-tests-gate.lock"
SLOT = MACHINE_LOCKS / "medstream-tests-slot.lock"


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)  # flock needs no write access
    try:
        yield descriptor
    finally:
        os.close(descriptor)  # closing the descriptor releases its lock


@contextlib.contextmanager
def one_at_a_time(path: Path) -> Iterator[None]:
    """Held by one process at a time (across processes; `path` is the lock file)."""
    with _opened(path) as descriptor:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def machine_slot(exclusive: bool) -> Iterator[None]:
    """The slot of a test: shared with every other ordinary test, or, when `exclusive`, the machine's alone."""
    with _opened(GATE) as gate, _opened(SLOT) as slot:
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(slot, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        if not exclusive:
            fcntl.flock(gate, fcntl.LOCK_UN)
        yield
