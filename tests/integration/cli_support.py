"""Running the real `medstream` command in a subprocess, as an operator does."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

MEDSTREAM = str(Path(sys.executable).parent / "medstream")


def cli_env(**extra: str) -> dict[str, str]:
    """This environment without MEDSTREAM_* settings, so that only the command line (and `extra`) decides."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("MEDSTREAM_")}, **extra}


async def medstream(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run `medstream args...` to its end: its exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        MEDSTREAM,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=env or cli_env(),
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def one_line(stderr: str) -> str:
    """The single line a failing command prints, checked to be one line with no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]
