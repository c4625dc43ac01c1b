"""A Medstream server in a process of its own, for tests that measure it from outside (its resident memory).

    python -m tests.integration.server_process '{"database_url": "sqlite:///...", ...}'

The argument holds the server's settings (`Settings` fields) as JSON. The process prints its base URL on a
line of its own once it serves, and stops on SIGTERM or SIGINT. `ServerProcess` runs it from a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from medstream.server.runner import make_server
from medstream.server.settings import Settings

_ROOT = Path(__file__).resolve().parents[2]


async def _serve(settings: Settings) -> None:
    server = make_server(settings, log_level="warning", freeze_gc=True)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the server stopped while starting")
        await asyncio.sleep(0.02)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    print(f"http://{host}:{port}", flush=True)
    await task


class ServerProcess:
    """A server process started with `settings`; `url` once it serves, `rss_bytes()` its resident memory."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url

    @classmethod
    @contextlib.contextmanager
    def running(cls, **settings: Any) -> Iterator[ServerProcess]:
        # Its tests load the server with clear payloads through raw REST and sockets, unless told otherwise.
        settings = {"require_encryption": False} | settings
        argv = [sys.executable, "-m", "tests.integration.server_process", orjson.dumps(settings).decode()]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEDSTREAM_")}
        process = subprocess.Popen(argv, cwd=_ROOT, env=env, stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            if not url.startswith("http://"):
                raise RuntimeError(f"the server process did not start (exit code {process.wait(30)})")
            yield cls(process, url)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def rss_bytes(self) -> int:
        """VmRSS of /proc/<pid>/status."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc/<pid>/status")


if __name__ == "__main__":
    asyncio.run(_serve(Settings(**orjson.loads(sys.argv[1]))))
