"""SQLite admits one writer at a time. One writer thread runs this process's write transactions, and commits
the writes that queued while it was busy together (group commit), each in its own savepoint."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, func, select, text

from medstream.errors import UnavailableError
from medstream.store.database import Database
from medstream.store.schema import server_keys
from medstream.store.sqlite.backend import SQLiteBackend
from medstream.store.sqlite.driver import insert_rows
from medstream.store.transactions import publish


@pytest.fixture
async def database(tmp_path: Path) -> Any:
    database = Database(f"sqlite:///{tmp_path / 'writers.db'}")
    await database.migrate()

    @event.listens_for(database.sync_engine, "connect")
    def _no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
        # Without waiting in the busy handler, a writer that reached SQLite while another held the write lock
        # would fail at once with "database is locked".
        dbapi_connection.execute("PRAGMA busy_timeout=0")

    database.sync_engine.dispose()  # connections made from now on have no busy wait
    try:
        yield database
    finally:
        await database.close()


def _sqlite(database: Database) -> SQLiteBackend:
    assert isinstance(database.backend, SQLiteBackend)
    return database.backend


def _insert(name: str) -> Any:
    def work(conn: Connection) -> str:
        conn.execute(server_keys.insert().values(name=name, value="v"))
        return name

    return work


def _names(conn: Connection) -> set[str]:
    return {
        str(name) for name in conn.execute(select(server_keys.c.name).where(server_keys.c.name.like("k-%"))).scalars()
    }


class _Gate:
    """A first write that holds the writer thread until released, so that later writes queue behind it."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.release = threading.Event()

    def __call__(self, conn: Connection) -> str:
        self.inside.set()
        assert self.release.wait(10)
        conn.execute(server_keys.insert().values(name="k-gate", value="v"))
        return "k-gate"


async def _queue_behind_gate(database: Database, works: list[Any]) -> tuple[_Gate, list[asyncio.Task[Any]]]:
    gate = _Gate()
    first = asyncio.create_task(database.run_write(gate))
    await asyncio.to_thread(gate.inside.wait, 10)
    tasks = [first] + [asyncio.create_task(database.run_write(work)) for work in works]
    await asyncio.sleep(0.05)  # every write is queued now
    return gate, tasks


async def test_concurrent_writes_commit_in_groups_and_never_meet_the_busy_handler(database: Database) -> None:
    before = _sqlite(database).commit_groups
    gate, tasks = await _queue_behind_gate(database, [_insert(f"k-{i}") for i in range(20)])
    gate.release.set()
    results = await asyncio.gather(*tasks)

    assert results == ["k-gate"] + [f"k-{i}" for i in range(20)]
    assert await database.run_read(_names) == {"k-gate"} | {f"k-{i}" for i in range(20)}
    # The gate's write commits alone; the twenty that queued behind it commit together.
    assert _sqlite(database).commit_groups - before == 2


async def test_a_failing_write_leaves_the_others_of_its_group_whole(database: Database) -> None:
    def half_then_fail(conn: Connection) -> None:
        conn.execute(server_keys.insert().values(name="k-failed", value="v"))
        raise ValueError("refused after writing")

    def duplicate(conn: Connection) -> None:
        conn.execute(server_keys.insert().values(name="k-0", value="again"))  # the primary key is taken

    gate, tasks = await _queue_behind_gate(database, [_insert("k-0"), half_then_fail, duplicate, _insert("k-1")])
    gate.release.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)

    assert outcomes[:2] == ["k-gate", "k-0"] and outcomes[4] == "k-1"
    assert isinstance(outcomes[2], ValueError)
    assert "UNIQUE" in str(outcomes[3])
    assert await database.run_read(_names) == {"k-gate", "k-0", "k-1"}
    value = await database.run_read(
        lambda conn: conn.execute(select(server_keys.c.value).where(server_keys.c.name == "k-0")).scalar_one()
    )
    assert value == "v"


async def test_a_transaction_sqlite_abandons_fails_its_whole_group_and_keeps_nothing(database: Database) -> None:
    def abandon(conn: Connection) -> None:
        conn.exec_driver_sql("ROLLBACK")  # what SQLite does by itself on a full disk or an I/O error

    gate, tasks = await _queue_behind_gate(database, [_insert("k-0"), abandon, _insert("k-1")])
    gate.release.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)

    assert outcomes[0] == "k-gate"
    assert all(isinstance(outcome, Exception) for outcome in outcomes[1:]), outcomes
    assert await database.run_read(_names) == {"k-gate"}
    # The writer goes on with the next writes.
    assert await database.run_write(_insert("k-2")) == "k-2"
    assert await database.run_read(_names) == {"k-gate", "k-2"}


def _publishing(name: str, *, then: Any = None) -> Any:
    """A write that publishes its name, inserts it, then runs `then` (which may fail it)."""

    def work(conn: Connection) -> str:
        publish(conn, [name])
        conn.execute(server_keys.insert().values(name=name, value="v"))
        if then is not None:
            then(conn)
        return name

    return work


def _fail(_conn: Connection) -> None:
    raise ValueError("refused")


async def test_commit_listeners_get_what_a_group_published_once_before_its_callers_resume(
    database: Database,
) -> None:
    heard: list[tuple[str, ...]] = []
    database.on_commit(lambda published: heard.append(tuple(published)))
    works = [_publishing("k-0"), _publishing("k-1", then=_fail), _insert("k-2"), _publishing("k-3")]
    gate, tasks = await _queue_behind_gate(database, works)
    callers = []
    for task in tasks[1:]:
        task.add_done_callback(lambda _task: callers.append(tuple(heard)))
    gate.release.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)

    assert outcomes[0] == "k-gate" and isinstance(outcomes[2], ValueError)
    # One call per committed group (the gate's, then the others'), what its writes published in commit order;
    # the failed write's savepoint took what it published.
    assert heard == [(), ("k-0", "k-3")]
    assert all(seen == tuple(heard) for seen in callers), "every listener ran before the first caller resumed"
    assert await database.run_read(_names) == {"k-gate", "k-0", "k-2", "k-3"}


async def test_a_group_sqlite_abandons_publishes_nothing(database: Database) -> None:
    heard: list[tuple[str, ...]] = []
    database.on_commit(lambda published: heard.append(tuple(published)))

    def abandon(conn: Connection) -> None:
        conn.exec_driver_sql("ROLLBACK")

    gate, tasks = await _queue_behind_gate(database, [_publishing("k-0"), abandon])
    gate.release.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert heard == [()], "the gate's own commit only"
    assert await database.run_write(_publishing("k-1")) == "k-1"
    assert heard == [(), ("k-1",)], "nothing of the abandoned group comes with the next commit"


async def test_a_single_abandoned_transaction_is_reported_not_committed_piecemeal(database: Database) -> None:
    def abandon_then_write(conn: Connection) -> None:
        conn.exec_driver_sql("ROLLBACK")
        conn.execute(server_keys.insert().values(name="k-after", value="v"))  # would commit on its own

    with pytest.raises(UnavailableError, match="abandoned"):
        await database.run_write(abandon_then_write)
    count = select(func.count()).select_from(server_keys).where(server_keys.c.name == "k-after")
    assert await database.run_read(lambda conn: conn.execute(count).scalar_one()) == 0


async def test_a_write_from_another_process_waits_for_the_lock_instead_of_failing(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'shared.db'}")
    other = Database(f"sqlite:///{tmp_path / 'shared.db'}")  # as another process would, with its own writer
    await database.migrate()
    try:
        gate = _Gate()
        held = asyncio.create_task(database.run_write(gate))
        await asyncio.to_thread(gate.inside.wait, 10)
        waiting = asyncio.create_task(other.run_write(_insert("k-other")))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # in SQLite's busy handler, not failed
        gate.release.set()
        assert await held == "k-gate" and await waiting == "k-other"
        assert await other.run_read(lambda conn: conn.execute(text("PRAGMA journal_mode")).scalar()) == "wal"
    finally:
        await database.close()
        await other.close()


async def test_the_log_is_copied_into_the_database_file_beside_the_writer_not_by_its_commits(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.db"
    database = Database(f"sqlite:///{path}")
    await database.migrate()

    def in_the_file_alone() -> int:
        # immutable=1 reads the database file and ignores the write-ahead log: it sees checkpointed rows only.
        with contextlib.closing(sqlite3.connect(f"file:{path}?immutable=1", uri=True)) as file_only:
            try:
                return int(file_only.execute("SELECT count(*) FROM server_keys WHERE name LIKE 'k-%'").fetchone()[0])
            except sqlite3.OperationalError:  # not even the schema has been copied yet
                return 0

    try:
        autocheckpoint = await database.run_read(
            lambda conn: conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        )
        assert autocheckpoint == 0  # commits never checkpoint
        before = _sqlite(database).checkpoints
        for i in range(50):
            await database.run_write(_insert(f"k-{i}"))
        deadline = asyncio.get_running_loop().time() + 10
        # The checkpointer counts a checkpoint once it has returned its connection: the rows can be in the file
        # a moment before the count moves.
        while in_the_file_alone() < 50 or _sqlite(database).checkpoints == before:
            assert asyncio.get_running_loop().time() < deadline, "the checkpointer never copied the writes"
            await asyncio.sleep(0.1)
    finally:
        await database.close()


async def test_a_steady_stream_of_writes_does_not_grow_the_log_without_end(tmp_path: Path) -> None:
    # The background checkpointer alone never sees the whole log copied (new commits land while it copies),
    # so the log would never start over; past a length, the writer checkpoints once between two groups.
    path = tmp_path / "steady.db"
    database = Database(f"sqlite:///{path}")
    await database.migrate()
    _sqlite(database).runner.wal_restart_frames = 64
    payload = "x" * 3000  # about a page per row
    stop = asyncio.Event()
    written = 0

    async def writer(n: int) -> None:
        nonlocal written
        i = 0
        while not stop.is_set():
            name = f"s-{n}-{i}"
            await database.run_write(
                lambda conn, name=name: conn.execute(server_keys.insert().values(name=name, value=payload))
            )
            i += 1
            written += 1

    try:
        tasks = [asyncio.create_task(writer(n)) for n in range(8)]
        for _ in range(200):  # 20 s at most
            if _sqlite(database).log_restarts >= 3:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*tasks)
        assert _sqlite(database).log_restarts >= 3, f"the log never started over in 20 s of writes ({written} of them)"
        count = await database.run_read(
            lambda conn: conn.execute(select(func.count()).where(server_keys.c.name.like("s-%"))).scalar_one()
        )
        assert count == written  # nothing lost to the checkpoints
    finally:
        await database.close()


async def test_many_rows_are_inserted_in_several_statements_each_row_whole(database: Database) -> None:
    # 1,234 rows: statements of at most 500 rows each (500, 500, 234), and rows of two shapes go apart.
    rows: list[dict[str, Any]] = [{"name": f"m-{i:04d}", "value": f"v{i}"} for i in range(1_200)]
    rows += [{"value": f"w{i}", "name": f"m-{i + 1_200:04d}"} for i in range(34)]  # same columns, other order

    def work(conn: Connection) -> None:
        insert_rows(conn, server_keys, rows)

    await database.run_write(work)
    query = select(server_keys.c.name, server_keys.c.value).where(server_keys.c.name.like("m-%"))
    stored = await database.run_read(lambda conn: {name: value for name, value in conn.execute(query)})
    assert stored == {row["name"]: row["value"] for row in rows}
