"""Request CPU: event-loop CPU time and Python calls per REST request, through the app's ASGI interface.

    .venv/bin/python -m bench.request_cpu [--requests N] [--runs N] [--top N]

The app (`create_app`, on a fresh SQLite file, its lifespan run as uvicorn runs it, on uvloop) is called in
this process with the ASGI messages uvicorn would give it, one request at a time: a write (`POST
/rest/v1/patients/{id}/data-samples`, one sample) and a read (`GET /rest/v1/data-samples/{id}`). What is
measured is the event loop's thread only: its CPU time per request (`time.thread_time`, so the SQLite writer
thread's statements and COMMIT are left out), and, in a separate pass, the Python functions it calls per
request (`sys.setprofile`, which sees only the thread that sets it, and counts a coroutine's every resumption
as a call; the few calls of the benchmark's own client are counted too, the same whatever the app). The event
loop's work per request includes what a write sets off besides its answer (the dispatcher's read of its
event, with no subscriber) and its share of the node's periodic work (the dispatcher's poll every 50 ms). No
socket and no HTTP parsing: uvicorn's share is the same whatever the app does, and left out so that the app's
share is not lost in it.

CPU is timed in chunks of 200 requests, writes and reads alternating, and each run gives the median of its
chunks (the lowest chunk is shown too): on a shared machine a burst of other work inflates the chunks it
overlaps, not the median. CPU times still move with the machine's speed (compare them only with the loop speed
beside them, and a change only in runs alternated with the code it changes); call counts do not, and with
`--top N` the functions called most per request are listed, for finding where a request's calls go.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from bench.clients import sample_body
from bench.report import Progress, Report, Table, base_parser, cli, median

NAME = "request_cpu"
ADMIN = ("bench-admin", "bench-admin-password")
CHUNK = 200  # requests per timed chunk; the two kinds alternate chunk by chunk
Asgi = Callable[[dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=3000, help="requests of each kind per run (default 3000; quick 200)")
    p.add_argument("--top", type=int, default=0, help="list the N functions called most per request (default 0)")
    return p


class AsgiClient:
    """Requests to an ASGI app in this process, with the scope and messages uvicorn makes for HTTP/1.1."""

    def __init__(self, app: Asgi, state: dict[str, Any]) -> None:
        self.app = app
        self.state = state
        self.token: str | None = None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        content = b"" if body is None else orjson.dumps(body)
        headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench"), (b"accept", b"*/*")]
        if content:
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
        if self.token is not None:
            headers.append((b"authorization", f"Bearer {self.token}".encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            "scheme": "http",
            "method": method,
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": headers,
            "state": self.state.copy(),
        }
        sent = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": content, "more_body": False}
            await asyncio.Event().wait()  # the client stays connected: nothing more to receive
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        raw = b"".join(chunks)
        return status, orjson.loads(raw) if raw else None

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = await self.request(method, path, body)
        if status != 200:
            raise RuntimeError(f"{method} {path}: {status} {answer}")
        return answer


class Lifespan:
    """The app's lifespan as uvicorn drives it: startup, then shutdown on exit."""

    def __init__(self, app: Asgi) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Lifespan:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}

        async def send(message: dict[str, Any]) -> None:
            await self._outbox.put(message)

        self._task = asyncio.create_task(self.app(scope, self._inbox.get, send))
        await self._inbox.put({"type": "lifespan.startup"})
        answer = await self._outbox.get()
        if answer["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"start-up failed: {answer}")
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._inbox.put({"type": "lifespan.shutdown"})
        await self._outbox.get()
        assert self._task is not None
        await self._task


def _calls(run: Callable[[], Awaitable[None]], top: bool) -> Callable[[], Awaitable[tuple[int, Counter[str]]]]:
    """`run`, with the Python functions the event loop's thread calls counted (and named when `top`)."""

    async def counted() -> tuple[int, Counter[str]]:
        names: Counter[str] = Counter()
        total = 0

        def profile(frame: FrameType, event: str, _arg: object) -> None:
            nonlocal total
            if event == "call":
                total += 1
                if top:
                    code = frame.f_code
                    names[f"{code.co_filename.rsplit('site-packages/', 1)[-1]}:{code.co_qualname}"] += 1

        sys.setprofile(profile)
        try:
            await run()
        finally:
            sys.setprofile(None)
        return total, names

    return counted


async def set_up(http: AsgiClient) -> tuple[str, str]:
    """A professional's token and one of their patients; the admin's token is dropped."""
    http.token = (await http.ok("POST", "/rest/v1/auth/login", {"username": ADMIN[0], "password": ADMIN[1]}))["token"]
    hcp = await http.ok("POST", "/rest/v1/healthcare-professionals", {"firstName": "Bench", "lastName": "Mark"})
    login, password = "bench-cpu", "bench-cpu-password"
    await http.ok("POST", "/rest/v1/users", {"login": login, "healthcarePartyId": hcp["id"], "password": password})
    http.token = (await http.ok("POST", "/rest/v1/auth/login", {"username": login, "password": password}))["token"]
    patient = await http.ok("POST", "/rest/v1/patients", {"firstName": "Bench", "lastName": "Patient"})
    sample = await http.ok("POST", f"/rest/v1/patients/{patient['id']}/data-samples", sample_body("CPU", "read"))
    return patient["id"], sample["id"]


async def run(args: argparse.Namespace) -> Report:
    from medstream.server.app import create_app
    from medstream.server.settings import Settings

    requests = 200 if args.quick else args.requests
    runs = args.runs or (1 if args.quick else 3)
    progress = Progress(runs * 2, NAME)
    with tempfile.TemporaryDirectory(prefix="medstream-request-cpu-") as folder:
        settings = Settings(
            database_url=f"sqlite:///{Path(folder) / 'bench.db'}",
            admin_login=ADMIN[0],
            admin_password=ADMIN[1],
            require_encryption=False,  # its requests carry a patient's names and a sample's content in clear
        )
        app = create_app(settings)
        async with Lifespan(app) as lifespan:
            http = AsgiClient(app, lifespan.state)
            patient, sample = await set_up(http)
            write_path = f"/rest/v1/patients/{patient}/data-samples"
            body = sample_body("CPU", "write")

            async def writes(count: int) -> None:
                for _ in range(count):
                    await http.ok("POST", write_path, body)

            async def reads(count: int) -> None:
                for _ in range(count):
                    await http.ok("GET", f"/rest/v1/data-samples/{sample}")

            kinds = {"write": writes, "read": reads}
            for kind in kinds.values():  # warm-up: caches, the first statements, pydantic's first builds
                await kind(CHUNK)
            runs_cpu: dict[str, list[float]] = {kind: [] for kind in kinds}
            lowest: dict[str, float] = dict.fromkeys(kinds, float("inf"))
            calls: dict[str, list[float]] = {kind: [] for kind in kinds}
            names: dict[str, Counter[str]] = {kind: Counter() for kind in kinds}
            chunks = max(1, requests // CHUNK)
            for _ in range(runs):
                progress.note("CPU")
                chunk_cpu: dict[str, list[float]] = {kind: [] for kind in kinds}
                for _ in range(chunks):
                    for kind, measured in kinds.items():
                        started = time.thread_time()
                        await measured(CHUNK)
                        chunk_cpu[kind].append((time.thread_time() - started) / CHUNK * 1e6)
                for kind, values in chunk_cpu.items():
                    runs_cpu[kind].append(median(values) or 0.0)
                    lowest[kind] = min(lowest[kind], *values)
                progress.advance()
                progress.note("calls")
                for kind, measured in kinds.items():
                    total, counted = await _calls(functools.partial(measured, CHUNK), args.top > 0)()
                    calls[kind].append(total / CHUNK)
                    names[kind].update(counted)
                progress.advance()
    progress.close()
    results = [
        {
            "request": kind,
            "event_loop_cpu_us": median(runs_cpu[kind]),
            "event_loop_cpu_us_runs": runs_cpu[kind],
            "event_loop_cpu_us_lowest_chunk": lowest[kind],
            "calls": median(calls[kind]),
            "calls_runs": calls[kind],
        }
        for kind in kinds
    ]
    table = Table(
        f"Event-loop CPU and Python calls per REST request, in process (median of {runs} run(s), each the median "
        f"of {chunks} chunks of {CHUNK} requests of each kind, the kinds alternating)",
        ["request", "CPU us/request", "CPU us, each run", "lowest chunk", "calls/request"],
        [
            [
                r["request"],
                r["event_loop_cpu_us"],
                ", ".join(f"{v:.1f}" for v in r["event_loop_cpu_us_runs"]),
                r["event_loop_cpu_us_lowest_chunk"],
                r["calls"],
            ]
            for r in results
        ],
    )
    tables = [table]
    for kind, counted in names.items():
        if counted:
            tables.append(
                Table(
                    f"The {args.top} functions called most per {kind} request",
                    ["function", "calls/request"],
                    [[name, count / (runs * CHUNK)] for name, count in counted.most_common(args.top)],
                )
            )
    return Report({"requests": requests, "runs": runs, "rows": results}, tables, [])


def main(argv: list[str] | None = None) -> int:
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # the server's loop (uvicorn's "auto")
    return cli(NAME, parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
