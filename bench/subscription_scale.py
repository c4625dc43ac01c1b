"""Subscription scale: the server's dispatch cost per event with 100, 10,000 and 100,000 subscriptions whose
filters do not match it (constrained on an indexed key: label, id or patient), and with 1,000 that all match.

    .venv/bin/python -m bench.subscription_scale [--subscriptions 100,10000,100000] [--kinds label,id,patient]

Subscriptions are made through real sockets (raw websocket clients in --client-processes processes, up to
--per-socket subscriptions on each socket: the server's limit is 1,000). For each kind, one server; the
subscriptions are added level by level, and at each level a writer process creates --events data samples
through REST (batches of --batch). The cost per event is measured by the server itself: the increase of
/health `events.dispatchNanos` (time spent matching events to subscriptions and queueing frames) divided by
the increase of `events.dispatched`. Medians of --runs runs per level.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

from bench import clients
from bench.report import Progress, Report, Table, Target, base_parser, cli, judged, median
from bench.servers import ServerProcess, create_patient, make_professional, medstream_on, wait_dispatched
from bench.workers import Worker, gather_from, split, workers_stopped
from medstream.server.settings import Settings

NAME = "subscription_scale"
_SEND_QUEUE = Settings().ws_send_queue  # the server's default, which the benchmark's server runs with


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--subscriptions", default=None, help="non-matching levels (default 100,10000,100000)")
    p.add_argument("--kinds", default="label,id,patient", help="indexed constraint of the non-matching filters")
    p.add_argument("--matching", type=int, default=None, help="subscriptions that all match (default 1,000)")
    p.add_argument("--events", type=int, default=None, help="events per measurement (default 1,000)")
    p.add_argument("--batch", type=int, default=100, help="samples per REST batch (default 100)")
    p.add_argument("--per-socket", type=int, default=1000, help="subscriptions per socket (server limit 1,000)")
    p.add_argument("--client-processes", type=int, default=2, help="processes holding the sockets (default 2)")
    return p


class Setup:
    """One server, its socket holders and a writer."""

    def __init__(self, server: ServerProcess, holders: list[Worker], writer: Worker, label: str) -> None:
        self.server = server
        self.holders = holders
        self.writer = writer
        self.label = label
        self.subscriptions = 0
        self.next_holder = 0

    async def add(self, kind: str, count: int, per_socket: int) -> float:
        """Add `count` subscriptions of `kind`, `per_socket` to a socket; returns the seconds it took."""
        sockets = split(count, max(1, -(-count // per_socket)))
        plans: dict[int, list[int]] = {}
        for size in sockets:
            plans.setdefault(self.next_holder, []).append(size)
            self.next_holder = (self.next_holder + 1) % len(self.holders)
        seconds = 0.0
        busy = []
        for holder_index, sizes in plans.items():
            # Each holder gets sockets of equal size where it can; one `connect` per distinct size.
            for size in sorted(set(sizes)):
                n = sizes.count(size)
                self.holders[holder_index].send(
                    "connect", sockets=n, per_socket=size, filter_kind=kind, first_index=self.subscriptions
                )
                self.subscriptions += n * size
                busy.append(self.holders[holder_index])
        for holder in busy:
            done = await holder.arecv("connected", within=1800)
            if done["failures"] or done["refused"]:
                raise RuntimeError(f"subscribing failed: {done['first_failure'] or done['first_refusal']}")
            seconds = max(seconds, done["seconds"])
        return seconds

    async def measure(self, events: int, batch: int, matching_sockets: int = 0) -> dict[str, Any]:
        if matching_sockets:
            for holder in self.holders:
                holder.send("arm", expected=events)
            await gather_from(self.holders, "armed")
        before = (await wait_dispatched(self.server.url))["events"]
        batch = max(1, min(batch, events))
        count = max(1, events // batch)
        if matching_sockets:
            write_errors = await self._write_in_step(batch, count)
        else:
            self.writer.send("write", run=uuid.uuid4().hex[:8], batch=batch, count=count)
            write_errors = (await self.writer.arecv("written", within=600))["errors"]
        after = (await wait_dispatched(self.server.url, within=300))["events"]
        delivered = None
        if matching_sockets:
            for holder in self.holders:
                holder.send("wait", within=120)
            tallies = await gather_from(self.holders, "tally", within=300)
            delivered = sum(t["events"] for t in tallies)
            closed = sum(t["closed_count"] for t in tallies)
            if closed:  # the figure would be the cost of dispatching to closed subscriptions: none
                reasons = sorted({r for t in tallies for r in t["closed"]})
                raise RuntimeError(f"{closed} matching socket(s) closed during the run: {reasons}")
        dispatched = after["dispatched"] - before["dispatched"]
        nanos = after["dispatchNanos"] - before["dispatchNanos"]
        return {
            "dispatched": dispatched,
            "microseconds_per_event": nanos / dispatched / 1000 if dispatched else None,
            "subscriptions_on_server": after["subscriptions"],
            "delivered": delivered,
            "write_errors": write_errors,
        }

    async def _write_in_step(self, batch: int, count: int) -> int:
        """One batch at a time, the next only once every holder has read the last: a holder process that falls
        behind a burst would have its sockets closed as too slow (4429), which on a slow machine failed the row.
        Dispatch cost is the server's own clock (`dispatchNanos`), so waiting between batches does not move it."""
        errors = 0
        for done in range(1, count + 1):
            self.writer.send("write", run=uuid.uuid4().hex[:8], batch=batch, count=1)
            errors += (await self.writer.arecv("written", within=600))["errors"]
            for holder in self.holders:
                holder.send("wait", within=120, upto=done * batch)
            await gather_from(self.holders, "tally", within=300)
        return errors


async def with_setup(args: argparse.Namespace, body: Any) -> Any:
    async with medstream_on(args.database, args.pg_url) as server:
        identity = await make_professional(server.url)
        patient = await create_patient(server.url, identity.token)
        label = f"SCALE-{uuid.uuid4().hex[:6]}"
        holders = [
            Worker(clients.socket_holder, name=f"holder-{i}", ws_url=server.ws_base + "/ws/v1/events",
                   token=identity.token, hcp_id=identity.hcp_id, label_code=label, compression=False)
            for i in range(max(1, args.client_processes))
        ]  # fmt: skip
        writer = Worker(clients.rest_writer, name="writer", url=server.url, token=identity.token,
                        patient_id=patient, label_code=label)  # fmt: skip
        with workers_stopped([*holders, writer]):
            await gather_from([*holders, writer], "ready")
            return await body(Setup(server, holders, writer, label))


def _row(
    setup: Setup,
    kind: str,
    subscriptions: int,
    measured: list[dict[str, Any]],
    added: int,
    seconds: float,
    *,
    matching: bool = False,
) -> dict[str, Any]:
    """One level's result: the median dispatch cost of its runs, and what it took to get there."""
    return {
        "kind": kind,
        "matching": matching,
        "subscriptions": subscriptions,
        "subscriptions_on_server": measured[-1]["subscriptions_on_server"],
        "microseconds_per_event": median(m["microseconds_per_event"] for m in measured),
        "runs": [m["microseconds_per_event"] for m in measured],
        "added": added,
        "subscribe_seconds": seconds,
        "server_rss_mib": setup.server.rss_kib() / 1024,
        "write_errors": sum(m["write_errors"] for m in measured),
    }


async def run(args: argparse.Namespace) -> Report:
    if args.database == "both":
        args.database = "sqlite"
    levels = [int(x) for x in (args.subscriptions or ("10,100" if args.quick else "100,10000,100000")).split(",")]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    matching = args.matching if args.matching is not None else (10 if args.quick else 1000)
    events = args.events or (50 if args.quick else 1000)
    runs = args.runs or (1 if args.quick else 3)
    progress = Progress(len(kinds) * (len(levels) + 1) * runs + (runs if matching else 0), "subscription_scale")
    rows: list[dict[str, Any]] = []

    for kind in kinds:

        async def levels_of(setup: Setup, kind: str = kind) -> None:
            for level in [0, *levels]:
                seconds, added = 0.0, max(0, level - setup.subscriptions)
                if added:
                    progress.note(f"{kind}: subscribing up to {level:,}")
                    seconds = await setup.add(kind, added, args.per_socket)
                measured = []
                for _ in range(runs):
                    progress.note(f"{kind}: {events:,} events with {level:,} subscriptions")
                    measured.append(await setup.measure(events, args.batch))
                    progress.advance()
                rows.append(_row(setup, kind, level, measured, added, seconds))

        await with_setup(args, levels_of)

    if matching:

        async def all_match(setup: Setup) -> None:
            per_socket = min(args.per_socket, 100)
            progress.note(f"match: subscribing {matching:,}")
            seconds = await setup.add("match", matching, per_socket)
            sockets = -(-matching // per_socket)
            # A write's events reach a socket in one turn of the server's loop, once per matching subscription:
            # a batch of 100 samples is 10,000 messages for a socket with 100 subscriptions, the whole send
            # queue (MEDSTREAM_WS_SEND_QUEUE); what the socket's buffers cannot take at once then closes it as
            # too slow (4429). This row measures dispatch, not bursts: batches queue at most a quarter of it, and
            # go one at a time (`_write_in_step`).
            batch = max(1, min(args.batch, _SEND_QUEUE // (4 * per_socket)))
            measured = []
            for _ in range(runs):
                progress.note(f"match: {events:,} events with {matching:,} matching subscriptions")
                measured.append(await setup.measure(events, batch, matching_sockets=sockets))
                progress.advance()
            row = _row(setup, "all match (label)", matching, measured, matching, seconds, matching=True)
            row["delivered_per_event"] = median((m["delivered"] or 0) / max(1, m["dispatched"]) for m in measured)
            rows.append(row)

        await with_setup(args, all_match)
    progress.close()

    table = Table(
        f"Subscription scale: dispatch cost per event ({args.database}, {events:,} events per run, "
        f"median of {runs} run(s))",
        [
            "filters",
            "subscriptions",
            "dispatch us/event",
            f"vs {min(levels):,}",
            "server RSS MiB",
            "subscribe s",
            "subscribed/s",
        ],
    )
    targets: list[Target] = []
    for kind in [*kinds, "all match (label)"]:
        kind_rows = [r for r in rows if r["kind"] == kind]
        reference = next((r for r in kind_rows if r["subscriptions"] == min(levels)), None)
        for r in kind_rows:
            ratio = None
            comparable = reference and not r["matching"] and r["subscriptions"] >= reference["subscriptions"]
            if comparable and reference["microseconds_per_event"] and r["microseconds_per_event"]:
                ratio = r["microseconds_per_event"] / reference["microseconds_per_event"]
            r["ratio_to_smallest"] = ratio
            table.rows.append(
                [
                    kind if not r["matching"] else "label, all match",
                    r["subscriptions"],
                    r["microseconds_per_event"],
                    ratio,
                    r["server_rss_mib"],
                    r["subscribe_seconds"] or None,
                    r["added"] / r["subscribe_seconds"] if r["subscribe_seconds"] else None,
                ]
            )
        top = max((r for r in kind_rows if not r["matching"]), key=lambda r: r["subscriptions"], default=None)
        if top is not None and reference is not None and top is not reference:
            targets.append(
                Target(
                    f"{kind}: cost with {top['subscriptions']:,} vs {reference['subscriptions']:,} non-matching",
                    "< 2x, 100 to 100,000",
                    top["ratio_to_smallest"],
                    "x",
                    judged(
                        top["ratio_to_smallest"] is not None and top["ratio_to_smallest"] < 2,
                        top["subscriptions"] >= 100_000 and reference["subscriptions"] <= 100,
                    ),
                )
            )
    table.notes.append("dispatch us/event: delta /health dispatchNanos / delta dispatched, on the server")
    table.notes.append("'subscribe s': time to add the subscriptions of that level through the sockets")
    return Report({"events": events, "runs": runs, "rows": rows}, [table], targets)


def main(argv: list[str] | None = None) -> int:
    return cli(NAME, parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
