"""What every benchmark shares: servers as subprocesses, client worker processes, logins, percentiles, a
progress bar, tables and the JSON report.

Nothing here runs Medstream code in the benchmark's own process: the server is `medstream serve` in a
subprocess and the clients are other processes, so what is measured is what a user of the protocol sees.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import math
import multiprocessing
import multiprocessing.connection
import os
import platform
import resource
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MEDSTREAM = BIN / "medstream"
ADMIN_LOGIN = "bench-admin"
ADMIN_PASSWORD = "bench-admin-password"
DEFAULT_PG = os.environ.get("MEDSTREAM_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
DATABASES = ("sqlite", "postgresql")


# -- process limits and machine --------------------------------------------------------------------------


def raise_open_files() -> int:
    """Raise this process's soft open-file limit to its hard limit (children inherit it); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cpu_busy_jiffies() -> tuple[int, int]:
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return sum(parts) - idle, sum(parts)


class MachineLoad:
    """How busy the whole machine was between start and stop (every process, ours included), and how fast it
    ran Python at the start (`python_loop_ns`; `machine_info` has it at the end): on a shared VM it was seen to
    go from 36 to 69 ns within minutes, and every figure with it."""

    def __init__(self) -> None:
        self.load_start = loadavg()
        self.loop_ns_start = python_loop_ns()
        self._busy0, self._total0 = _cpu_busy_jiffies()

    def summary(self) -> dict[str, Any]:
        busy, total = _cpu_busy_jiffies()
        cpu = (busy - self._busy0) / max(1, total - self._total0)
        return {
            "loadavg_start": self.load_start,
            "loadavg_end": loadavg(),
            "cpu_busy_fraction": round(cpu, 3),
            "python_loop_ns_start": self.loop_ns_start,
        }


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def python_loop_ns() -> float:
    """How fast this machine runs Python: ns per iteration of a plain counting loop, best of three. Figures
    from machines (or VMs) of different speeds differ by as much; compare this before comparing them."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter_ns()
        total = 0
        for i in range(1_000_000):
            total += i
        best = min(best, (time.perf_counter_ns() - started) / 1_000_000)
    return round(best, 1)


def machine_info() -> dict[str, Any]:
    mem_kib = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    versions = {}
    for package in ("uvicorn", "websockets", "starlette", "fastapi", "sqlalchemy", "httpx"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[package] = version(package)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python_loop_ns": python_loop_ns(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit + ("+dirty" if dirty else ""),
        "packages": versions,
        "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc/<pid>/status (VmRSS), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- statistics ------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation between closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def latency_summary(values_ms: Sequence[float]) -> dict[str, float | int | None]:
    return {
        "count": len(values_ms),
        "p50": _round(percentile(values_ms, 50)),
        "p95": _round(percentile(values_ms, 95)),
        "p99": _round(percentile(values_ms, 99)),
        "max": _round(max(values_ms)) if values_ms else None,
    }


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


# -- progress bar ----------------------------------------------------------------------------------------


class Progress:
    """A dependency-free progress bar on stderr: one redrawn line on a terminal, a line per 10% otherwise."""

    def __init__(self, total: float, label: str = "", stream: TextIO | None = None) -> None:
        self.total = max(total, 1e-9)
        self.label = label
        self.done = 0.0
        self.status = ""
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._last_decile = -1

    def advance(self, amount: float = 1.0, status: str | None = None) -> None:
        self.update(self.done + amount, status)

    def update(self, done: float, status: str | None = None) -> None:
        self.done = min(done, self.total)
        if status is not None:
            self.status = status
        self._draw()

    def note(self, status: str) -> None:
        self.status = status
        self._draw(force=True)

    def _draw(self, force: bool = False) -> None:
        fraction = self.done / self.total
        elapsed = time.monotonic() - self._started
        if self._tty:
            if not force and time.monotonic() - self._last_draw < 0.1 and fraction < 1:
                return
            width = 30
            filled = int(width * fraction)
            bar = "#" * filled + "." * (width - filled)
            line = f"\r{self.label} [{bar}] {fraction * 100:5.1f}% {elapsed:6.1f}s {self.status}"[:160]
            self._stream.write(line.ljust(160)[:160])
        else:
            decile = int(fraction * 10)
            if decile == self._last_decile and not force:
                return
            self._last_decile = decile
            self._stream.write(f"{self.label} {fraction * 100:5.1f}% {elapsed:6.1f}s {self.status}\n")
        self._stream.flush()
        self._last_draw = time.monotonic()

    def close(self) -> None:
        self.update(self.total)
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()


# -- tables, targets and the report ----------------------------------------------------------------------


def fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    return str(value)


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        cells = [[fmt(v) for v in row] for row in self.rows]
        widths = [len(h) for h in self.headers]
        for row in cells:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))
        numeric = [all(_is_number(row[i]) for row in self.rows if row[i] is not None) for i in range(len(widths))]

        def line(values: list[str]) -> str:
            return "  ".join(
                v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]) for i, v in enumerate(values)
            ).rstrip()

        out = [self.title, "=" * len(self.title), line(self.headers), line(["-" * w for w in widths])]
        out += [line(row) for row in cells]
        out += [f"  {note}" for note in self.notes]
        return "\n".join(out)

    def to_markdown(self) -> str:
        rows = [[fmt(v) for v in row] for row in self.rows]
        out = ["| " + " | ".join(self.headers) + " |", "|" + "|".join(" --- " for _ in self.headers) + "|"]
        out += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(out)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class Target:
    name: str
    target: str
    measured: float | None
    unit: str
    met: bool | None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "target": self.target, "measured": self.measured, "unit": self.unit, "met": self.met}


def targets_table(title: str, targets: Sequence[Target]) -> Table:
    return Table(
        title,
        ["target", "wanted", "measured", "met"],
        [[t.name, t.target, f"{fmt(t.measured)} {t.unit}".strip(), _met(t.met)] for t in targets],
    )


def judged(ok: bool, applies: bool) -> bool | None:
    """A target's verdict, or None ("-") when the run was not at the size the target is stated for."""
    return ok if applies else None


def _met(met: bool | None) -> str:
    return "-" if met is None else ("yes" if met else "NO")


@dataclass
class Report:
    """What a benchmark returns: its results (for JSON), its tables (for people) and its targets."""

    results: dict[str, Any]
    tables: list[Table]
    targets: list[Target] = field(default_factory=list)


def command_line(module: str, argv: Sequence[str]) -> str:
    return " ".join([".venv/bin/python", "-m", module, *(shlex.quote(a) for a in argv)])


def report_document(
    name: str, command: str, options: dict[str, Any], report: Report, load: MachineLoad, started: dt.datetime
) -> dict[str, Any]:
    return {
        "benchmark": name,
        "command": command,
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {**machine_info(), **load.summary()},
        "options": options,
        "results": report.results,
        "targets": [t.as_dict() for t in report.targets],
    }


def write_json(document: dict[str, Any], path: str | None) -> None:
    """Write the report as JSON to `path` ("-" for stdout); without a path, print it after the tables."""
    data = orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    if path and path != "-":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data + b"\n")
        print(f"\nJSON written to {path}", file=sys.stderr)
    else:
        print()
        print(data.decode())


def print_tables(tables: Sequence[Table]) -> None:
    for table in tables:
        print()
        print(table.render())
    sys.stdout.flush()


def base_parser(description: str, *, databases_default: str = "sqlite") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--database",
        choices=[*DATABASES, "both"],
        default=databases_default,
        help=f"which store the server runs on (default {databases_default})",
    )
    parser.add_argument(
        "--pg-url",
        default=DEFAULT_PG,
        help="PostgreSQL server for --database postgresql; a "
        "fresh database is created on it and dropped after (env MEDSTREAM_BENCH_PG)",
    )
    parser.add_argument("--quick", action="store_true", help="smallest sizes and durations (a smoke run)")
    parser.add_argument("--runs", type=int, default=None, help="repeat each measurement; medians are reported")
    parser.add_argument(
        "--json",
        metavar="PATH",
        default=None,
        help="write the JSON report here ('-': stdout); without it, JSON follows the tables",
    )
    return parser


def databases_of(choice: str) -> list[str]:
    return list(DATABASES) if choice == "both" else [choice]


RunFunction = Callable[[argparse.Namespace], Awaitable[Report]]


def cli(name: str, parser: argparse.ArgumentParser, run: RunFunction, argv: Sequence[str] | None = None) -> int:
    """Parse, run, print the tables and the JSON; the exit status is 0 even when a target is missed."""
    raise_open_files()
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(arguments)
    started = dt.datetime.now(dt.UTC)
    load = MachineLoad()
    try:
        report = run_async(run(args))
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped, client processes ended, temporary databases dropped", file=sys.stderr)
        return 130
    tables = [*report.tables]
    if report.targets:
        tables.append(targets_table(f"{name}: targets", report.targets))
    print_tables(tables)
    document = report_document(name, command_line(f"bench.{name}", arguments), vars(args), report, load, started)
    print(
        f"\nmachine: {os.cpu_count()} cores, load average {document['machine']['loadavg_start']} at start, "
        f"{document['machine']['loadavg_end']} at end; CPU busy {document['machine']['cpu_busy_fraction']:.0%}; "
        f"{document['machine']['cpu_model']}, Python loop {document['machine']['python_loop_ns_start']} ns/iteration "
        f"at start, {document['machine']['python_loop_ns']} at end",
    )
    write_json(document, args.json)
    return 0


def run_async(coroutine: Awaitable[Report]) -> Report:
    async def main() -> Report:
        return await coroutine

    return asyncio.run(main())


# -- databases and server processes ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def database_url(kind: str, pg_url: str = DEFAULT_PG) -> AsyncIterator[str]:
    """A fresh, empty database: a SQLite file in a temporary directory, or a PostgreSQL database that is
    dropped afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="medstream-bench-") as directory:
            yield f"sqlite:///{directory}/bench.db"
        return
    import asyncpg  # a Medstream dependency

    name = f"medstream_bench_{uuid.uuid4().hex[:10]}"
    admin = pg_url.rstrip("/") + "/postgres"
    conn = await asyncpg.connect(admin, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield pg_url.rstrip("/") + "/" + name
    finally:
        conn = await asyncpg.connect(admin, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


class ServerProcess:
    """A server in a subprocess, reachable at `url` once `start()` has seen its health route answer."""

    def __init__(
        self,
        argv: list[str],
        port: int,
        *,
        env: dict[str, str] | None = None,
        health: str = "/health",
        name: str = "server",
    ) -> None:
        self.argv = argv
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ws_base = f"ws://127.0.0.1:{port}"
        self.env = env
        self.health_path = health
        self.name = name
        self._log = tempfile.NamedTemporaryFile(prefix=f"medstream-bench-{name}-", suffix=".log", delete=False)  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(Path(self._log.name).read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def start(self, within: float = 90.0) -> None:
        self.process = await asyncio.to_thread(
            subprocess.Popen,
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=ROOT,
            start_new_session=True,
        )
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(self.url + self.health_path)).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        await self.stop()
        raise RuntimeError(f"{self.name} did not answer {self.health_path} within {within} s:\n{self.log_tail()}")

    async def stop(self, within: float = 30.0) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            self._cleanup()
            return
        process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + within
        while process.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110 - a subprocess, not a task
            await asyncio.sleep(0.05)
        if process.poll() is None:
            process.kill()
            process.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without MEDSTREAM_* settings (so only the benchmark decides), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDSTREAM_")}
    env["MEDSTREAM_ACCESS_TOKEN_SECONDS"] = "7200"  # a long run must not see its sockets closed at expiry
    env.update(extra or {})
    return env


def medstream_server(database: str, *, env: dict[str, str] | None = None) -> ServerProcess:
    port = free_port()
    argv = [
        str(MEDSTREAM), "serve", "--host", "127.0.0.1", "--port", str(port), "--database", database,
        "--admin-login", ADMIN_LOGIN, "--admin-password", ADMIN_PASSWORD, "--log-level", "warning",
    ]  # fmt: skip
    return ServerProcess(argv, port, env=server_env(env), name="medstream")


def baseline_server(*, per_message_deflate: bool) -> ServerProcess:
    port = free_port()
    argv = [sys.executable, "-m", "bench.baseline_server", "--port", str(port)]
    if not per_message_deflate:
        argv.append("--no-per-message-deflate")
    return ServerProcess(argv, port, env=server_env(), health="/health", name="baseline")


@contextlib.asynccontextmanager
async def running(server: ServerProcess) -> AsyncIterator[ServerProcess]:
    await server.start()
    try:
        yield server
    except BaseException:
        print(f"--- last lines of the {server.name} log:\n{server.log_tail(60)}\n---", file=sys.stderr)
        raise
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def medstream_on(kind: str, pg_url: str, env: dict[str, str] | None = None) -> AsyncIterator[ServerProcess]:
    """A Medstream server on a fresh database of `kind`, stopped (and its database dropped) afterwards."""
    async with database_url(kind, pg_url) as url, running(medstream_server(url, env=env)) as server:
        yield server


# -- REST set-up, as any client would do it --------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """A logged-in user acting as a healthcare professional."""

    login: str
    password: str
    token: str
    hcp_id: str


async def login(url: str, username: str, password: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.post("/rest/v1/auth/login", json={"username": username, "password": password})
        response.raise_for_status()
        token: str = response.json()["token"]
        return token


async def make_professional(url: str) -> Identity:
    """Log in as the admin, create a professional and their user, log in as that user."""
    admin = await login(url, ADMIN_LOGIN, ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {admin}"}
    user_login, password = f"bench-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as http:
        hcp = await http.post("/rest/v1/healthcare-professionals", json={"firstName": "Bench", "lastName": "Mark"})
        hcp.raise_for_status()
        hcp_id = hcp.json()["id"]
        user = await http.post(
            "/rest/v1/users", json={"login": user_login, "healthcarePartyId": hcp_id, "password": password}
        )
        user.raise_for_status()
    return Identity(user_login, password, await login(url, user_login, password), hcp_id)


async def create_patient(url: str, token: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:
        response = await http.post("/rest/v1/patients", json={"firstName": "Bench", "lastName": "Patient"})
        response.raise_for_status()
        patient_id: str = response.json()["id"]
        return patient_id


async def health(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(url + "/health")
        body: dict[str, Any] = response.json()
        return body


async def wait_dispatched(url: str, within: float = 60.0) -> dict[str, Any]:
    """Wait until the server's dispatcher has no lag; returns the last /health."""
    deadline = time.monotonic() + within
    while True:
        body = await health(url)
        if body["events"]["lag"] == 0 or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.02)


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
