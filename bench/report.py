"""What every benchmark prints and writes: percentiles, a progress bar, tables, targets met or not, the JSON
report, and the command line that runs it."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import os
import shlex
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson

from bench.machine import MachineLoad, machine_info, private_data_home, raise_open_files
from bench.servers import DATABASES, DEFAULT_PG

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


def histogram_quantile(buckets: Sequence[tuple[float, float]], q: float) -> float | None:
    """The q-quantile (0-1) of a cumulative histogram's (upper bound, count) buckets, interpolated linearly within
    its bucket as Prometheus' histogram_quantile does (from 0 in the first one); the highest finite bound when it
    falls in the +Inf bucket; None when the histogram is empty."""
    ordered = sorted(buckets)
    total = ordered[-1][1] if ordered else 0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = bound, count
    return lower


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
        with private_data_home():
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
