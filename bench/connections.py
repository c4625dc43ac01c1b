"""Connections: server resident memory per idle, authenticated websocket connection with one subscription, at
10,000 connections, for each websocket setting (permessage-deflate on, which keeps no compression context
between messages; on with context takeover; off), and the transport alone.

    .venv/bin/python -m bench.connections [--connections 10000] [--settings deflate-on,deflate-context,deflate-off]

Raw websocket clients (the `websockets` library, which offers permessage-deflate as the SDK does) in
--client-processes processes open the sockets; each authenticates and subscribes once (DataSample CREATE,
label filter), then stays idle, answering the server's pings. The server's RSS (VmRSS of /proc/<pid>/status)
is read after --warmup connections (so that what every server allocates once is not counted) and again
after all of them, then after --idle seconds (one heartbeat round at the default 20 s); per connection =
(RSS after - RSS at warm-up) / (connections - warm-up). The baseline rows are the same sockets on
bench/baseline_server.py (Starlette/uvicorn, one message exchanged in place of auth and subscribe).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from bench import clients
from bench.machine import raise_open_files
from bench.report import Progress, Report, Table, Target, base_parser, cli, judged
from bench.servers import ServerProcess, baseline_server, health, make_professional, medstream_on, running
from bench.workers import Worker, gather_from, split, workers_stopped

NAME = "connections"
# Per setting: the server's environment, and the baseline's permessage-deflate (None: the baseline has no such
# setting). uvicorn alone always keeps a compression context per socket (context takeover).
SETTINGS: dict[str, tuple[dict[str, str], bool | None]] = {
    "deflate-on": ({"MEDSTREAM_WS_PER_MESSAGE_DEFLATE": "1", "MEDSTREAM_WS_DEFLATE_CONTEXT_TAKEOVER": "0"}, None),
    "deflate-context": ({"MEDSTREAM_WS_PER_MESSAGE_DEFLATE": "1", "MEDSTREAM_WS_DEFLATE_CONTEXT_TAKEOVER": "1"}, True),
    "deflate-off": ({"MEDSTREAM_WS_PER_MESSAGE_DEFLATE": "0"}, False),
}


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=None, help="idle connections (default 10,000; quick 50)")
    p.add_argument("--warmup", type=int, default=None, help="connections opened before the first reading (100)")
    p.add_argument("--idle", type=float, default=None, help="seconds idle before the last reading (default 25)")
    p.add_argument("--settle", type=float, default=None, help="seconds before each reading (default 3; quick 0.2)")
    p.add_argument("--settings", default=",".join(SETTINGS), help="websocket settings to measure (default: all)")
    p.add_argument("--client-processes", type=int, default=4, help="processes holding the sockets (default 4)")
    p.add_argument("--no-baseline", action="store_true", help="skip the transport-only rows")
    p.add_argument("--connect-concurrency", type=int, default=25, help="handshakes in flight per process (25)")
    return p


async def settle(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def measure(
    server: ServerProcess, holders: list[Worker], total: int, warmup: int, idle: float, medstream: bool,
    progress: Progress, label: str, pause: float,
) -> dict[str, Any]:  # fmt: skip
    async def open_more(count: int, first_index: int) -> dict[str, Any]:
        for holder, n in zip(holders, split(count, len(holders)), strict=False):
            holder.send("connect", sockets=n, per_socket=1, filter_kind="match", first_index=first_index)
            first_index += n
        used = holders[: len(split(count, len(holders)))]
        done = await gather_from(used, "connected", within=1800)
        failures = sum(d["failures"] + d["refused"] for d in done)
        if failures:
            problem = next(d["first_failure"] or d["first_refusal"] for d in done if d["failures"] or d["refused"])
            raise RuntimeError(f"{failures} connections failed: {problem}")
        return {"seconds": max(d["seconds"] for d in done), "deflate": any(d["deflate"] for d in done)}

    progress.note(f"{label}: {warmup} warm-up connections")
    await open_more(warmup, 0)
    await settle(pause)
    rss_start = server.rss_kib()
    progress.note(f"{label}: opening {total - warmup:,} more")
    opened = await open_more(total - warmup, warmup)
    await settle(pause)
    rss_open = server.rss_kib()
    counted = None
    if medstream:
        events = (await health(server.url))["events"]
        counted = {"connections": events["connections"], "subscriptions": events["subscriptions"]}
        if events["connections"] != total:
            raise RuntimeError(f"the server counts {events['connections']} connections, not {total}")
    progress.note(f"{label}: {total:,} idle for {idle:g} s")
    cpu = server.cpu_seconds()
    await settle(idle)
    idle_cpu = (server.cpu_seconds() - cpu) / idle if idle else None
    rss_idle = server.rss_kib()
    added = total - warmup
    return {
        "connections": total,
        "per_message_deflate": opened["deflate"],
        "connect_seconds": opened["seconds"],
        "connects_per_second": added / opened["seconds"] if opened["seconds"] else None,
        "rss_warmup_mib": rss_start / 1024,
        "rss_open_mib": rss_open / 1024,
        "rss_idle_mib": rss_idle / 1024,
        "kb_per_connection": (rss_open - rss_start) * 1024 / added / 1000,
        "kb_per_connection_after_idle": (rss_idle - rss_start) * 1024 / added / 1000,
        "server_counts": counted,
        "idle_cpu_fraction": idle_cpu,
    }


async def run(args: argparse.Namespace) -> Report:
    raise_open_files()
    if args.database == "both":
        args.database = "sqlite"
    total = args.connections or (50 if args.quick else 10_000)
    warmup = args.warmup if args.warmup is not None else min(100, max(1, total // 10))
    idle = args.idle if args.idle is not None else (0.5 if args.quick else 25.0)
    pause = args.settle if args.settle is not None else (0.2 if args.quick else 3.0)
    names = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise SystemExit(f"unknown setting(s) {unknown}; known: {', '.join(SETTINGS)}")
    baselines = 0 if args.no_baseline else sum(SETTINGS[n][1] is not None for n in names)
    progress = Progress(len(names) + baselines, "connections")
    rows: list[dict[str, Any]] = []
    processes = max(1, min(args.client_processes, total))
    for name in names:
        env, baseline_deflate = SETTINGS[name]
        async with medstream_on(args.database, args.pg_url, env) as server:
            identity = await make_professional(server.url)
            holders = [
                Worker(clients.socket_holder, name=f"holder-{i}", ws_url=server.ws_base + "/ws/v1/events",
                       token=identity.token, hcp_id=identity.hcp_id, label_code="IDLE", compression=True,
                       connect_concurrency=args.connect_concurrency)
                for i in range(processes)
            ]  # fmt: skip
            with workers_stopped(holders):
                await gather_from(holders, "ready")
                result = await measure(server, holders, total, warmup, idle, True, progress, f"medstream {name}", pause)
        rows.append({"server": "medstream", "setting": name, **result})
        progress.advance()
        if not args.no_baseline and baseline_deflate is not None:
            async with running(baseline_server(per_message_deflate=baseline_deflate)) as server:
                holders = [
                    Worker(clients.socket_holder, name=f"holder-{i}", ws_url=server.ws_base + "/ws",
                           protocol="baseline", compression=True, connect_concurrency=args.connect_concurrency)
                    for i in range(processes)
                ]  # fmt: skip
                with workers_stopped(holders):
                    await gather_from(holders, "ready")
                    result = await measure(
                        server, holders, total, warmup, idle, False, progress, f"baseline {name}", pause
                    )
            rows.append({"server": "baseline", "setting": name, **result})
            progress.advance()
    progress.close()
    table = Table(
        f"Connections: server memory per idle websocket ({total:,} connections, one subscription each on "
        f"Medstream; RSS delta after {warmup} warm-up connections)",
        ["server", "setting", "deflate negotiated", "KB/connection", f"after {idle:g} s idle", "RSS MiB",
         "connects/s", "idle CPU %"],
        [
            [r["server"], r["setting"], r["per_message_deflate"], r["kb_per_connection"],
             r["kb_per_connection_after_idle"], r["rss_idle_mib"], r["connects_per_second"],
             r["idle_cpu_fraction"] * 100 if r["idle_cpu_fraction"] is not None else None]
            for r in rows
        ],
        ["KB = 1,000 bytes; baseline = bench/baseline_server.py, the transport alone"],
    )  # fmt: skip
    targets = []
    for r in rows:
        if r["server"] != "medstream":
            continue
        worst = max(r["kb_per_connection"], r["kb_per_connection_after_idle"])
        # Context takeover is opt-in, for its bandwidth: the target is for what the server runs unless told
        # otherwise (deflate off, or on without takeover), and this row says what the option costs.
        opt_in = r["setting"] == "deflate-context"
        targets.append(
            Target(f"{r['connections']:,} idle connections, {r['setting']}",
                   "none: opt-in, its cost" if opt_in else "< 50 KB each at 10,000", worst, "KB",
                   None if opt_in else judged(worst < 50, r["connections"] >= 10_000))
        )  # fmt: skip
    return Report({"connections": total, "warmup": warmup, "idle_seconds": idle, "rows": rows}, [table], targets)


def main(argv: list[str] | None = None) -> int:
    return cli(NAME, parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
