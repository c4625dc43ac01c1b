"""PostgreSQL connections: the store's own asyncpg connections against asyncpg's pool, on the statements the
server runs in autocommit.

    .venv/bin/python -m bench.pg_pool [--statements N] [--concurrency 1,16] [--pool-size N] [--kinds ...]

The store runs a create (`store/postgresql/creates.py`) and the dispatcher's read (a numbering round and the
page after it, `store/postgresql/numbering.py`) as one statement each, in autocommit, on connections of its own
(`store/postgresql/connections.py`'s `Autocommit`). This runs the same statements, built by the store's code
on a `Database` over a fresh PostgreSQL database, through three ways of taking a connection:

- `store`: the store's `Autocommit`, as the server uses it;
- `pool, default reset`: `asyncpg.create_pool`, each statement on a connection it lends (`Pool.acquire`), with
  the reset it runs by default when a connection comes back (`Connection.reset`: a query of its own);
- `pool, no reset`: the same pool with `reset=` a coroutine that leaves the session as it is, which is all the
  store needs: its statements run in autocommit and change nothing of the session (no SET, LISTEN, cursor or
  session advisory lock).

Each row gives, at 1 and 16 concurrent callers, statements/s (statements / wall time), the client's CPU per
statement (this process's CPU time: the driver, the connection handling and the event loop, which the server
pays on its own CPU) and each statement's latency (p50, p99). The ways alternate within each run, in an order
that rotates from run to run, so that the machine's changes of speed hit them all; medians of --runs runs.
The event loop is uvloop's, as the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol, cast

import asyncpg

from bench.clients import sample_body
from bench.report import Progress, Report, Table, Target, base_parser, cli, median, percentile
from bench.servers import database_url
from medstream.access import Actor
from medstream.model import DataSample, Patient
from medstream.model.entities import KIND_BY_NAME
from medstream.model.ids import new_entity_id
from medstream.store.database import Database
from medstream.store.new_entities import Creates
from medstream.store.postgresql import numbering
from medstream.store.postgresql.backend import PostgreSQLBackend
from medstream.store.postgresql.connections import Autocommit, run_statement
from medstream.store.repository import EntityRepository
from medstream.store.revisions import now_ms, prepare_create, rows_of

NAME = "pg_pool"
STORE, POOL_DEFAULT_RESET, POOL_NO_RESET = "store", "pool, default reset", "pool, no reset"
WAYS = (STORE, POOL_DEFAULT_RESET, POOL_NO_RESET)
KINDS = {
    "create": "create: one data sample and its patient check",
    "read": "dispatcher read: numbering round and page",
    "select1": "SELECT 1: the connection handling alone",
}
ACTOR = Actor(user_id="bench-user", data_owner_id="bench-hcp")
SAMPLES = KIND_BY_NAME["DataSample"]
# The session settings the store gives its connections (store/postgresql/backend.py): the pools get the same.
SERVER_SETTINGS = {
    "idle_in_transaction_session_timeout": "60000",
    "lock_timeout": "30000",
    "application_name": "medstream",
}


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__.split("\n\n")[0], databases_default="postgresql")
    p.add_argument("--statements", type=int, default=None, help="statements per measurement (default 3000; quick 48)")
    p.add_argument("--concurrency", default="1,16", help="concurrent callers, comma-separated (default 1,16)")
    p.add_argument("--pool-size", type=int, default=10, help="connections of each way (default 10, the server's)")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"statements to run (default {','.join(KINDS)})")
    p.add_argument("--page", type=int, default=5, help="events in each dispatcher read's page (default 5)")
    return p


# -- the ways of taking a connection ---------------------------------------------------------------------


class Fetcher(Protocol):
    async def fetch(
        self, sql: str, args: Sequence[Any], failure: Callable[[Exception], BaseException | None] | None = None
    ) -> list[Any]: ...


class PoolFetcher:
    """`Autocommit.fetch` on asyncpg's pool: the statement runs on a connection the pool lends and takes back."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def fetch(
        self, sql: str, args: Sequence[Any], failure: Callable[[Exception], BaseException | None] | None = None
    ) -> list[Any]:
        async with self.pool.acquire() as conn:
            try:
                rows: list[Any] = await conn.fetch(sql, *args)
            except asyncpg.PostgresError as exc:
                meaning = failure(exc) if failure is not None else None
                if meaning is not None:
                    raise meaning from exc
                raise
        return rows


async def keep_session(conn: asyncpg.Connection) -> None:
    """The reset the store's statements need: none. The pool still rolls back a transaction left open."""


@contextlib.asynccontextmanager
async def ways(dsn: str, database: Database, size: int) -> AsyncIterator[dict[str, Fetcher]]:
    """The store's connections and the two pools, each of `size` connections."""
    backend = database.backend
    assert isinstance(backend, PostgreSQLBackend)
    common: dict[str, Any] = {"min_size": size, "max_size": size, "server_settings": SERVER_SETTINGS}
    default_reset = await asyncpg.create_pool(dsn, **common)
    no_reset = await asyncpg.create_pool(dsn, reset=keep_session, **common)
    try:
        yield {
            STORE: backend.connections,
            POOL_DEFAULT_RESET: PoolFetcher(default_reset),
            POOL_NO_RESET: PoolFetcher(no_reset),
        }
    finally:
        await asyncio.gather(default_reset.close(), no_reset.close())


# -- the statements --------------------------------------------------------------------------------------

Call = Callable[[Fetcher, Any], Awaitable[object]]


async def create_call(way: Fetcher, statement: Any) -> object:
    return await run_statement(cast(Autocommit, way), statement)  # it calls only `fetch`


async def select1_call(way: Fetcher, _item: Any) -> object:
    return await way.fetch("SELECT 1", ())


class Statements:
    """What each kind runs, and its arguments, made before a measurement so that only running them is timed."""

    def __init__(self, database: Database, patient_id: str, page: int) -> None:
        self.database = database
        self.patient_id = patient_id
        self.page = page

    def create_statements(self, count: int) -> list[Any]:
        """`count` creates of one data sample each, as the server's REST create makes them."""
        dialect = self.database.sync_engine.dialect
        statements = []
        for _ in range(count):
            sample = DataSample.model_validate({**sample_body("POOL", "bench"), "patientId": self.patient_id})
            rows = rows_of(SAMPLES, prepare_create(SAMPLES, new_entity_id(), sample, ACTOR, now_ms(), None))
            statements.append(Creates.pg_statement([Creates(self.database, SAMPLES, ACTOR, [rows])], dialect))
        return statements

    async def read_after(self) -> int:
        """Number every event still without a position; the position the dispatcher's reads start after."""
        backend = self.database.backend
        assert isinstance(backend, PostgreSQLBackend)
        await numbering.number_committed(backend.connections)
        head = await self.database.run_read(numbering.head)
        return max(0, head.last_seq - self.page)

    async def items(self, kind: str, count: int) -> tuple[Call, list[Any]]:
        if kind == "create":
            return create_call, self.create_statements(count)
        if kind == "read":
            after = await self.read_after()

            async def read(way: Fetcher, _item: Any) -> object:
                return await numbering.number_and_page(cast(Autocommit, way), after, 1000)

            return read, [None] * count
        return select1_call, [None] * count


async def measure(way: Fetcher, call: Call, items: Sequence[Any], concurrency: int) -> dict[str, float | None]:
    """Run `items` through `way` from `concurrency` callers, each taking the next until none is left."""
    latencies: list[float] = []
    pending = iter(items)

    async def caller() -> None:
        for item in pending:
            started = time.perf_counter()
            await call(way, item)
            latencies.append((time.perf_counter() - started) * 1000)

    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "statements_per_second": len(items) / wall,
        "client_cpu_us": cpu / len(items) * 1e6,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
    }


# -- the run ---------------------------------------------------------------------------------------------


async def prepared_database(url: str, size: int) -> tuple[Database, str]:
    """The store on `url`, migrated, with a patient that the actor may link data samples to."""
    database = Database(url, pool_size=size)
    await database.migrate()
    (patient,) = await EntityRepository(database).create_or_modify(
        KIND_BY_NAME["Patient"], [Patient(first_name="Bench", last_name="Pool")], ACTOR
    )
    assert patient.id is not None
    return database, str(patient.id)


async def run(args: argparse.Namespace) -> Report:
    if args.database != "postgresql":
        raise SystemExit("bench.pg_pool measures PostgreSQL connections only: --database postgresql")
    count = args.statements or (48 if args.quick else 3000)
    runs = args.runs or (1 if args.quick else 3)
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if unknown := [k for k in kinds if k not in KINDS]:
        raise SystemExit(f"unknown kinds {unknown}; known: {', '.join(KINDS)}")
    progress = Progress(runs * len(kinds) * len(levels) * len(WAYS), NAME)
    samples: dict[tuple[str, int, str], list[dict[str, float | None]]] = {}
    async with database_url("postgresql", args.pg_url) as dsn:
        database, patient_id = await prepared_database(dsn, args.pool_size)
        try:
            async with ways(dsn, database, args.pool_size) as by_name:
                statements = Statements(database, patient_id, args.page)
                await warm_up(by_name, statements, kinds, max(levels), args.pool_size)
                for run_index in range(runs):
                    order = WAYS[run_index % len(WAYS) :] + WAYS[: run_index % len(WAYS)]
                    for kind in kinds:
                        for level in levels:
                            for way in order:
                                progress.note(f"run {run_index + 1}: {kind}, {level} callers, {way}")
                                call, items = await statements.items(kind, count)
                                measured = await measure(by_name[way], call, items, level)
                                samples.setdefault((kind, level, way), []).append(measured)
                                progress.advance()
        finally:
            await database.close()
    progress.close()
    return report(samples, kinds, levels, count, runs, args.pool_size)


async def warm_up(by_name: dict[str, Fetcher], statements: Statements, kinds: list[str], level: int, size: int) -> None:
    """Every connection of every way open, and each statement prepared on it, before anything is timed."""
    for kind in kinds:
        for way in by_name.values():
            call, items = await statements.items(kind, 4 * max(level, size))
            await measure(way, call, items, max(level, size))


def report(
    samples: dict[tuple[str, int, str], list[dict[str, float | None]]],
    kinds: list[str],
    levels: list[int],
    count: int,
    runs: int,
    size: int,
) -> Report:
    rows: list[dict[str, Any]] = []
    for kind in kinds:
        for level in levels:
            for way in WAYS:
                measured = samples[(kind, level, way)]
                row: dict[str, Any] = {"kind": kind, "concurrency": level, "way": way}
                for key in ("statements_per_second", "client_cpu_us", "p50_ms", "p99_ms"):
                    row[key] = median(m[key] for m in measured)
                row["runs"] = measured
                rows.append(row)
    table = Table(
        f"PostgreSQL connections: the store's own against asyncpg's pool ({size} connections each; median of {runs}"
        f" run(s) of {count:,} statements)",
        ["statement", "callers", "connections", "statements/s", "client CPU us/statement", "p50 ms", "p99 ms"],
        [
            [KINDS[r["kind"]], r["concurrency"], r["way"], r["statements_per_second"], r["client_cpu_us"],
             r["p50_ms"], r["p99_ms"]]
            for r in rows
        ],
    )  # fmt: skip
    targets = pool_targets(rows)
    switch = bool(targets) and all(t.met for t in targets)
    table.notes.append(
        "decision: asyncpg's pool (no reset) is "
        + ("no slower than the store's connections on the server's statements: switch to it" if switch else
           "slower than the store's connections on the server's statements in at least one row: keep them")
    )  # fmt: skip
    return Report({"rows": rows, "pool_no_slower": switch}, [table], targets)


def pool_targets(rows: list[dict[str, Any]]) -> list[Target]:
    """The decision rule, per statement the server runs and concurrency: the pool without a reset against the
    store, statements/s at least as many and client CPU per statement at most as much."""
    by_key = {(r["kind"], r["concurrency"], r["way"]): r for r in rows}
    targets = []
    for (kind, level, way), pool in by_key.items():
        if way != POOL_NO_RESET or kind == "select1":
            continue
        store = by_key[(kind, level, STORE)]
        rate = pool["statements_per_second"] / store["statements_per_second"]
        cpu = pool["client_cpu_us"] / store["client_cpu_us"]
        name = f"{kind}, {level} caller{'' if level == 1 else 's'}: pool (no reset) / store"
        targets.append(Target(f"{name}, statements/s", ">= 1.00x", round(rate, 3), "x", rate >= 1))
        targets.append(Target(f"{name}, client CPU/statement", "<= 1.00x", round(cpu, 3), "x", cpu <= 1))
    return targets


def main(argv: list[str] | None = None) -> int:
    with contextlib.suppress(ImportError):
        import uvloop  # the server's event loop (medstream serve)

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return cli(NAME, parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
