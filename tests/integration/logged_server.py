"""A real `medstream serve` process whose log output a test reads once it has stopped."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import unused_port
from tests.integration.cli_support import MEDSTREAM, cli_env


@dataclass
class LoggedServer:
    """`url` while it serves; `output` (its stderr, then its stdout) once `serving` has stopped it."""

    url: str
    database: Path
    output: str = field(default="")

    def lines(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.strip()]


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> AsyncIterator[LoggedServer]:
    """Run `medstream serve args...` on a free port and a new SQLite database in `tmp_path`, with its stderr and
    stdout in files (a pipe nobody reads would block a chatty server); stop it with SIGTERM on exit."""
    port = unused_port()
    database = tmp_path / "logs.db"
    stderr_path, stdout_path = tmp_path / "stderr.log", tmp_path / "stdout.log"
    argv = [MEDSTREAM, "serve", "--host", "127.0.0.1", "--port", str(port), "--database", f"sqlite:///{database}"]
    with stderr_path.open("wb") as stderr, stdout_path.open("wb") as stdout:
        process = await asyncio.create_subprocess_exec(
            *argv, *args, stdout=stdout, stderr=stderr, stdin=asyncio.subprocess.DEVNULL, env=env or cli_env()
        )
    server = LoggedServer(url=f"http://127.0.0.1:{port}", database=database)
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                if process.returncode is not None:
                    raise RuntimeError(f"medstream serve exited with {process.returncode}: {stderr_path.read_text()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{server.url}/health")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("medstream serve did not answer /health within 30 s")
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()
        server.output = stderr_path.read_text() + stdout_path.read_text()
