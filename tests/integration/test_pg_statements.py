"""On PostgreSQL, a create of new entities is one statement in autocommit (store/postgresql/creates.py, run on
store/postgresql/connections.py): the patient check and every insert in one round trip, with the outcome the transaction
gave (tests/integration/test_merged_writes.py covers merging and per-write errors on both databases)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from medstream.access import Actor
from medstream.errors import ConflictError, NotFoundError
from medstream.model import DataSample, Patient, User
from medstream.model.entities import KIND_BY_NAME
from medstream.store.database import Database
from medstream.store.postgresql.backend import PostgreSQLBackend
from medstream.store.repository import EntityRepository
from tests.conftest import database_url_for, terminate_medstream_backends

ANN = Actor(user_id="user-ann", data_owner_id="hcp-ann")
ADMIN = Actor(user_id="admin", data_owner_id=None, is_admin=True)


def _postgresql(database: Database) -> PostgreSQLBackend:
    assert isinstance(database.backend, PostgreSQLBackend)
    return database.backend


class _Traced:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.repository = EntityRepository(database)
        self.queries: list[str] = []  # every query sent on the autocommit connections, as asyncpg logged it


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[_Traced]:
    async with database_url_for("postgresql", tmp_path) as url:
        database = Database(url, pool_size=2)
        await database.migrate()
        traced = _Traced(database)
        _postgresql(database).connections.add_query_logger(lambda q: traced.queries.append(q.query))
        try:
            yield traced
        finally:
            await database.close()


async def test_a_create_is_one_statement_with_its_patient_check(pg: _Traced) -> None:
    (patient,) = await pg.repository.create_or_modify(KIND_BY_NAME["Patient"], [Patient(first_name="Ann")], ANN)
    await asyncio.sleep(0.1)  # asyncpg calls its query loggers soon after the query, not during it
    pg.queries.clear()

    (sample,) = await pg.repository.create_or_modify(
        KIND_BY_NAME["DataSample"], [DataSample(patient_id=patient.id)], ANN
    )

    await asyncio.sleep(0.1)
    # asyncpg's own queries, when a connection first meets a type, are not the write's, nor is the notice that
    # tells the other nodes once it has committed (store/postgresql/wakeups.py).
    sent = [q for q in pg.queries if "typeinfo_tree" not in q and "'jit'" not in q and "pg_notify" not in q]
    assert len(sent) == 1, sent
    assert "link AS" in sent[0] and "INSERT INTO data_samples" in sent[0]
    assert sample.patient_id == patient.id
    (stored,) = await pg.repository.get_many(KIND_BY_NAME["DataSample"], [str(sample.id)], ANN)
    assert stored.rev == sample.rev


async def test_a_failed_patient_check_inserts_nothing(pg: _Traced) -> None:
    (patient,) = await pg.repository.create_or_modify(KIND_BY_NAME["Patient"], [Patient(first_name="Ann")], ANN)
    bob = Actor(user_id="user-bob", data_owner_id="hcp-bob")

    with pytest.raises(NotFoundError, match=str(patient.id)):
        await pg.repository.create_or_modify(KIND_BY_NAME["DataSample"], [DataSample(patient_id=patient.id)], bob)
    await pg.repository.delete(KIND_BY_NAME["Patient"], [str(patient.id)], ANN)
    with pytest.raises(ConflictError, match="deleted"):
        await pg.repository.create_or_modify(KIND_BY_NAME["DataSample"], [DataSample(patient_id=patient.id)], ANN)

    counts = await pg.database.run_read(
        lambda conn: conn.exec_driver_sql(
            "SELECT (SELECT count(*) FROM data_samples),"
            " (SELECT count(*) FROM outbox WHERE entity_type = 'DataSample'),"
            " (SELECT count(*) FROM entity_readers WHERE entity_type = 'DataSample')"
        ).one()
    )
    assert tuple(counts) == (0, 0, 0)


async def test_a_taken_login_is_a_conflict_and_nothing_of_the_user_is_stored(pg: _Traced) -> None:
    users = KIND_BY_NAME["User"]
    await pg.repository.create_or_modify(users, [User(login="ann")], ADMIN, password_hashes=["h"])

    with pytest.raises(ConflictError, match="login already exists"):
        await pg.repository.create_or_modify(users, [User(login="ann")], ADMIN, password_hashes=["h"])

    count = await pg.database.run_read(
        lambda conn: conn.exec_driver_sql("SELECT count(*) FROM outbox WHERE entity_type = 'User'").scalar()
    )
    assert count == 1


async def test_a_create_after_its_connections_were_killed_runs_on_new_ones(pg: _Traced) -> None:
    (patient,) = await pg.repository.create_or_modify(KIND_BY_NAME["Patient"], [Patient(first_name="Ann")], ANN)
    patients = [Patient(first_name=f"P{i}") for i in range(2)]
    # Two creates at once: both autocommit connections made, and idle after.
    await asyncio.gather(*(pg.repository.create_or_modify(KIND_BY_NAME["Patient"], [p], ANN) for p in patients))
    assert await terminate_medstream_backends(pg.database.url) >= 1
    await asyncio.sleep(0.1)  # the driver hears of the closed sockets

    (sample,) = await pg.repository.create_or_modify(
        KIND_BY_NAME["DataSample"], [DataSample(patient_id=patient.id)], ANN
    )

    (stored,) = await pg.repository.get_many(KIND_BY_NAME["DataSample"], [str(sample.id)], ANN)
    assert stored.id == sample.id
