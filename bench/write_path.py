"""Write path: data samples created per second through REST, one per request and in batches.

    .venv/bin/python -m bench.write_path [--database sqlite|postgresql|both] [--duration S] [--batch-size N]
        [--encryption on|off]

Writers are separate processes (bench/http.py: keep-alive HTTP/1.1, cheap enough to leave the cores to the
server) posting to
`POST /rest/v1/patients/{id}/data-samples` (one sample) or `.../batch` (a list), back to back, with a given
number of requests in flight; samples/s = samples stored (200 answers) / wall time. Medians of --runs runs.

With --encryption on the server requires end-to-end encryption and every sample is sent encrypted as the SDK
sends it (bench/encryption.py), made and sealed by its writer before the measurement: the writer's only work in
the timed part is sending them. A writer prepares what the measurement should need (the rate of the last run of
the same configuration x1.5, or a generous first guess); one that runs out stops there, its run counted over the
time it ran, and the table says so.
"""

from __future__ import annotations

import argparse
import math
import sys
import uuid
from typing import Any

from bench import clients
from bench.encryption import add_encryption_option, encryption_env, keys_directory, set_up
from bench.report import Progress, Report, Table, Target, base_parser, cli, databases_of, judged, median
from bench.servers import Identity, ServerProcess, make_professional, medstream_on
from bench.workers import Worker, gather_from, split, workers_stopped

NAME = "write_path"


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__.split("\n\n")[0], databases_default="both")
    p.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 10; quick 0.5)")
    p.add_argument("--batch-size", type=int, default=1000, help="samples per batch request (default 1000)")
    p.add_argument("--in-flight", type=int, default=8, help="requests in flight for the concurrent rows (default 8)")
    p.add_argument("--writers", type=int, default=2, help="writer processes for the concurrent rows (default 2)")
    add_encryption_option(p)
    return p


# With --encryption on, the rate (samples/s, all writers) the writers prepare for in the first run of a
# configuration: above what this machine gives in clear in its quick hours (bench/README.md); later runs prepare
# for the fastest earlier run's rate times the margin.
FIRST_GUESS_PER_SECOND = {"single": 4_000, "batches": 30_000}
PREPARED_MARGIN = 1.5


def configurations(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [
        {"label": "one per request, 1 in flight", "batch": 1, "in_flight": 1, "writers": 1},
        {
            "label": f"one per request, {args.in_flight} in flight",
            "batch": 1,
            "in_flight": args.in_flight,
            "writers": min(args.writers, args.in_flight),
        },
        {
            "label": f"batches of {args.batch_size:,}, 1 in flight",
            "batch": args.batch_size,
            "in_flight": 1,
            "writers": 1,
        },
        {
            "label": f"batches of {args.batch_size:,}, 2 in flight",
            "batch": args.batch_size,
            "in_flight": 2,
            "writers": min(2, args.writers),
        },
    ]


async def prepare(used: list[Worker], config: dict[str, Any], duration: float, before: list[dict[str, Any]]) -> None:
    """Have each writer make, ahead of the measurement, the encrypted samples it should send in it: at the
    fastest earlier run's rate of this configuration times the margin, else at the first guess."""
    fastest = max((m["samples_per_second"] for m in before), default=None)
    rate = (
        fastest * PREPARED_MARGIN
        if fastest
        else FIRST_GUESS_PER_SECOND["single" if config["batch"] == 1 else "batches"]
    )
    count = math.ceil(rate / len(used) * duration / config["batch"]) * config["batch"]
    for worker in used:
        worker.send("prepare", count=count)
    await gather_from(used, "prepared", within=1800)


async def measure(
    server: ServerProcess,
    writers: list[Worker],
    config: dict[str, Any],
    duration: float,
    before: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One run of `config`; with `before` (the earlier runs of this configuration: --encryption on) the writers
    first prepare their encrypted samples."""
    used = writers[: config["writers"]]
    if before is not None:
        await prepare(used, config, duration, before)
    cpu_before = server.cpu_seconds()
    for worker, in_flight in zip(used, split(config["in_flight"], len(used)), strict=False):
        worker.send("write", run=uuid.uuid4().hex[:8], batch=config["batch"], concurrency=in_flight, duration=duration)
    done = await gather_from(used, "written", within=duration * 4 + 120)
    elapsed = max(d["elapsed"] for d in done)
    samples = sum(d["samples"] for d in done)
    errors = sum(d["errors"] for d in done)
    requests = sum(d["requests"] for d in done)
    return {
        "samples_per_second": samples / elapsed,
        "requests_per_second": requests / elapsed,
        "samples": samples,
        "errors": errors,
        "first_error": next((d["first_error"] for d in done if d["first_error"]), None),
        "rest_p50_ms": median(d["rest_latency_ms"]["p50"] for d in done),
        "rest_p99_ms": max((d["rest_latency_ms"]["p99"] or 0) for d in done),
        "server_cpu_seconds_per_1000_samples": (server.cpu_seconds() - cpu_before) / max(1, samples) * 1000,
        "ran_out": any(d["ran_out"] for d in done),
        "elapsed": elapsed,
    }


async def run(args: argparse.Namespace) -> Report:
    duration = args.duration or (0.5 if args.quick else 10.0)
    runs = args.runs or (1 if args.quick else 3)
    batch_size = min(args.batch_size, 100) if args.quick and args.batch_size == 1000 else args.batch_size
    args.batch_size = batch_size
    databases = databases_of(args.database)
    configs = configurations(args)
    progress = Progress(len(databases) * len(configs) * runs, "write_path")
    results: list[dict[str, Any]] = []
    for database in databases:
        async with (
            medstream_on(database, args.pg_url, encryption_env(args.encryption)) as server,
            keys_directory() as directory,
        ):
            identity: Identity = await make_professional(server.url)
            patient, keys = await set_up(server.url, identity, args.encryption, directory)
            count = max(c["writers"] for c in configs)
            workers = [
                Worker(
                    clients.rest_writer,
                    name=f"writer-{i}",
                    url=server.url,
                    token=identity.token,
                    patient_id=patient,
                    label_code="WRITE",
                    keys=keys,
                )
                for i in range(count)
            ]
            with workers_stopped(workers):
                await gather_from(workers, "ready")
                samples: dict[str, list[dict[str, Any]]] = {c["label"]: [] for c in configs}
                for _ in range(runs):
                    for config in configs:
                        progress.note(f"{database}: {config['label']}")
                        before = samples[config["label"]] if keys is not None else None
                        samples[config["label"]].append(await measure(server, workers, config, duration, before))
                        progress.advance()
                for config in configs:
                    measured = samples[config["label"]]
                    results.append(
                        {
                            "database": database,
                            "configuration": config["label"],
                            "batch": config["batch"],
                            "in_flight": config["in_flight"],
                            "samples_per_second": median(m["samples_per_second"] for m in measured),
                            "requests_per_second": median(m["requests_per_second"] for m in measured),
                            "rest_p50_ms": median(m["rest_p50_ms"] for m in measured),
                            "rest_p99_ms": median(m["rest_p99_ms"] for m in measured),
                            "server_cpu_ms_per_sample": median(
                                m["server_cpu_seconds_per_1000_samples"] for m in measured
                            ),
                            "errors": sum(m["errors"] for m in measured),
                            "first_error": next((m["first_error"] for m in measured if m["first_error"]), None),
                            "runs": [m["samples_per_second"] for m in measured],
                            "ran_out": [round(m["elapsed"], 2) for m in measured if m["ran_out"]],
                        }
                    )
    progress.close()
    short = [f"{r['database']}, {r['configuration']}: {', '.join(f'{s:g} s' for s in r['ran_out'])}"
             for r in results if r["ran_out"]]  # fmt: skip
    table = Table(
        f"Write path: data samples created per second through REST (encryption {args.encryption}; median of {runs} "
        f"run(s) of {duration:g} s)",
        ["database", "requests", "samples/s", "requests/s", "REST p50 ms", "REST p99 ms", "server CPU ms/sample",
         "errors"],
        [
            [r["database"], r["configuration"], r["samples_per_second"], r["requests_per_second"], r["rest_p50_ms"],
             r["rest_p99_ms"], r["server_cpu_ms_per_sample"], r["errors"]]
            for r in results
        ],
        (["encryption on: the server requires it; each sample encrypted as the SDK sends it, made and sealed "
          "before the run"] if args.encryption == "on" else [])
        + ([f"runs that used up their prepared samples, over the time they ran: {'; '.join(short)}"]
           if short else []),
    )  # fmt: skip
    targets = []
    for r in results:
        if r["database"] != "sqlite":
            continue
        if r["batch"] > 1 and r["in_flight"] == 1:
            targets.append(
                Target(f"SQLite, {r['configuration']}", ">= 10,000 samples/s in 1,000s", r["samples_per_second"],
                       "samples/s", judged(r["samples_per_second"] >= 10_000, r["batch"] >= 1000))
            )  # fmt: skip
        if r["batch"] == 1:
            targets.append(
                Target(f"SQLite, {r['configuration']}", ">= 1,000 samples/s", r["samples_per_second"], "samples/s",
                       r["samples_per_second"] >= 1_000)
            )  # fmt: skip
    return Report(
        {"duration": duration, "runs": runs, "encryption": args.encryption, "rows": results}, [table], targets
    )


def main(argv: list[str] | None = None) -> int:
    return cli(NAME, parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
