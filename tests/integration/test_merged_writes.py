"""Creates that wait at the same time run merged: one patient check and one INSERT per table for all of them
(in a SQLite group, or in one PostgreSQL statement when those in flight for their kind are busy), and when they cannot
all succeed together, each runs again alone and only the failing one fails."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import Connection, event, func, select

from medstream.access import Actor
from medstream.errors import ConflictError, NotFoundError
from medstream.events.types import EventType
from medstream.model import CodingReference, DataSample, Patient
from medstream.model.entities import KIND_BY_NAME
from medstream.store import outbox
from medstream.store.database import Database
from medstream.store.repository import EntityRepository
from medstream.store.schema import ENTITY_TABLES, entity_readers, entity_terms
from tests.conftest import database_url_for

ANN = Actor(user_id="user-ann", data_owner_id="hcp-ann")
BOB = Actor(user_id="user-bob", data_owner_id="hcp-bob")
SAMPLES = KIND_BY_NAME["DataSample"]
PATIENTS = KIND_BY_NAME["Patient"]


def _sample(patient_id: str, code: str) -> DataSample:
    return DataSample(patient_id=patient_id, labels={CodingReference(type="MERGE", code=code)})


class _Store:
    def __init__(self, backend: str, database: Database, repository: EntityRepository) -> None:
        self.backend = backend
        self.database = database
        self.repository = repository
        self.statements: list[str] = []  # SQLite: every statement the database ran, as sqlite3 traced it

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Writes started inside wait until the block ends: on SQLite the writer thread is held by a write;
        on PostgreSQL another session locks the data samples against inserts."""
        if self.backend == "sqlite":
            inside, release = threading.Event(), threading.Event()

            def gate(_conn: Connection) -> None:
                inside.set()
                assert release.wait(10)

            holder = asyncio.create_task(self.database.run_write(gate))
            assert await asyncio.to_thread(inside.wait, 10)
            try:
                yield
            finally:
                release.set()
                await holder
            return
        url = self.database.url.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(url)
        try:
            async with conn.transaction():
                await conn.execute(f"LOCK TABLE {ENTITY_TABLES['DataSample'].name} IN SHARE MODE")
                yield
        finally:
            await conn.close()

    @contextlib.asynccontextmanager
    async def deleting(self, patient_id: str) -> AsyncIterator[None]:
        """Inside, a delete of the patient is in progress and not committed yet; it commits at the end."""
        table = ENTITY_TABLES["Patient"].name
        if self.backend == "sqlite":
            conn = sqlite3.connect(self.database.url.split(":///", 1)[1], isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(f"UPDATE {table} SET deleted = 1 WHERE id = ?", (patient_id,))
                yield
                conn.execute("COMMIT")
            finally:
                conn.close()
            return
        # The repository's own delete, held after it has taken its locks, before its first write: this session
        # holds a lock on the patients' table that writing to it waits for, and that reading it does not.
        url = self.database.url.replace("postgresql+asyncpg://", "postgresql://")
        pg = await asyncpg.connect(url)
        try:
            async with pg.transaction():
                await pg.execute(f"LOCK TABLE {table} IN SHARE MODE")
                delete = asyncio.create_task(self.repository.delete(PATIENTS, [patient_id], ANN))
                try:
                    await asyncio.sleep(0.3)
                    assert not delete.done(), "the delete did not wait"
                    yield
                except BaseException:
                    delete.cancel()
                    raise
            await delete
        finally:
            await pg.close()

    async def create_all(
        self, calls: list[Callable[[], Awaitable[Any]]]
    ) -> tuple[list[Any], list[BaseException | None]]:
        """Start `calls` while writes are held, in order, then let them run; each one's result or error."""
        async with self.held():
            tasks = []
            for call in calls:
                tasks.append(asyncio.create_task(call()))
                await asyncio.sleep(0)  # each reaches the database's queue in this order
            await asyncio.sleep(0.3)  # every one of them waits now
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        return (
            [None if isinstance(o, BaseException) else o for o in outcomes],
            [o if isinstance(o, BaseException) else None for o in outcomes],
        )


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[_Store]:
    async with database_url_for(request.param, tmp_path) as url:
        database = Database(url)
        await database.migrate()
        store = _Store(request.param, database, EntityRepository(database))
        if database.backend.name == "sqlite":

            @event.listens_for(database.sync_engine, "connect")
            def _trace(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.set_trace_callback(store.statements.append)

            database.sync_engine.dispose()
        try:
            yield store
        finally:
            await database.close()


async def _patient(store: _Store, actor: Actor, name: str) -> str:
    (patient,) = await store.repository.create_or_modify(PATIENTS, [Patient(first_name=name)], actor)
    assert patient.id is not None
    return patient.id


def _create(store: _Store, actor: Actor, patient_id: str, code: str) -> Callable[[], Awaitable[Any]]:
    return lambda: store.repository.create_or_modify(SAMPLES, [_sample(patient_id, code)], actor)


async def _stored_samples(store: _Store) -> tuple[dict[str, tuple[str, str]], list[tuple[int, str]], int, int]:
    """Per stored sample: (patient, label code); the log's data sample events (seq, entity id); the count of
    their terms and readers rows."""
    table = ENTITY_TABLES["DataSample"]

    def read(conn: Connection) -> tuple[dict[str, tuple[str, str]], list[tuple[int, str]], int, int]:
        samples = {}
        for (document,) in conn.execute(select(table.c.document)):
            sample = DataSample.model_validate_json(document)
            assert sample.id is not None and sample.patient_id is not None
            samples[sample.id] = (sample.patient_id, next(iter(sample.labels)).code)
        events = [(e.seq, e.entity_id) for e in outbox.read_after(conn, 0) if e.entity_type == "DataSample"]
        terms = conn.execute(
            select(func.count()).select_from(entity_terms).where(entity_terms.c.entity_type == "DataSample")
        ).scalar_one()
        readers = conn.execute(
            select(func.count()).select_from(entity_readers).where(entity_readers.c.entity_type == "DataSample")
        ).scalar_one()
        return samples, events, terms, readers

    await outbox.number_committed(store.database)  # on PostgreSQL, as the dispatcher's next round would
    return await store.database.run_read(read)


async def test_creates_that_wait_together_run_merged_and_each_gets_its_own_entities(store: _Store) -> None:
    ann_patient = await _patient(store, ANN, "Ann's patient")
    bob_patient = await _patient(store, BOB, "Bob's patient")
    merged_before = store.database.merged_writes
    calls = [_create(store, ANN if i % 2 else BOB, ann_patient if i % 2 else bob_patient, f"c{i}") for i in range(12)]
    store.statements.clear()

    results, errors = await store.create_all(calls)

    assert errors == [None] * 12
    created = [stored for [stored] in results]
    assert [next(iter(s.labels)).code for s in created] == [f"c{i}" for i in range(12)]
    samples, events, terms, readers = await _stored_samples(store)
    assert samples == {
        s.id: (ann_patient if i % 2 else bob_patient, f"c{i}") for i, s in enumerate(created) if s.id is not None
    }
    assert sorted(entity_id for _seq, entity_id in events) == sorted(samples)
    seqs = [seq for seq, _id in events]
    assert seqs == list(range(seqs[0], seqs[0] + 12)), "one dense position per create"
    assert terms == 12 and readers == 12
    for i, sample in enumerate(created):
        assert sample.readers == {"hcp-ann" if i % 2 else "hcp-bob"}
    if store.backend == "sqlite":
        # All twelve queued behind the held write: one run, one INSERT of data samples for all of them.
        assert store.database.merged_writes - merged_before == 12
        assert [e for _s, e in events] == [s.id for s in created], "positions in the order the writes queued"
        assert sum(s.startswith("INSERT INTO data_samples") for s in store.statements) == 1, store.statements
        # The group is that one run: its transaction is its savepoint.
        assert not any(s.startswith("SAVEPOINT") for s in store.statements), store.statements
    else:
        # Four ran alone, each in its own transaction, while the others waited for one of them to be free.
        assert store.database.merged_writes - merged_before == 8


async def test_a_create_that_fails_in_a_merged_run_fails_alone_and_the_others_are_stored(store: _Store) -> None:
    ann_patient = await _patient(store, ANN, "Ann's patient")
    bob_patient = await _patient(store, BOB, "Bob's patient")
    merged_before = store.database.merged_writes
    calls = [_create(store, ANN, ann_patient, f"c{i}") for i in range(10)]
    calls[7] = _create(store, ANN, bob_patient, "not Ann's")  # Ann cannot read Bob's patient

    results, errors = await store.create_all(calls)

    assert isinstance(errors[7], NotFoundError) and bob_patient in str(errors[7])
    assert errors[:7] == [None] * 7 and errors[8:] == [None] * 2
    samples, events, terms, readers = await _stored_samples(store)
    assert sorted(samples) == sorted(stored.id for r in results if r is not None for stored in r)
    assert "not Ann's" not in {code for _p, code in samples.values()}
    assert len(events) == 9 and terms == 9 and readers == 9
    if store.backend == "sqlite":
        assert store.database.merged_writes == merged_before, "the run failed together, then each ran alone"


@pytest.mark.parametrize("chosen_id", [False, True], ids=["new-id", "chosen-id"])
async def test_a_create_waits_for_a_delete_of_its_patient_in_progress_and_is_refused(
    store: _Store, chosen_id: bool
) -> None:
    # A create checks its patient and then inserts; a delete of the patient must not commit in between, or the
    # data sample would be stored for a deleted patient. (On PostgreSQL a create without an id of its own is one
    # statement, which the delete's table lock holds off; one with an id of its own is a transaction that locks
    # the patient until it commits.)
    patient = await _patient(store, ANN, "Ann's patient")
    sample = _sample(patient, "late")
    if chosen_id:
        sample.id = f"chosen-{uuid.uuid4().hex}"

    async with store.deleting(patient):
        create = asyncio.create_task(store.repository.create_or_modify(SAMPLES, [sample], ANN))
        await asyncio.sleep(0.5)
        assert not create.done(), "the create did not wait for the delete in progress"

    with pytest.raises(ConflictError, match="was deleted"):
        await create
    samples, events, terms, readers = await _stored_samples(store)
    assert samples == {} and events == [] and terms == 0 and readers == 0


async def test_creates_and_a_delete_of_their_patient_at_once_never_deadlock_nor_outlive_it(store: _Store) -> None:
    # Creates of one statement and in a transaction (an id of their own), all racing a delete of their patient:
    # each create commits before the delete or is refused after it, and none waits on the other for ever.
    for round_ in range(15):
        patient = await _patient(store, ANN, f"patient {round_}")
        samples = [_sample(patient, f"r{round_}-{i}") for i in range(6)]
        for sample in samples[::2]:
            sample.id = f"chosen-{uuid.uuid4().hex}"
        writes = [store.repository.create_or_modify(SAMPLES, [sample], ANN) for sample in samples]
        delete = store.repository.delete(PATIENTS, [patient], ANN)
        *outcomes, deleted = await asyncio.wait_for(asyncio.gather(*writes, delete, return_exceptions=True), 30)
        assert isinstance(deleted, list), f"round {round_}: the delete failed: {deleted!r}"
        [tombstone] = deleted
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                assert isinstance(outcome, ConflictError) and "was deleted" in str(outcome), repr(outcome)
        # The log follows commit order: every create that was stored committed before the delete wrote its event.
        await outbox.number_committed(store.database)
        log = await store.database.run_read(lambda conn: outbox.read_after(conn, 0))
        [delete_seq] = [e.seq for e in log if e.entity_id == tombstone.id and e.event_type == EventType.DELETE]
        created = {e.entity_id: e.seq for e in log if e.entity_type == "DataSample"}
        stored = [o[0].id for o in outcomes if not isinstance(o, BaseException)]
        assert all(created[entity_id] < delete_seq for entity_id in stored), f"round {round_}: a create outlived it"


# SQLite only: on PostgreSQL, writes that wait together have no order among them to keep.
@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_a_write_that_does_not_merge_keeps_its_place_between_creates(store: _Store) -> None:
    patient = await _patient(store, ANN, "Ann's patient")
    calls = [
        _create(store, ANN, patient, "before"),
        _create(store, ANN, patient, "before, too"),
        lambda: store.repository.delete(PATIENTS, [patient], ANN),
        _create(store, ANN, patient, "after"),
        _create(store, ANN, patient, "after, too"),
    ]

    _results, errors = await store.create_all(calls)

    assert errors[:3] == [None, None, None]
    assert isinstance(errors[3], ConflictError) and isinstance(errors[4], ConflictError)
    samples, events, _terms, _readers = await _stored_samples(store)
    assert sorted(code for _p, code in samples.values()) == ["before", "before, too"]
    assert len(events) == 2


async def test_a_batch_of_many_entities_runs_alone(store: _Store) -> None:
    patient = await _patient(store, ANN, "Ann's patient")
    merged_before = store.database.merged_writes
    batch = [_sample(patient, f"b{i}") for i in range(101)]
    singles = [_create(store, ANN, patient, f"s{i}") for i in range(6)]
    # On PostgreSQL the first four take the four transactions a merge key may have; on SQLite they merge.
    calls = [*singles[:4], *[lambda: store.repository.create_or_modify(SAMPLES, batch, ANN)] * 2, *singles[4:]]

    _results, errors = await store.create_all(calls)

    assert errors == [None] * 8
    samples, events, _terms, _readers = await _stored_samples(store)
    assert len(samples) == len(events) == 6 + 2 * 101
    # The batches ran alone; the two creates after them merged (and on SQLite the four before them as well).
    assert store.database.merged_writes - merged_before == (6 if store.backend == "sqlite" else 2)
