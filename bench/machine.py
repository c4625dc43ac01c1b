"""The machine a benchmark runs on: its load, speed and limits, and what a process uses of it."""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


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


@contextlib.contextmanager
def private_data_home() -> Iterator[None]:
    """XDG_DATA_HOME in a temporary directory, for the benchmark and the client processes it starts (they inherit
    it): the SDK keeps a data owner's key store under it by default, and the key stores of a benchmark's users
    are made for its run and removed with it, not left in the home directory."""
    before = os.environ.get("XDG_DATA_HOME")
    with tempfile.TemporaryDirectory(prefix="medstream-bench-data-") as home:
        os.environ["XDG_DATA_HOME"] = home
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("XDG_DATA_HOME", None)
            else:
                os.environ["XDG_DATA_HOME"] = before
