"""Idle cost on PostgreSQL: the transactions per second that idle nodes (no client connected, nothing written)
make on their database, from `pg_stat_database.xact_commit` read before and after --duration seconds.

    .venv/bin/python -m bench.idle_database [--nodes 2] [--duration 20] [--settle 5]

The nodes start on a fresh database, are left --settle seconds (their start-up writes and the statistics'
flush, which trails a backend's transactions by up to a second, are then behind), and the count is read from
another database's connection, so that the reads are not counted. Every transaction of the database counts:
the dispatchers' polls, each node's session watch, retention, the listening connections' checks.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from bench.report import Report, Table, base_parser, cli, median
from bench.servers import medstream_nodes_on

NAME = "idle_database"


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__.split("\n\n")[0], databases_default="postgresql")
    p.add_argument("--nodes", type=int, default=2, help="idle nodes on the database (default 2)")
    p.add_argument("--duration", type=float, default=None, help="seconds counted (default 20; quick 5)")
    p.add_argument("--settle", type=float, default=5.0, help="seconds after the start before counting (default 5)")
    return p


async def committed(pg_url: str, database: str) -> int:
    import asyncpg  # a Medstream dependency

    conn = await asyncpg.connect(pg_url.rstrip("/") + "/postgres", timeout=10)
    try:
        return int(await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", database))
    finally:
        await conn.close()


async def measure(args: argparse.Namespace, duration: float) -> dict[str, Any]:
    async with medstream_nodes_on("postgresql", args.pg_url, args.nodes) as servers:
        database = servers[0].argv[servers[0].argv.index("--database") + 1].rsplit("/", 1)[1]
        await asyncio.sleep(args.settle)
        before, started = await committed(args.pg_url, database), time.monotonic()
        await asyncio.sleep(duration)
        after, elapsed = await committed(args.pg_url, database), time.monotonic() - started
    return {"transactions": after - before, "seconds": elapsed, "per_second": (after - before) / elapsed}


async def run(args: argparse.Namespace) -> Report:
    if args.database != "postgresql":
        raise SystemExit("idle_database measures PostgreSQL only (--database postgresql)")
    duration = args.duration or (5.0 if args.quick else 20.0)
    runs = [await measure(args, duration) for _ in range(args.runs or 1)]
    per_second = median(r["per_second"] for r in runs)
    table = Table(
        f"Idle PostgreSQL nodes: transactions committed on their database ({args.nodes} node(s), {duration:g} s "
        f"after {args.settle:g} s, median of {len(runs)} run(s))",
        ["nodes", "transactions/s", "per node/s", "each run /s"],
        [[args.nodes, per_second, (per_second or 0) / args.nodes, " ".join(f"{r['per_second']:.2f}" for r in runs)]],
    )
    return Report({"nodes": args.nodes, "duration": duration, "runs": runs, "per_second": per_second}, [table])


def main(argv: list[str] | None = None) -> int:
    return cli(NAME, parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
