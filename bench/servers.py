"""The servers a benchmark measures, as subprocesses on fresh databases, and the REST set-up any client
would do against them (logins, a professional, a patient).

Nothing here runs Medstream code in the benchmark's own process: the server is `medstream serve` in a
subprocess and the clients are other processes, so what is measured is what a user of the protocol sees.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.machine import ROOT, cpu_seconds, rss_kib

BIN = Path(sys.executable).parent
# The server measured: this checkout's, or another's (`MEDSTREAM_BENCH_SERVER=/other/checkout/.venv/bin/medstream`)
# to compare a change with the code before it through the same benchmark.
MEDSTREAM = Path(os.environ.get("MEDSTREAM_BENCH_SERVER") or BIN / "medstream")
ADMIN_LOGIN = "bench-admin"
ADMIN_PASSWORD = "bench-admin-password"
DEFAULT_PG = os.environ.get("MEDSTREAM_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
DATABASES = ("sqlite", "postgresql")


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
    env["MEDSTREAM_MAX_CONNECTIONS_PER_ADDRESS"] = "0"  # every client of a benchmark is on 127.0.0.1
    # The writers send data samples and patients in clear through raw REST: what is measured is the server's path,
    # not the SDK's encryption (bench.crypto measures that).
    env["MEDSTREAM_REQUIRE_ENCRYPTION"] = "false"
    # The benchmarks load a node through one user, from one address, as many users would: no per-user bound.
    for bound in ("SOCKETS_PER_USER", "SUBSCRIPTIONS_PER_USER", "FILTER_BYTES_PER_USER", "UNAUTHENTICATED_PER_PEER"):
        env[f"MEDSTREAM_WS_MAX_{bound}"] = str(2**40)
    env.update(extra or {})
    return env


# Settings that servers older than this checkout's may not have: passed to the server measured only when its
# `serve --help` names their flag, so that MEDSTREAM_BENCH_SERVER can point at a checkout that predates them (a
# server refuses a MEDSTREAM_* variable it does not know).
_LATER_SETTINGS = {"MEDSTREAM_REQUIRE_ENCRYPTION": "--require-encryption", "MEDSTREAM_METRICS": "--metrics"}


@functools.cache
def _serve_help() -> str:
    done = subprocess.run([str(MEDSTREAM), "serve", "--help"], capture_output=True, text=True, env=server_env())
    return done.stdout + done.stderr


def _known_to_server(env: dict[str, str]) -> dict[str, str]:
    """`env` without the later settings that the server measured does not know."""
    unknown = [
        name
        for name, flag in _LATER_SETTINGS.items()
        if name in env and not re.search(re.escape(flag) + r"(?![\w-])", _serve_help())
    ]
    return {name: value for name, value in env.items() if name not in unknown}


def add_metrics_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics",
        choices=["on", "off"],
        default="on",
        help="the server's Prometheus metrics (MEDSTREAM_METRICS: GET /metrics and the counting behind it); on by "
        "default, as in the server",
    )


def metrics_env(choice: str) -> dict[str, str]:
    return {"MEDSTREAM_METRICS": "1" if choice == "on" else "0"}


async def scrape_ms(url: str) -> float | None:
    """The time one GET /metrics takes, in milliseconds (None when the server serves no metrics)."""
    async with httpx.AsyncClient(timeout=30) as http:
        started = time.perf_counter()
        response = await http.get(url + "/metrics")
        elapsed = (time.perf_counter() - started) * 1000
    return elapsed if response.status_code == 200 else None


def medstream_server(database: str, *, env: dict[str, str] | None = None) -> ServerProcess:
    port = free_port()
    argv = [
        str(MEDSTREAM), "serve", "--host", "127.0.0.1", "--port", str(port), "--database", database,
        "--admin-login", ADMIN_LOGIN, "--admin-password", ADMIN_PASSWORD, "--log-level", "warning",
    ]  # fmt: skip
    return ServerProcess(argv, port, env=_known_to_server(server_env(env)), name="medstream")


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


@contextlib.asynccontextmanager
async def medstream_nodes_on(
    kind: str, pg_url: str, count: int, env: dict[str, str] | None = None
) -> AsyncIterator[list[ServerProcess]]:
    """`count` Medstream servers on one fresh database of `kind` (several only on PostgreSQL), started one after
    the other, all stopped (and the database dropped) afterwards."""
    if count > 1 and kind != "postgresql":
        raise ValueError("several nodes share a PostgreSQL database only")
    async with database_url(kind, pg_url) as url, contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(running(medstream_server(url, env=env))) for _ in range(count)]


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


SEND_DELAYS = "medstream_events_commit_to_send_seconds"


async def send_delay_buckets(url: str) -> list[tuple[float, float]] | None:
    """The server's histogram of the time from each event's write to its first delivery on that node (upper
    bound in seconds, cumulative count), scraped from its /metrics on loopback; None when it has none (metrics
    off, or a server that predates them)."""
    from prometheus_client.parser import text_string_to_metric_families

    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(url + "/metrics")
    if response.status_code != 200:
        return None
    for family in text_string_to_metric_families(response.text):
        if family.name == SEND_DELAYS:
            return [
                (float(sample.labels["le"]), sample.value)
                for sample in family.samples
                if sample.name == SEND_DELAYS + "_bucket"
            ]
    return None


async def wait_dispatched(url: str, within: float = 60.0) -> dict[str, Any]:
    """Wait until the server's dispatcher has no lag; returns the last /health."""
    deadline = time.monotonic() + within
    while True:
        body = await health(url)
        if body["events"]["lag"] == 0 or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.02)
