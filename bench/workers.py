"""Client worker processes: each runs one coroutine of `bench.clients` and talks with the benchmark over a
pipe."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import signal
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bench.machine import raise_open_files

# -- client worker processes -----------------------------------------------------------------------------


class WorkerError(RuntimeError):
    pass


class Channel:
    """The worker's side of its pipe to the benchmark."""

    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        self._conn = conn

    def send(self, kind: str, **data: Any) -> None:
        self._conn.send((kind, data))

    async def recv(self) -> tuple[str, dict[str, Any]]:
        message: tuple[str, dict[str, Any]] = await asyncio.get_running_loop().run_in_executor(None, self._conn.recv)
        return message

    async def expect(self, kind: str) -> dict[str, Any]:
        got, data = await self.recv()
        if got != kind:
            raise WorkerError(f"expected {kind!r} from the benchmark, got {got!r}")
        return data


WorkerTarget = Callable[..., Awaitable[None]]


def _worker_main(target: WorkerTarget, conn: multiprocessing.connection.Connection, kwargs: dict[str, Any]) -> None:
    raise_open_files()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the benchmark's to handle
    channel = Channel(conn)
    try:
        try:
            import uvloop

            uvloop.run(target(channel, **kwargs))
        except ImportError:
            asyncio.run(target(channel, **kwargs))
    except BaseException:
        with contextlib.suppress(Exception):
            channel.send("error", traceback=traceback.format_exc())
        raise SystemExit(1) from None


class Worker:
    """A client process (spawned, so it shares nothing with the benchmark), talked to through a pipe."""

    def __init__(self, target: WorkerTarget, name: str = "worker", **kwargs: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.name = name
        self.process = context.Process(target=_worker_main, args=(target, child, kwargs), name=name, daemon=True)
        self.process.start()
        child.close()
        self._abandoned = threading.Event()  # set when the benchmark stops waiting (Ctrl-C, an error)

    def send(self, kind: str, **data: Any) -> None:
        self._conn.send((kind, data))

    def recv(self, timeout: float = 120.0) -> tuple[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not self._conn.poll(0.05):
            if self._abandoned.is_set():
                raise WorkerError(f"{self.name}: no longer waited for")
            if not self.process.is_alive() and not self._conn.poll(0):
                raise WorkerError(f"{self.name} died (exit code {self.process.exitcode})")
            if time.monotonic() > deadline:
                raise WorkerError(f"{self.name}: no answer within {timeout} s")
        kind, data = self._conn.recv()
        if kind == "error":
            raise WorkerError(f"{self.name} failed:\n{data['traceback']}")
        return kind, data

    async def arecv(self, kind: str, within: float = 120.0) -> dict[str, Any]:
        try:
            got, data = await asyncio.to_thread(self.recv, within)
        except asyncio.CancelledError:
            self._abandoned.set()  # the thread polling the pipe stops at once, so the event loop can close
            raise
        if got != kind:
            raise WorkerError(f"{self.name}: expected {kind!r}, got {got!r}")
        return data

    def stop(self, timeout: float = 10.0) -> None:
        self._abandoned.set()
        if self.process.is_alive():
            with contextlib.suppress(OSError, ValueError):
                self.send("stop")
            self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        self._conn.close()


async def gather_from(workers: Sequence[Worker], kind: str, within: float = 120.0) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(w.arecv(kind, within) for w in workers)))


@contextlib.contextmanager
def workers_stopped(workers: list[Worker]) -> Any:
    try:
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def split(total: int, parts: int) -> list[int]:
    """`total` spread over `parts` as evenly as possible (no zeros unless total < parts)."""
    parts = max(1, min(parts, total)) if total else 1
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]
