"""Fan-out: one stream of events to 1, 100 and 1,000 subscriber sockets that all match; deliveries/s, and the
same against a minimal websocket broadcast on the same stack (bench/baseline_server.py).

    .venv/bin/python -m bench.fanout [--subscribers 1,100,1000] [--deliveries N] [--batch B] [--batched-frames]
        [--encryption on|off]

Subscriber sockets are raw websocket clients (the `websockets` library, the SDK's own) spread over
--client-processes processes; each authenticates and subscribes to DataSample CREATE with a label filter that every
written sample matches. A writer process then creates the events through REST in batches of --batch, back to
back. Deliveries/s = events received by all sockets / (last event received - first event received). With
--batched-frames the sockets ask for several events per frame, as the SDK does (the baseline still sends one
message per frame, so the ratio then compares a protocol feature, not the stack). The baseline is driven the
same way: the same client processes and sockets, a first message and its answer in place of auth and
subscribe, then the writer asks it to broadcast the same number of messages, of the mean size of Medstream's
event frames, in the same batches.

With --encryption on the server requires end-to-end encryption and the writer sends every sample encrypted as
the SDK sends it (bench/encryption.py), all of them made and sealed before the measurement; the sockets count
the events as they come (decrypting them is the subscribers' work, which `bench.latency` and `bench.crypto`
measure). The events are larger, and so are the baseline's messages, which take their mean size.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

from bench import clients
from bench.encryption import add_encryption_option, encryption_env, keys_directory, set_up
from bench.report import Progress, Report, Table, Target, base_parser, cli, judged, median
from bench.servers import (
    ServerProcess,
    add_metrics_option,
    baseline_server,
    make_professional,
    medstream_on,
    metrics_env,
    running,
    scrape_ms,
    wait_dispatched,
)
from bench.workers import Worker, gather_from, split, workers_stopped

NAME = "fanout"


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--subscribers", default=None, help="comma-separated socket counts (default 1,100,1000)")
    p.add_argument(
        "--deliveries",
        type=int,
        default=None,
        help="deliveries per measurement: events = deliveries / sockets (default 200,000; quick 200)",
    )
    p.add_argument("--max-events", type=int, default=5000, help="at most this many events per measurement")
    p.add_argument("--batch", type=int, default=100, help="samples per REST batch of the writer (default 100)")
    p.add_argument("--client-processes", type=int, default=2, help="processes holding the sockets (default 2)")
    p.add_argument("--no-baseline", action="store_true", help="skip the baseline server")
    p.add_argument("--batched-frames", action="store_true",
                   help="sockets ask for batched frames (several events per frame, as the SDK does); the baseline "
                        "still sends one message per frame")  # fmt: skip
    p.add_argument("--per-message-deflate", choices=["server-default", "on", "off"], default="server-default",
                   help="MEDSTREAM_WS_PER_MESSAGE_DEFLATE for the server (and the baseline's setting)")  # fmt: skip
    add_metrics_option(p)
    add_encryption_option(p)
    return p


def deflate_env(choice: str) -> dict[str, str]:
    return {} if choice == "server-default" else {"MEDSTREAM_WS_PER_MESSAGE_DEFLATE": "1" if choice == "on" else "0"}


def event_count(args: argparse.Namespace, sockets: int) -> tuple[int, int]:
    """Events per measurement (deliveries / sockets, at most --max-events) and the batch that divides them."""
    events = max(1, min(args.max_events, args.deliveries // sockets))
    batch = max(1, min(args.batch, events))
    return events - events % batch, batch


async def drive(
    server: ServerProcess,
    holders: list[Worker],
    writer: Worker,
    sockets: int,
    events: int,
    batch: int,
    write: dict[str, Any],
) -> dict[str, Any]:
    """Arm the holders, have the writer make `events` events, and wait for every socket to get them all;
    with the server's CPU time per delivery."""
    cpu = server.cpu_seconds()
    for holder in holders:
        holder.send("arm", expected=events)
    await gather_from(holders, "armed")
    writer.send("write", **write)
    written = await writer.arecv("written", within=600)
    for holder in holders:
        holder.send("wait", within=60 + events * sockets / 5000)
    tallies = await gather_from(holders, "tally", within=900)
    delivered = sum(t["events"] for t in tallies)
    first = min(t["first_ns"] for t in tallies if t["first_ns"]) if delivered else 0
    last = max(t["last_ns"] for t in tallies) if delivered else 0
    seconds = (last - first) / 1e9 if last > first else None
    return {
        "events": events,
        "sockets": sockets,
        "expected": events * sockets,
        "delivered": delivered,
        "complete_sockets": sum(t["complete"] for t in tallies),
        "closed_sockets": sum(t["closed_count"] for t in tallies),
        "closed_reasons": [r for t in tallies for r in t["closed"]][:3],
        "seconds": seconds,
        "deliveries_per_second": delivered / seconds if seconds else None,
        "mean_frame_bytes": sum(t["bytes"] for t in tallies) / delivered if delivered else None,
        "write_errors": written.get("errors", 0),
        "first_write_error": written.get("first_error"),
        "server_cpu_us_per_delivery": (server.cpu_seconds() - cpu) / max(1, delivered) * 1e6,
    }


async def open_sockets(holders: list[Worker], sockets: int, kind: str = "match") -> dict[str, Any]:
    index = 0
    for holder, count in zip(holders, split(sockets, len(holders)), strict=False):
        holder.send("connect", sockets=count, per_socket=1, filter_kind=kind, first_index=index)
        index += count
    results = await gather_from(holders[: len(split(sockets, len(holders)))], "connected", within=600)
    opened = sum(r["sockets"] for r in results)
    if opened != sockets or any(r["failures"] or r["refused"] for r in results):
        problem = next((r["first_failure"] or r["first_refusal"] for r in results if r["failures"] or r["refused"]), "")
        raise RuntimeError(f"opened {opened} of {sockets} sockets: {problem}")
    return {
        "sockets": opened,
        "seconds": max(r["seconds"] for r in results),
        "deflate": any(r["deflate"] for r in results),
    }


async def medstream_runs(
    args: argparse.Namespace, counts: list[int], runs: int, progress: Progress
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    env = deflate_env(args.per_message_deflate) | metrics_env(args.metrics) | encryption_env(args.encryption)
    for sockets in counts:
        async with medstream_on(args.database, args.pg_url, env) as server, keys_directory() as directory:
            identity = await make_professional(server.url)
            patient, keys = await set_up(server.url, identity, args.encryption, directory)
            label = f"FAN-{uuid.uuid4().hex[:6]}"
            processes = max(1, min(args.client_processes, sockets))
            holders = [
                Worker(clients.socket_holder, name=f"holder-{i}", ws_url=server.ws_base + "/ws/v1/events",
                       token=identity.token, hcp_id=identity.hcp_id, label_code=label, compression=True,
                       batched=args.batched_frames)
                for i in range(processes)
            ]  # fmt: skip
            writer = Worker(clients.rest_writer, name="writer", url=server.url, token=identity.token,
                            patient_id=patient, label_code=label, keys=keys)  # fmt: skip
            with workers_stopped([*holders, writer]):
                await gather_from([*holders, writer], "ready")
                progress.note(f"medstream: opening {sockets:,} sockets")
                deflate = (await open_sockets(holders, sockets))["deflate"]
                events, batch = event_count(args, sockets)
                measured = []
                for _ in range(runs):
                    if keys is not None:  # this run's encrypted samples, made before it
                        writer.send("prepare", count=events)
                        await writer.arecv("prepared", within=600)
                    progress.note(f"medstream: {events:,} events to {sockets:,} sockets")
                    result = await drive(
                        server, holders, writer, sockets, events, batch,
                        {"run": uuid.uuid4().hex[:8], "batch": batch, "count": events // batch},
                    )  # fmt: skip
                    await wait_dispatched(server.url)
                    measured.append(result)
                    progress.advance()
                scrape = await scrape_ms(server.url)  # with every socket still open
            rows.append(
                summarise("medstream", sockets, measured, deflate) | {"metrics": args.metrics, "scrape_ms": scrape}
            )
    return rows


async def baseline_runs(
    args: argparse.Namespace, counts: list[int], runs: int, sizes: dict[int, float], deflate: bool, progress: Progress
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for sockets in counts:
        async with running(baseline_server(per_message_deflate=deflate)) as server:
            processes = max(1, min(args.client_processes, sockets))
            holders = [
                Worker(clients.socket_holder, name=f"holder-{i}", ws_url=server.ws_base + "/ws", protocol="baseline",
                       compression=True)
                for i in range(processes)
            ]  # fmt: skip
            writer = Worker(clients.broadcast_writer, name="writer", url=server.url)
            with workers_stopped([*holders, writer]):
                await gather_from([*holders, writer], "ready")
                progress.note(f"baseline: opening {sockets:,} sockets")
                await open_sockets(holders, sockets)
                events, batch = event_count(args, sockets)
                size = int(sizes.get(sockets) or 600)
                measured = []
                for _ in range(runs):
                    progress.note(f"baseline: {events:,} messages to {sockets:,} sockets")
                    result = await drive(
                        server, holders, writer, sockets, events, batch,
                        {"run": "", "count": events, "batch": batch, "size": size},
                    )  # fmt: skip
                    measured.append(result)
                    progress.advance()
            rows.append(summarise("baseline", sockets, measured, deflate))
    return rows


def summarise(server: str, sockets: int, measured: list[dict[str, Any]], deflate: bool) -> dict[str, Any]:
    return {
        "server": server,
        "sockets": sockets,
        "per_message_deflate": deflate,
        "events": measured[0]["events"],
        "deliveries_per_second": median(m["deliveries_per_second"] for m in measured),
        "runs": [m["deliveries_per_second"] for m in measured],
        "delivered": sum(m["delivered"] for m in measured),
        "expected": sum(m["expected"] for m in measured),
        "closed_sockets": sum(m["closed_sockets"] for m in measured),
        "closed_reasons": [r for m in measured for r in m["closed_reasons"]][:3],
        "mean_frame_bytes": median(m["mean_frame_bytes"] for m in measured),
        "server_cpu_us_per_delivery": median(m["server_cpu_us_per_delivery"] for m in measured),
        "write_errors": sum(m["write_errors"] for m in measured),
    }


async def run(args: argparse.Namespace) -> Report:
    if args.database == "both":
        args.database = "sqlite"
    counts = [int(c) for c in (args.subscribers or ("1,10" if args.quick else "1,100,1000")).split(",")]
    runs = args.runs or (1 if args.quick else 3)
    args.deliveries = args.deliveries or (200 if args.quick else 200_000)
    steps = len(counts) * runs * (1 if args.no_baseline else 2)
    progress = Progress(steps, "fanout")
    rows = await medstream_runs(args, counts, runs, progress)
    baseline: list[dict[str, Any]] = []
    if not args.no_baseline:
        sizes = {r["sockets"]: r["mean_frame_bytes"] for r in rows}
        deflate = rows[0]["per_message_deflate"] if rows else True
        baseline = await baseline_runs(args, counts, runs, sizes, deflate, progress)
    progress.close()
    by_count = {r["sockets"]: r for r in baseline}
    for row in rows:
        base = by_count.get(row["sockets"])
        ratio = None
        if base and base["deliveries_per_second"] and row["deliveries_per_second"]:
            ratio = row["deliveries_per_second"] / base["deliveries_per_second"]
        row["baseline_deliveries_per_second"] = base["deliveries_per_second"] if base else None
        row["ratio_to_baseline"] = ratio
    table = Table(
        f"Fan-out: one event stream to N matching sockets ({args.database}, permessage-deflate "
        f"{'on' if rows and rows[0]['per_message_deflate'] else 'off'}, "
        f"{'batched frames, ' if args.batched_frames else ''}metrics {args.metrics}, encryption {args.encryption}, "
        f"median of {runs} run(s))",
        ["sockets", "events", "frame bytes", "deliveries/s", "baseline/s", "ratio", "server CPU us/delivery",
         "baseline CPU us/delivery", "lost", "closed"],
        [
            [r["sockets"], r["events"], r["mean_frame_bytes"], r["deliveries_per_second"],
             r["baseline_deliveries_per_second"], r["ratio_to_baseline"], r["server_cpu_us_per_delivery"],
             by_count[r["sockets"]]["server_cpu_us_per_delivery"] if r["sockets"] in by_count else None,
             r["expected"] - r["delivered"], r["closed_sockets"]]
            for r in rows
        ],
        [
            "baseline: bench/baseline_server.py, Starlette + uvicorn, same sockets and message size, no Medstream code",
            *(f"GET /metrics with {r['sockets']:,} sockets open: {r['scrape_ms']:.1f} ms" for r in rows
              if r.get("scrape_ms") is not None),
        ],
    )  # fmt: skip
    targets = []
    top = max(rows, key=lambda r: r["sockets"]) if rows else None
    if top is not None:
        rate = top["deliveries_per_second"]
        at_size = top["sockets"] >= 1000
        targets.append(Target(f"deliveries/s with {top['sockets']:,} subscribers", ">= 50,000 at 1,000", rate, "/s",
                              judged(rate is not None and rate >= 50_000, at_size)))  # fmt: skip
        if top["ratio_to_baseline"] is not None:
            ratio = top["ratio_to_baseline"]
            targets.append(Target(f"ratio to baseline with {top['sockets']:,} subscribers", ">= 0.5x at 1,000",
                                  ratio, "x", judged(ratio >= 0.5, at_size)))  # fmt: skip
    results = {"runs": runs, "encryption": args.encryption, "medstream": rows, "baseline": baseline}
    return Report(results, [table], targets)


def main(argv: list[str] | None = None) -> int:
    return cli(NAME, parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
