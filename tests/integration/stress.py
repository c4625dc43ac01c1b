"""The scale-out stress harness: concurrent writers on every node and
straight into PostgreSQL, a reader on every node, and an audit of what each reader received against the
outbox once everything is quiet.

- `rest_writer`: batches of 1-5 creates, updates and deletes through REST to random nodes, and now and then a
  batch the server must refuse whole with 409 (new entities, then one at a rev that is not the current one).
- `slow_writer`, `late_writer`, `killed_transaction`: direct asyncpg transactions that insert their event the
  way the store does, early, then sleep inside the transaction before committing or rolling back, wait for the
  readers to move on before committing, or get terminated.
- `audit`: per reader, events out of step, duplicates, missing, not in the log, and lag; for the log, density
  and commit order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import httpx

from medstream.model import ENTITY_KINDS, MedicalDevice
from medstream.store.postgresql.wakeups import CHANNEL
from medstream.store.schema import ENTITY_TABLES
from tests.integration.cluster import Cluster, EventReader, Received, open_readers

# Kinds the REST writers write: any admin may create them without a link to another entity.
WRITTEN_KINDS = {
    "patients": {"firstName": "Ada", "lastName": "Lovelace"},
    "healthcare-elements": {"description": "Asthma"},
    "healthcare-professionals": {"firstName": "Gregory", "lastName": "House"},
    "medical-devices": {"name": "thermometer"},
    "notifications": {"type": "OTHER", "status": "pending"},
}


# -- writers -----------------------------------------------------------------------------------------------


@dataclass
class WriteLog:
    """What the writers did, and what must have left no trace."""

    events: int = 0  # events of the writes that committed (as the writers know it)
    rest_batches: int = 0  # REST writes that succeeded
    transactions: int = 0  # direct transactions that committed after a short sleep
    late_commits: int = 0  # direct transactions that committed once the readers had moved on
    refused: int = 0  # REST batches answered 409
    rolled_back: int = 0  # direct transactions rolled back after inserting their event
    killed: int = 0  # direct transactions terminated after inserting their event
    unexpected: list[str] = field(default_factory=list)  # answers no writer expected
    # (entity type, id) written only by a write that did not commit: neither the entity nor an event may exist
    vanished: list[tuple[str, str]] = field(default_factory=list)
    # REST writes that succeeded: when the request left, when its answer came back, the (id, rev) it wrote
    answered: list[tuple[float, float, list[tuple[str, str]]]] = field(default_factory=list)


async def rest_writer(urls: Sequence[str], token: str, log: WriteLog, stop: asyncio.Event, rng: random.Random) -> None:
    """Until `stop`: batches of 1-5 through REST to a random node each time; mostly creates, some updates and
    deletes of its own entities, and every 20th a batch of new entities ending with one of its own entities
    at a rev that is not the current one, which the server must refuse whole with 409."""
    mine: dict[str, dict[str, dict[str, Any]]] = {collection: {} for collection in WRITTEN_KINDS}
    kind_names = {kind.collection: kind.name for kind in ENTITY_KINDS}
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        for step in itertools.count():
            if stop.is_set():
                return
            written = [collection for collection, own in mine.items() if own]
            if step % 20 == 3 and written:
                collection = rng.choice(written)
                fresh = [_new_entity(collection) for _ in range(rng.randint(0, 4))]
                stale = {**rng.choice(list(mine[collection].values())), "rev": f"1-{uuid.uuid4().hex}"}
                response = await client.post(f"{rng.choice(urls)}/rest/v1/{collection}/batch", json=[*fresh, stale])
                if response.status_code != 409:
                    log.unexpected.append(f"stale batch: {response.status_code} {response.text[:200]}")
                log.refused += 1
                log.vanished += [(kind_names[collection], entity["id"]) for entity in fresh]
                continue
            collection = rng.choice(list(WRITTEN_KINDS))
            own = mine[collection]
            base = f"{rng.choice(urls)}/rest/v1/{collection}"
            roll = rng.random()
            sent = time.monotonic()
            if roll < 0.05 and own:
                response = await client.delete(f"{base}/{own.pop(rng.choice(list(own)))['id']}")
                stored = [response.json()] if response.status_code == 200 else []
            elif roll < 0.25 and own:
                chosen = rng.sample(list(own.values()), min(len(own), rng.randint(1, 5)))
                response = await client.post(f"{base}/batch", json=chosen)
                stored = response.json() if response.status_code == 200 else []
            else:
                fresh = [_new_entity(collection) for _ in range(rng.randint(1, 5))]
                response = await client.post(f"{base}/batch", json=fresh)
                stored = response.json() if response.status_code == 200 else []
            if response.status_code != 200:
                log.unexpected.append(f"{response.request.method} {collection}: {response.status_code} {response.text}")
                continue
            log.rest_batches += 1
            log.events += len(stored)
            log.answered.append((sent, time.monotonic(), [(entity["id"], entity["rev"]) for entity in stored]))
            own.update({entity["id"]: entity for entity in stored if entity.get("deletionDate") is None})


def _new_entity(collection: str) -> dict[str, Any]:
    return {**WRITTEN_KINDS[collection], "id": str(uuid.uuid4())}


_INSERT_DEVICE = "INSERT INTO medical_devices (id, rev, document, created, modified) VALUES ($1, $2, $3, $4, $4)"
_INSERT_EVENT = (
    "INSERT INTO outbox (entity_type, entity_id, rev, event_type, document, readers, created)"
    " VALUES ('MedicalDevice', $1, $2, 'CREATE', $3, '[]', $4) RETURNING seq"
)


async def _notify_nodes(conn: asyncpg.Connection) -> None:
    """After a commit with an event, tell the nodes, as the store does (store/postgresql/wakeups.py): without it
    they find the event at their next safety-net poll only."""
    await conn.execute("SELECT pg_notify($1, '')", CHANNEL)


async def _insert_device_and_event(conn: asyncpg.Connection) -> tuple[str, int | None]:
    """Insert a medical device and its CREATE event as the store does (the event's seq left to the database),
    inside the caller's transaction; returns the device's id and the seq its event got at insert, if any."""
    now = time.time_ns() // 1_000_000
    device = MedicalDevice(id=str(uuid.uuid4()), rev=f"1-{uuid.uuid4().hex}", created=now, modified=now, name="slow")
    document = device.to_json().decode()
    await conn.execute(_INSERT_DEVICE, device.id, device.rev, document, now)
    seq: int | None = await conn.fetchval(_INSERT_EVENT, device.id, device.rev, document, now)
    return str(device.id), seq


async def slow_writer(dsn: str, log: WriteLog, stop: asyncio.Event, rng: random.Random) -> None:
    """Until `stop`: transactions that insert their event early, sleep 0-10 ms inside the transaction
    (pg_sleep), then commit (every 10th rolls back instead): commits land in another order than the inserts."""
    conn = await asyncpg.connect(dsn)
    try:
        for step in itertools.count():
            if stop.is_set():
                return
            transaction = conn.transaction()
            await transaction.start()
            device_id, _ = await _insert_device_and_event(conn)
            await conn.execute("SELECT pg_sleep($1)", rng.uniform(0, 0.01))
            if step % 10 == 9:
                await transaction.rollback()
                log.rolled_back += 1
                log.vanished.append(("MedicalDevice", device_id))
            else:
                await transaction.commit()
                await _notify_nodes(conn)
                log.transactions += 1
                log.events += 1
    finally:
        await conn.close()


async def late_writer(dsn: str, log: WriteLog, readers: Sequence[EventReader], stop: asyncio.Event) -> None:
    """Until `stop`: transactions that insert their event, then commit only once every reader has read past
    the position the event got at insert (a sequence gives one then; commit-time numbering does not) or, with
    none, 20 events further (at most 2 s): each commit lands after the readers have moved on."""
    conn = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            marks = [reader.last_seq for reader in readers]
            async with conn.transaction():
                _, seq = await _insert_device_and_event(conn)
                wanted = [seq if seq is not None else mark + 20 for mark in marks]
                deadline = time.monotonic() + 2
                while not stop.is_set() and time.monotonic() < deadline:
                    if all(reader.last_seq > want for reader, want in zip(readers, wanted, strict=True)):
                        break
                    await asyncio.sleep(0.01)
            await _notify_nodes(conn)
            log.late_commits += 1
            log.events += 1
    finally:
        await conn.close()


async def killed_transaction(dsn: str, log: WriteLog) -> None:
    """A transaction that inserts its event as the store does, then is terminated (pg_terminate_backend from
    another connection) before it commits."""
    victim = await asyncpg.connect(dsn)
    try:
        transaction = victim.transaction()
        await transaction.start()
        device_id, _ = await _insert_device_and_event(victim)
        killer = await asyncpg.connect(dsn)
        try:
            assert await killer.fetchval("SELECT pg_terminate_backend($1, 5000)", victim.get_server_pid())
        finally:
            await killer.close()
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await transaction.commit()
            log.unexpected.append(f"killed transaction of {device_id} committed")
        log.killed += 1
        log.vanished.append(("MedicalDevice", device_id))
    finally:
        victim.terminate()


async def killer_loop(dsn: str, log: WriteLog, stop: asyncio.Event, every: float = 0.2) -> None:
    while not stop.is_set():
        await killed_transaction(dsn, log)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


# -- after quiescence --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxRow:
    seq: int | None
    entity_type: str
    entity_id: str
    rev: str
    event: str
    created: int
    # pg_xact_commit_timestamp(xmin), when track_commit_timestamp is on: the commit of the numbering round that
    # gave the row its seq (migration 0004), which comes after its writer's
    committed: datetime | None


async def outbox_rows(conn: asyncpg.Connection, *, commit_timestamps: bool) -> list[OutboxRow]:
    committed = "pg_xact_commit_timestamp(xmin)" if commit_timestamps else "NULL::timestamptz"
    rows = await conn.fetch(
        f"SELECT seq, entity_type, entity_id, rev, event_type, created, {committed} AS committed"
        " FROM outbox ORDER BY seq NULLS LAST, id"
    )
    return [OutboxRow(*row) for row in rows]


async def wait_quiescent(conn: asyncpg.Connection, readers: Sequence[EventReader], seconds: float = 20) -> int:
    """Wait until every committed event has its position and every reader's last seq is the log's
    `outbox_tail.last_seq` (at most `seconds`); returns it."""
    deadline = time.monotonic() + seconds
    while True:
        tail: int = await conn.fetchval("SELECT last_seq FROM outbox_tail WHERE id = 1")
        unnumbered: int = await conn.fetchval("SELECT count(*) FROM outbox WHERE seq IS NULL")
        quiet = unnumbered == 0 and all(reader.last_seq == tail for reader in readers)
        if quiet or time.monotonic() > deadline:
            return tail
        await asyncio.sleep(0.05)


@dataclass
class ReaderAudit:
    name: str
    received: int
    out_of_step: int  # live check: seq not exactly the previous plus one
    duplicates: int
    missing: int  # committed events after the reader's start it never received
    not_in_log: int  # received events that are not the outbox row of that seq
    lag_max_ms: float
    lag_p99_ms: float


@dataclass
class Audit:
    readers: list[ReaderAudit]
    log_size: int
    dense: bool  # outbox seqs are exactly 1..N, every row numbered
    same_order: bool  # every reader received the same sequence of events
    commit_order_inversions: int | None  # None: commit timestamps are not tracked
    causal_inversions: int  # REST writes with a position below one of a write answered before they were sent
    causal_pairs: int  # REST writes sent after another had been answered (what `causal_inversions` checked)
    lag_clock: str

    def report(self) -> str:
        lines = [
            f"outbox: {self.log_size} events, dense 1..N: {self.dense}; readers received the same sequence: "
            f"{self.same_order}; commit-timestamp inversions in seq order: {self.commit_order_inversions}; REST writes"
            f" numbered below one answered before they were sent: {self.causal_inversions} of {self.causal_pairs}"
        ]
        lines += [
            f"reader {r.name}: received {r.received}, out of step {r.out_of_step}, duplicates {r.duplicates}, "
            f"missing {r.missing}, not in log {r.not_in_log}, lag ({self.lag_clock} to receive) "
            f"p99 {r.lag_p99_ms:.1f} ms, max {r.lag_max_ms:.1f} ms"
            for r in self.readers
        ]
        return "\n".join(lines)


def audit(readers: Sequence[EventReader], rows: Sequence[OutboxRow], writes: WriteLog) -> Audit:
    numbered = [row for row in rows if row.seq is not None]
    by_seq = {row.seq: row for row in numbered}
    has_commit_times = bool(numbered) and all(row.committed is not None for row in numbered)
    reader_audits = []
    for reader in readers:
        seqs = [event.seq for event in reader.events]
        expected = {seq for seq in by_seq if seq > reader.start}
        lags = sorted(_lag_ms(event, by_seq.get(event.seq), has_commit_times) for event in reader.events)
        reader_audits.append(
            ReaderAudit(
                name=reader.name,
                received=len(seqs),
                out_of_step=reader.out_of_step,
                duplicates=sum(count - 1 for count in Counter(seqs).values()),
                missing=len(expected - set(seqs)),
                not_in_log=sum(1 for event in reader.events if not _is_row(event, by_seq.get(event.seq))),
                lag_max_ms=lags[-1] if lags else 0.0,
                lag_p99_ms=lags[int(0.99 * (len(lags) - 1))] if lags else 0.0,
            )
        )
    committed = [row.committed for row in numbered if row.committed is not None]
    causal_inversions, causal_pairs = _causal_order(writes.answered, numbered)
    return Audit(
        readers=reader_audits,
        log_size=len(numbered),
        dense=len(numbered) == len(rows) and [row.seq for row in numbered] == list(range(1, len(numbered) + 1)),
        same_order=len({tuple((e.seq, e.entity_id, e.rev) for e in r.events) for r in readers}) <= 1,
        commit_order_inversions=sum(1 for a, b in itertools.pairwise(committed) if b < a) if has_commit_times else None,
        causal_inversions=causal_inversions,
        causal_pairs=causal_pairs,
        lag_clock="commit" if has_commit_times else "write start",
    )


def _causal_order(
    answered: Sequence[tuple[float, float, list[tuple[str, str]]]], numbered: Sequence[OutboxRow]
) -> tuple[int, int]:
    """Of the REST writes sent after some other had been answered, how many have a position below one of those
    (a write that committed before another began must be numbered first), and how many there were."""
    seq_of = {(row.entity_id, row.rev): row.seq for row in numbered}
    spans = [(sent, done, [seq_of[key] for key in keys if key in seq_of]) for sent, done, keys in answered]
    spans = [(sent, done, seqs) for sent, done, seqs in spans if seqs]
    by_answer = sorted(spans, key=lambda span: span[1])
    inversions = pairs = done_before = 0
    highest = 0  # the highest position of the writes answered so far
    for sent, _, seqs in sorted(spans, key=lambda span: span[0]):
        while done_before < len(by_answer) and by_answer[done_before][1] < sent:
            highest = max(highest, *by_answer[done_before][2])
            done_before += 1
        if done_before:
            pairs += 1
            inversions += min(seqs) < highest
    return inversions, pairs


def _is_row(event: Received, row: OutboxRow | None) -> bool:
    return row is not None and (event.entity_type, event.entity_id, event.rev, event.event) == (
        row.entity_type,
        row.entity_id,
        row.rev,
        row.event,
    )


def _lag_ms(event: Received, row: OutboxRow | None, use_commit_time: bool) -> float:
    if row is None:
        return 0.0
    if use_commit_time and row.committed is not None:
        return (event.at - row.committed.timestamp()) * 1000
    return event.at * 1000 - row.created


async def atomicity_violations(conn: asyncpg.Connection, rows: Sequence[OutboxRow]) -> list[str]:
    """Every event's entity exists at that rev or a later one, and every entity's current rev has its event."""
    problems: list[str] = []
    events = {(row.entity_type, row.entity_id, row.rev) for row in rows}
    for kind_name, table in ENTITY_TABLES.items():
        current = {r["id"]: r["rev"] for r in await conn.fetch(f"SELECT id, rev FROM {table.name}")}
        for entity_id, rev in current.items():
            if (kind_name, entity_id, rev) not in events:
                problems.append(f"{kind_name} {entity_id} rev {rev} has no event")
        for row in rows:
            if row.entity_type != kind_name:
                continue
            stored = current.get(row.entity_id)
            if not _is_same_or_later(stored, row.rev):
                problems.append(f"event {row.seq}: {kind_name} {row.entity_id} rev {row.rev}, stored {stored}")
    return problems


def _is_same_or_later(stored: str | None, rev: str) -> bool:
    """Revs are `<generation>-<random>`: each write of an entity adds one to the generation."""
    if stored is None:
        return False
    generation, wanted = int(stored.split("-", 1)[0]), int(rev.split("-", 1)[0])
    return generation > wanted or stored == rev


async def traces_of(conn: asyncpg.Connection, vanished: Sequence[tuple[str, str]]) -> list[str]:
    """What remains of writes that did not commit: their entities and events (must be nothing)."""
    found: list[str] = []
    for kind_name, entity_id in vanished:
        table = ENTITY_TABLES[kind_name].name
        if await conn.fetchval(f"SELECT count(*) FROM {table} WHERE id = $1", entity_id):
            found.append(f"{kind_name} {entity_id} exists")
        if await conn.fetchval("SELECT count(*) FROM outbox WHERE entity_id = $1", entity_id):
            found.append(f"{kind_name} {entity_id} has an event")
    return found


# -- the whole harness -------------------------------------------------------------------------------------


@dataclass
class StressRun:
    """One run of concurrent writers against a cluster with a reader on every node, after quiescence."""

    writes: WriteLog
    readers: list[EventReader]
    tail: int  # outbox_tail.last_seq once the writers stopped and the readers caught up
    audit: Audit
    atomicity: list[str]  # events without their entity revision, or entity revisions without their event
    traces: list[str]  # what remains of writes that did not commit
    seconds: float
    seed: int  # of the writers' random choices

    def report(self, title: str) -> str:
        w = self.writes
        return (
            f"\n{title} (seed {self.seed}): {self.seconds:.1f} s of writing, {w.events} events committed"
            f" ({w.events / self.seconds:.0f}/s) by {w.rest_batches} REST writes, {w.transactions} direct"
            f" transactions and {w.late_commits} late commits; {w.refused} REST batches refused with 409,"
            f" {w.rolled_back} transactions rolled back and {w.killed} killed after inserting their event;"
            f" log tail {self.tail}\n{self.audit.report()}"
        )


async def run_stress(
    cluster: Cluster,
    *,
    seconds: float,
    rest_writers: int,
    slow_writers: int,
    seed: int,
    commit_timestamps: bool,
) -> StressRun:
    """Open a reader on every node, write for `seconds` with `rest_writers` REST writers (random nodes),
    `slow_writers` direct writers that commit out of insert order, a late writer that commits once the readers
    have moved on, and a transaction killed every 0.2 s; then wait until every reader has the log's last seq,
    and audit what each received."""
    readers = await open_readers(cluster.nodes, cluster.token)
    urls = [node.url for node in cluster.nodes]
    writes, stop = WriteLog(), asyncio.Event()
    try:
        work = [rest_writer(urls, cluster.token, writes, stop, random.Random(seed + i)) for i in range(rest_writers)]
        work += [
            slow_writer(cluster.database_url, writes, stop, random.Random(seed - i - 1)) for i in range(slow_writers)
        ]
        work.append(late_writer(cluster.database_url, writes, readers, stop))
        work.append(killer_loop(cluster.database_url, writes, stop))
        tasks = [asyncio.create_task(job) for job in work]
        started = time.monotonic()
        await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_EXCEPTION)
        stop.set()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome
        elapsed = time.monotonic() - started
        conn = await asyncpg.connect(cluster.database_url)
        try:
            tail = await wait_quiescent(conn, readers)
            rows = await outbox_rows(conn, commit_timestamps=commit_timestamps)
            atomicity = await atomicity_violations(conn, rows)
            traces = await traces_of(conn, writes.vanished)
        finally:
            await conn.close()
    finally:
        await asyncio.gather(*(reader.close() for reader in readers))
    return StressRun(writes, readers, tail, audit(readers, rows, writes), atomicity, traces, elapsed, seed)
