"""Every benchmark in sequence, with one combined JSON report.

    .venv/bin/python -m bench.all [--quick] [--only write_path,latency,...] [--encryption on|off] [--json PATH]

Each benchmark runs with its own defaults (or its --quick sizes), its --database default unless --database is
given (latency and write_path run on both stores, the others on SQLite), and --runs if given; --encryption goes
to those that take it (latency, fanout, write_path: with `on`, encrypted samples to a server that requires them).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import traceback
from types import ModuleType
from typing import Any

from bench import connections, crypto, fanout, latency, subscription_scale, write_path
from bench.machine import MachineLoad, private_data_home, raise_open_files
from bench.report import Report, command_line, print_tables, report_document, targets_table, write_json
from bench.servers import DEFAULT_PG

BENCHMARKS: dict[str, ModuleType] = {
    "write_path": write_path,
    "latency": latency,
    "fanout": fanout,
    "subscription_scale": subscription_scale,
    "connections": connections,
    "crypto": crypto,
}


ENCRYPTING = ("latency", "fanout", "write_path")  # the benchmarks with --encryption


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="every benchmark at its smallest sizes (a smoke run)")
    p.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated benchmarks to run")
    p.add_argument("--database", choices=["sqlite", "postgresql", "both"], default=None)
    p.add_argument("--pg-url", default=DEFAULT_PG)
    p.add_argument("--runs", type=int, default=None)
    p.add_argument(
        "--encryption",
        choices=["on", "off"],
        default=None,
        help=f"end-to-end encryption for {', '.join(ENCRYPTING)} (each one's default: off)",
    )
    p.add_argument("--json", metavar="PATH", default=None, help="combined JSON report ('-': stdout)")
    return p


def main(argv: list[str] | None = None) -> int:
    raise_open_files()
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(arguments)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    documents: dict[str, Any] = {}
    failures: dict[str, str] = {}
    started = dt.datetime.now(dt.UTC)
    load = MachineLoad()
    for name in names:
        module = BENCHMARKS[name]
        sub_arguments = ["--pg-url", args.pg_url]
        if args.quick:
            sub_arguments.append("--quick")
        if args.database:
            sub_arguments += ["--database", args.database]
        if args.runs:
            sub_arguments += ["--runs", str(args.runs)]
        if args.encryption and name in ENCRYPTING:
            sub_arguments += ["--encryption", args.encryption]
        sub_args = module.parser().parse_args(sub_arguments)
        print(f"== bench.{name} {' '.join(sub_arguments)}", file=sys.stderr)
        sub_load = MachineLoad()
        sub_started = dt.datetime.now(dt.UTC)
        try:
            with private_data_home():
                report: Report = asyncio.run(module.run(sub_args))
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return 130
        except Exception:
            failures[name] = traceback.format_exc()
            print(f"bench.{name} failed:\n{failures[name]}", file=sys.stderr)
            continue
        tables = [*report.tables]
        if report.targets:
            tables.append(targets_table(f"{name}: targets", report.targets))
        print_tables(tables)
        documents[name] = report_document(
            name, command_line(f"bench.{name}", sub_arguments), vars(sub_args), report, sub_load, sub_started
        )
    every_target = [{"benchmark": n, **t} for n, d in documents.items() for t in d["targets"]]
    combined = report_document("all", command_line("bench.all", arguments), vars(args), Report({}, []), load, started)
    combined["results"] = documents
    combined["targets"] = every_target
    combined["failures"] = failures
    print(
        f"\nmachine: {os.cpu_count()} cores, load average {combined['machine']['loadavg_start']} at start, "
        f"{combined['machine']['loadavg_end']} at end; CPU busy {combined['machine']['cpu_busy_fraction']:.0%}; "
        f"{combined['machine']['cpu_model']}, Python loop {combined['machine']['python_loop_ns_start']} ns/iteration "
        f"at start, {combined['machine']['python_loop_ns']} at end"
    )
    write_json(combined, args.json)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
