"""Latency: from a REST write (in one process) to the SDK callback (in others), p50/p95/p99, at steady write
rates and at the highest sustainable one, with 1 and 10 subscribers that each match every write.

    .venv/bin/python -m bench.latency [--database sqlite|postgresql|both] [--rates 200,1000] [--subscribers 1,10]
        [--nodes N] [--encryption on|off]

Writers: --writers processes creating data samples through REST (the lean client of bench/http.py) on an open
loop schedule (each request sent at its time, at most --in-flight outstanding per writer), each stamping its
send time (time.time_ns) in the sample's `comment`. Subscribers: one process per subscriber, each a MedTechApi
with one `subscribe_to_data_sample_events(["CREATE"], <label filter>, callback)`; the callback computes now -
send time. Percentiles pool every subscriber's deliveries; medians over --runs runs. A rate is sustainable when
the writers achieved at least 95% of it, every subscriber got every event, and p99 stayed under --max-p99-ms,
in most of its runs; the highest sustainable rate is searched upwards from the highest sustainable --rates by
steps of x1.25 (a step that fails is run once more before the search stops). With --nodes N (PostgreSQL) N
servers share the database: the writers write through the first, the subscribers are spread over the others,
so every event crosses from one node to another.

With --encryption on the server requires end-to-end encryption: the professional gets its keys as the SDK makes
them, each writer encrypts every sample as the SDK does (bench/encryption.py: id, entity key and delegation made
ahead of the timed part, the `encryptedSelf` holding the send time sealed at send time), and each subscriber's
SDK opens the professional's key store and decrypts every event before its callback, which reads the send time
from the decrypted comment.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

from bench import clients
from bench.encryption import OwnerKeys, add_encryption_option, encryption_env, keys_directory, set_up
from bench.report import (
    Progress,
    Report,
    Table,
    Target,
    base_parser,
    cli,
    databases_of,
    fmt,
    histogram_quantile,
    latency_summary,
    median,
)
from bench.servers import (
    Identity,
    ServerProcess,
    add_metrics_option,
    make_professional,
    medstream_nodes_on,
    metrics_env,
    send_delay_buckets,
    wait_dispatched,
)
from bench.workers import Worker, gather_from

NAME = "latency"


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__.split("\n\n")[0], databases_default="both")
    p.add_argument("--rates", default=None, help="steady write rates, writes/s (default 200,1000; quick 100)")
    p.add_argument("--subscribers", default=None, help="subscriber counts (default 1,10; quick 1,2)")
    p.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 10; quick 1)")
    p.add_argument("--writers", type=int, default=2, help="writer processes (default 2)")
    p.add_argument("--in-flight", type=int, default=32, help="requests outstanding per writer at most (default 32)")
    p.add_argument("--no-max", action="store_true", help="skip the search for the highest sustainable rate")
    p.add_argument("--max-p99-ms", type=float, default=100.0, help="p99 bound of a sustainable rate (default 100)")
    p.add_argument("--max-rate", type=float, default=20_000, help="stop the search here (default 20,000)")
    p.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="servers on one PostgreSQL database: writers on the first, subscribers on the others (default 1)",
    )
    add_metrics_option(p)
    add_encryption_option(p)
    return p


Buckets = list[tuple[float, float]]  # a cumulative histogram: (upper bound, count)


class Bench:
    def __init__(
        self,
        args: argparse.Namespace,
        servers: list[ServerProcess],
        identity: Identity,
        patient: str,
        keys: OwnerKeys | None = None,
    ) -> None:
        self.args = args
        self.servers = servers
        self.server = servers[0]  # the writers'
        self.subscriber_servers = servers[1:] or servers
        self.identity = identity
        self.patient = patient
        self.keys = keys  # with --encryption on: the professional's keys
        self.label = f"LAT-{uuid.uuid4().hex[:6]}"
        self.subscribers: list[Worker] = []
        self.writers: list[Worker] = []

    async def start_writers(self) -> None:
        self.writers = [
            Worker(clients.rest_writer, name=f"writer-{i}", url=self.server.url, token=self.identity.token,
                   patient_id=self.patient, label_code=self.label, keys=self.keys, seal_at_send=True)
            for i in range(self.args.writers)
        ]  # fmt: skip
        await gather_from(self.writers, "ready")

    async def grow_subscribers(self, count: int) -> None:
        new = [
            Worker(clients.sdk_subscriber, name=f"subscriber-{i}",
                   url=self.subscriber_servers[i % len(self.subscriber_servers)].url,
                   login=self.identity.login, password=self.identity.password, label_code=self.label,
                   key_store=self.keys.key_store if self.keys else None)
            for i in range(len(self.subscribers), count)
        ]  # fmt: skip
        self.subscribers += new
        await gather_from(new, "ready", within=180)

    def stop(self) -> None:
        for worker in [*self.writers, *self.subscribers]:
            worker.stop()

    async def send_delays(self) -> Buckets:
        """The servers' histograms of write-to-first-send delays (`send_delay_buckets`), summed bucket by
        bucket; empty when they keep none."""
        summed: dict[float, float] = {}
        for server in self.servers:
            for bound, count in await send_delay_buckets(server.url) or ():
                summed[bound] = summed.get(bound, 0.0) + count
        return sorted(summed.items())

    @staticmethod
    def send_delays_since(before: Buckets, after: Buckets) -> Buckets:
        counted = dict(before)
        return [(bound, count - counted.get(bound, 0.0)) for bound, count in after]

    async def measure(self, rate: float, duration: float) -> dict[str, Any]:
        run = uuid.uuid4().hex[:8]
        per_writer = rate / len(self.writers)
        if self.keys is not None:  # the encrypted samples of this measurement, made before it starts
            for writer in self.writers:
                writer.send("prepare", count=int(per_writer * duration))
            await gather_from(self.writers, "prepared", within=600)
        delays_before = await self.send_delays()
        cpu_before = sum(server.cpu_seconds() for server in self.servers)
        for writer in self.writers:
            writer.send("write", run=run, rate=per_writer, duration=duration, concurrency=self.args.in_flight, batch=1)
        written = await gather_from(self.writers, "written", within=duration * 3 + 120)
        # writes, their dispatch and their deliveries, on every node
        server_cpu = sum(server.cpu_seconds() for server in self.servers) - cpu_before
        stored = sum(w["requests"] - w["errors"] for w in written)
        achieved = sum(w["requests"] for w in written) / max(w["elapsed"] for w in written)
        for subscriber in self.subscribers:
            subscriber.send("collect", run=run, expected=stored, timeout=15.0)
        collected = await gather_from(self.subscribers, "collected", within=120)
        latencies = [value for c in collected for value in c["latencies"]]
        received = [len(c["latencies"]) for c in collected]
        subscriber_cpu = sum(c["cpu_seconds"] for c in collected)
        summary = latency_summary(latencies)
        lost = stored * len(self.subscribers) - sum(received)
        for server in self.servers:
            await wait_dispatched(server.url)
        delays = self.send_delays_since(delays_before, await self.send_delays())
        sustainable = (
            achieved >= 0.95 * rate
            and lost == 0
            and summary["p99"] is not None
            and summary["p99"] <= self.args.max_p99_ms
            and not any(w["errors"] for w in written)
            and not any(w["ran_out"] for w in written)
        )
        return {
            "rate": rate,
            "achieved_rate": achieved,
            "writes": stored,
            "write_errors": sum(w["errors"] for w in written),
            "first_write_error": next((w["first_error"] for w in written if w["first_error"]), None),
            "deliveries": sum(received),
            "lost": lost,
            "p50_ms": summary["p50"],
            "p95_ms": summary["p95"],
            "p99_ms": summary["p99"],
            "max_ms": summary["max"],
            "rest_p50_ms": median(w["rest_latency_ms"]["p50"] for w in written),
            "rest_p99_ms": max((w["rest_latency_ms"]["p99"] or 0) for w in written),
            "server_send_p50_ms": _ms(histogram_quantile(delays, 0.5)),
            "server_send_p99_ms": _ms(histogram_quantile(delays, 0.99)),
            "server_cpu_us_per_write": server_cpu / stored * 1e6 if stored else None,
            "subscriber_cpu_us_per_event": subscriber_cpu / sum(received) * 1e6 if sum(received) else None,
            "sustainable": sustainable,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _pair(first: float | None, second: float | None) -> str | None:
    if first is None or second is None:
        return None
    return f"{fmt(first)} / {fmt(second)}"


def combine(database: str, subscribers: int, kind: str, measured: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs of each figure; sustainable when most runs were, as the medians judge every other
    figure: one stalled run of three at 200 writes/s must not make the rate unsustainable and send the search
    for the highest rate below it."""
    row: dict[str, Any] = {"database": database, "subscribers": subscribers, "kind": kind, "runs": len(measured)}
    for key in ("rate", "achieved_rate", "p50_ms", "p95_ms", "p99_ms", "max_ms", "rest_p50_ms", "rest_p99_ms",
                "server_send_p50_ms", "server_send_p99_ms", "server_cpu_us_per_write",
                "subscriber_cpu_us_per_event"):  # fmt: skip
        row[key] = median(m[key] for m in measured)
    row["lost"] = sum(m["lost"] for m in measured)
    row["write_errors"] = sum(m["write_errors"] for m in measured)
    row["sustainable"] = 2 * sum(1 for m in measured if m["sustainable"]) > len(measured)
    row["each_run"] = measured
    return row


async def run(args: argparse.Namespace) -> Report:
    duration = args.duration or (1.0 if args.quick else 10.0)
    runs = args.runs or (1 if args.quick else 3)
    rates = [float(r) for r in (args.rates or ("100" if args.quick else "200,1000")).split(",")]
    counts = sorted(int(c) for c in (args.subscribers or ("1,2" if args.quick else "1,10")).split(","))
    databases = databases_of(args.database)
    search = not args.no_max and not args.quick
    steps = len(databases) * len(counts) * (len(rates) * runs + (6 if search else 0))
    progress = Progress(steps, "latency")
    rows: list[dict[str, Any]] = []
    env = metrics_env(args.metrics) | encryption_env(args.encryption)
    for database in databases:
        nodes = args.nodes if database == "postgresql" else 1
        async with (
            medstream_nodes_on(database, args.pg_url, nodes, env) as servers,
            keys_directory() as directory,
        ):
            identity = await make_professional(servers[0].url)
            patient, keys = await set_up(servers[0].url, identity, args.encryption, directory)
            bench = Bench(args, servers, identity, patient, keys)
            try:
                await bench.start_writers()
                for count in counts:
                    progress.note(f"{database}: starting {count} subscriber(s)")
                    await bench.grow_subscribers(count)
                    await bench.measure(100, 0.3 if args.quick else 1.0)  # warm-up: connections, caches; not reported
                    fixed = []
                    for rate in rates:
                        measured = []
                        for _ in range(runs):
                            progress.note(f"{database}, {count} subscriber(s): {rate:,.0f} writes/s")
                            measured.append(await bench.measure(rate, duration))
                            progress.advance()
                        fixed.append(combine(database, count, "steady", measured))
                    rows += fixed
                    if search:
                        rows.append(await find_max(bench, database, count, fixed, duration, progress))
            finally:
                bench.stop()
    progress.close()
    return report(rows, runs, duration, args)


async def find_max(
    bench: Bench, database: str, count: int, fixed: list[dict[str, Any]], duration: float, progress: Progress
) -> dict[str, Any]:
    """Step up by x1.25 from the highest sustainable fixed rate until a step is not sustainable twice in a row
    (or, when no fixed rate was, down from the lowest until one is); the last sustainable step is the answer."""
    passing = [r for r in fixed if r["sustainable"]]
    best: dict[str, Any] | None = max(passing, key=lambda r: r["rate"]) if passing else None
    upwards = best is not None
    rate = best["rate"] * 1.25 if best is not None else min(r["rate"] for r in fixed) / 1.25
    for _ in range(12):
        if not 10 <= rate <= bench.args.max_rate:
            break
        progress.note(f"{database}, {count} subscriber(s): trying {rate:,.0f} writes/s")
        measured = await bench.measure(rate, duration)
        if upwards and not measured["sustainable"]:  # one stall of a noisy machine must not end the search
            measured = await bench.measure(rate, duration)
        progress.advance(0.5)
        if measured["sustainable"]:
            best = combine(database, count, "highest sustainable", [measured])
            if not upwards:
                break
            rate *= 1.25
        elif upwards:
            break
        else:
            rate /= 1.25
    if best is None:
        return {"database": database, "subscribers": count, "kind": "highest sustainable", "rate": None}
    return {**best, "kind": "highest sustainable"}


def report(rows: list[dict[str, Any]], runs: int, duration: float, args: argparse.Namespace) -> Report:
    table = Table(
        f"Latency: REST write to SDK callback (metrics {args.metrics}, encryption {args.encryption}; each subscriber "
        f"matches every write; median of {runs} run(s) of {duration:g} s; highest sustainable: one run per step, a "
        "failing one twice)",
        ["database", "subs", "rate", "writes/s", "achieved/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "lost",
         "REST p50 ms", "server send p50/p99 ms", "server CPU us/write", "subscriber CPU us/event", "sustainable"],
        [
            [r["database"], r["subscribers"], r["kind"], r.get("rate"), r.get("achieved_rate"), r.get("p50_ms"),
             r.get("p95_ms"), r.get("p99_ms"), r.get("max_ms"), r.get("lost"), r.get("rest_p50_ms"),
             _pair(r.get("server_send_p50_ms"), r.get("server_send_p99_ms")), r.get("server_cpu_us_per_write"),
             r.get("subscriber_cpu_us_per_event"), r.get("sustainable")]
            for r in rows
        ],
        [f"sustainable: achieved >= 95% of the rate, nothing lost, p99 <= {args.max_p99_ms:g} ms, in most runs",
         "subscriber CPU: each SDK subscriber process's CPU time over the events it received",
         "server send: from each write (stamped by the server before its commit) to its first delivery on a node, "
         "from the servers' metrics (medstream_events_commit_to_send_seconds), interpolated within its buckets "
         "(0.5, 1, 2.5, 5, 10, 25, 50 ms...); empty with --metrics off"]
        + (["encryption on: the server requires it; samples written encrypted (made ahead, encryptedSelf sealed at "
            "send time), each event decrypted by the SDK before its callback"] if args.encryption == "on" else [])
        + ([f"PostgreSQL: {args.nodes} nodes, writers on the first, subscribers on the others"]
           if args.nodes > 1 else []),
    )  # fmt: skip
    targets = []
    for database, p50_bound, p99_bound in (("sqlite", 5.0, 25.0), ("postgresql", None, 50.0)):
        row = next(
            (r for r in rows if r["database"] == database and r["subscribers"] == 10 and r["kind"] == "steady"
             and r.get("rate") == 1000),
            None,
        )  # fmt: skip
        if row is None:
            continue
        name = f"{database}, 1,000 writes/s, 10 subscribers"
        if p50_bound is not None:
            met = row["p50_ms"] is not None and row["p50_ms"] < p50_bound
            targets.append(Target(f"{name}: p50", f"< {p50_bound:g} ms", row["p50_ms"], "ms", met))
        met = row["p99_ms"] is not None and row["p99_ms"] < p99_bound
        targets.append(Target(f"{name}: p99", f"< {p99_bound:g} ms", row["p99_ms"], "ms", met))
        if row["achieved_rate"] is not None and row["achieved_rate"] < 950:
            targets.append(Target(f"{name}: rate achieved", ">= 950 /s", row["achieved_rate"], "/s", False))
    results = {"runs": runs, "duration": duration, "nodes": args.nodes, "encryption": args.encryption, "rows": rows}
    return Report(results, [table], targets)


def main(argv: list[str] | None = None) -> int:
    return cli(NAME, parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
