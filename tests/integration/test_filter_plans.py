"""Filtered queries use indexes: for each kind of constraint, the plan reads the index it names and never
scans the entity table, on SQLite and on PostgreSQL.

The database holds a few thousand rows in which the constraint under test is selective while the data owner
is not (one data owner reads everything), so that a planner free to choose picks the constraint's index. On
PostgreSQL the tables are ANALYZEd and the planner is left alone; SQLite is checked as the application leaves
it (never analyzed) and after ANALYZE.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Connection, text

from medstream.access import Actor
from medstream.crypto.blind_index import token
from medstream.filters import (
    DataSampleByHealthcarePartyBlindIndexFilter,
    DataSampleByHealthcarePartyFilter,
    DataSampleByHealthcarePartyHealthcareElementIdsFilter,
    DataSampleByHealthcarePartyIdentifiersFilter,
    DataSampleByHealthcarePartyPatientFilter,
    DataSampleByHealthcarePartyTagCodeDateFilter,
    DataSampleByIdsFilter,
    Filter,
    NotificationsAfterDateFilter,
    PatientByHealthcarePartyBlindIndexFilter,
    PatientByHealthcarePartyDateOfBirthBetweenFilter,
    PatientByHealthcarePartyIdentifiersFilter,
    PatientByHealthcarePartySsinsFilter,
)
from medstream.model import (
    KIND_BY_NAME,
    CodingReference,
    DataSample,
    Gender,
    HealthcareProfessional,
    Identifier,
    Notification,
    Patient,
)
from medstream.store.database import Database
from medstream.store.queries import filter_query
from medstream.store.repository import EntityRepository
from medstream.store.schema import ENTITY_TABLES
from tests.conftest import database_url_for

ROWS = 3000
BATCH = 500
ADMIN = Actor("admin-user", None, is_admin=True)
OWNER = "plan-hcp-owner"  # reads everything
RARE_READER = "plan-hcp-rare"  # reads 20 data samples
BASE_TIME = 1_700_000_000_000  # notifications are spread one second apart from here
INDEX_KEY = bytes(range(32))  # the blind-index key the tokens are made with


def _patient(i: int) -> Patient:
    return Patient(
        id=f"plan-pat-{i:04d}",
        first_name=f"Name{i}",
        gender=Gender.female if i % 2 else Gender.male,
        ssin=f"{i:011d}",
        date_of_birth=19000101 + i * 100,
        identifiers=[Identifier(system="urn:mrn", value=f"mrn-{i}")],
        blind_index={"ssin": [token(INDEX_KEY, "ssin", f"{i:011d}")]},
    )


def _sample(i: int) -> DataSample:
    return DataSample(
        id=f"plan-ds-{i:04d}",
        patient_id=f"plan-pat-{i:04d}",
        value_date=20000101000000 + i * 1_000_000,
        labels={CodingReference(type=f"T{i % 100}", code=f"C{i % 7}")},
        codes={CodingReference(type=f"K{i % 100}", code="x")},
        identifiers=[Identifier(system="urn:lab", value=f"v{i}")],
        healthcare_element_ids={f"plan-he-{i % 300}"},
        blind_index={"identifiers": [token(INDEX_KEY, "identifiers", f"urn:lab\x00v{i}")]},
    )


@dataclass
class PlanDatabase:
    database: Database
    backend: str


@pytest_asyncio.fixture(scope="module", params=["sqlite", "postgresql"])
async def planned(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PlanDatabase]:
    backend: str = request.param
    async with database_url_for(backend, tmp_path_factory.mktemp(f"plans-{backend}")) as url:
        database = Database(url)
        await database.migrate()
        repository = EntityRepository(database)
        owner = Actor("plan-owner-user", OWNER)
        await repository.create_or_modify(
            KIND_BY_NAME["HealthcareProfessional"],
            [HealthcareProfessional(id=OWNER), HealthcareProfessional(id=RARE_READER)],
            ADMIN,
        )
        for start in range(0, ROWS, BATCH):
            numbers = range(start, start + BATCH)
            await repository.create_or_modify(KIND_BY_NAME["Patient"], [_patient(i) for i in numbers], owner)
            await repository.create_or_modify(KIND_BY_NAME["DataSample"], [_sample(i) for i in numbers], owner)
            await repository.create_or_modify(
                KIND_BY_NAME["Notification"], [Notification(id=f"plan-note-{i:04d}") for i in numbers], owner
            )
        for i in range(20):
            await repository.give_access(KIND_BY_NAME["DataSample"], f"plan-ds-{i * 100:04d}", RARE_READER, owner)
        # The store stamps `created` itself; spread it so that a date range is selective.
        spread = text(f"UPDATE notifications SET created = {BASE_TIME} + CAST(substr(id, 11) AS BIGINT) * 1000")
        await database.run_write(lambda conn: conn.execute(spread))
        if database.backend.name != "sqlite":

            def analyze(conn: Connection) -> None:
                for table in (*(t.name for t in ENTITY_TABLES.values()), "entity_terms", "entity_readers"):
                    conn.execute(text(f"ANALYZE {table}"))

            await database.run_write(analyze)
        try:
            yield PlanDatabase(database, backend)
        finally:
            await database.close()


# (constraint, filter, the index the plan must read)
CASES: list[tuple[str, Filter, str]] = [
    ("id", DataSampleByIdsFilter(ids=frozenset({"plan-ds-0001", "plan-ds-2002"})), "data_samples"),
    ("data owner", DataSampleByHealthcarePartyFilter(hcp_id=RARE_READER), "entity_readers"),
    (
        "identifier",
        DataSampleByHealthcarePartyIdentifiersFilter(
            healthcare_party_id=OWNER, identifiers=(Identifier(system="urn:lab", value="v10"),)
        ),
        "ix_entity_terms_covering",
    ),
    (
        "identifier",
        PatientByHealthcarePartyIdentifiersFilter(
            healthcare_party_id=OWNER,
            identifiers=(Identifier(system="urn:mrn", value="mrn-1"), Identifier(system="urn:mrn", value="mrn-2")),
        ),
        "ix_entity_terms_covering",
    ),
    (
        "blind index",
        PatientByHealthcarePartyBlindIndexFilter(
            healthcare_party_id=OWNER, field="ssin", tokens=frozenset({token(INDEX_KEY, "ssin", "00000000042")})
        ),
        "ix_entity_terms_covering",
    ),
    (
        "blind index",
        DataSampleByHealthcarePartyBlindIndexFilter(
            healthcare_party_id=OWNER,
            field="identifiers",
            tokens=frozenset({token(INDEX_KEY, "identifiers", f"urn:lab\x00v{i}") for i in (10, 20)}),
        ),
        "ix_entity_terms_covering",
    ),
    (
        "label",
        DataSampleByHealthcarePartyTagCodeDateFilter(healthcare_party_id=OWNER, tag_type="T5", tag_code="C5"),
        "ix_entity_terms_covering",
    ),
    (
        "code",
        DataSampleByHealthcarePartyTagCodeDateFilter(healthcare_party_id=OWNER, code_type="K5", code_code="x"),
        "ix_entity_terms_covering",
    ),
    (
        "healthcare element",
        DataSampleByHealthcarePartyHealthcareElementIdsFilter(
            healthcare_party_id=OWNER, healthcare_element_ids=frozenset({"plan-he-7"})
        ),
        "ix_entity_terms_covering",
    ),
    (
        "patient",
        DataSampleByHealthcarePartyPatientFilter(healthcare_party_id=OWNER, patient_ids=frozenset({"plan-pat-0001"})),
        "ix_data_samples_patient_id",
    ),
    (
        "ssin",
        PatientByHealthcarePartySsinsFilter(healthcare_party_id=OWNER, ssins=frozenset({"00000000042"})),
        "ix_patients_ssin",
    ),
    (
        "date",
        PatientByHealthcarePartyDateOfBirthBetweenFilter(
            healthcare_party_id=OWNER, min_date_of_birth=19000101 + 100 * 100, max_date_of_birth=19000101 + 100 * 104
        ),
        "ix_patients_date_of_birth",
    ),
    (
        "date",
        NotificationsAfterDateFilter(healthcare_party_id=OWNER, date=BASE_TIME + (ROWS - 5) * 1000),
        "ix_notifications_created",
    ),
]


async def _plan(planned: PlanDatabase, tree: Filter, actor: Actor) -> str:
    query = filter_query(KIND_BY_NAME[tree.entity_type], tree, actor)

    def explain(conn: Connection) -> list[Any]:
        sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        prefix = "EXPLAIN QUERY PLAN " if planned.database.backend.name == "sqlite" else "EXPLAIN "
        return list(conn.execute(text(prefix + sql)).all())

    rows = await planned.database.run_read(explain)
    return "\n".join(str(row[-1]) for row in rows)


def _check(planned: PlanDatabase, plan: str, table: str, index: str) -> None:
    if planned.database.backend.name == "sqlite":
        # "SCAN t" (or "SCAN t USING INDEX i") reads every row of t; "SEARCH t USING ..." looks rows up.
        assert f"SCAN {table}" not in plan, plan
        if index == table:  # the primary key
            assert f"SEARCH {table} USING INDEX sqlite_autoindex_{table}_1" in plan, plan
        elif index == "entity_readers":
            assert "SEARCH entity_readers USING COVERING INDEX sqlite_autoindex_entity_readers_1" in plan, plan
        else:
            assert f"USING COVERING INDEX {index}" in plan or f"USING INDEX {index}" in plan, plan
    else:
        assert "Seq Scan" not in plan, plan
        name = {table: f"{table}_pkey", "entity_readers": "entity_readers_pkey"}.get(index, index)
        assert any(
            f"{scan} {name}" in plan or f"{scan} using {name}" in plan
            for scan in ("Index Scan", "Index Only Scan", "Bitmap Index Scan on")
        ), plan


@pytest.mark.parametrize(("constraint", "tree", "index"), CASES, ids=[f"{c}-{type(t).__name__}" for c, t, _ in CASES])
async def test_each_constraint_reads_its_index_and_never_scans_the_entity_table(
    planned: PlanDatabase, constraint: str, tree: Filter, index: str
) -> None:
    table = ENTITY_TABLES[tree.entity_type].name
    for actor in (ADMIN, Actor("plan-owner-user", OWNER)):
        _check(planned, await _plan(planned, tree, actor), table, index)
    if planned.database.backend.name == "sqlite":
        await planned.database.run_write(lambda conn: conn.execute(text("ANALYZE")))
        _check(planned, await _plan(planned, tree, ADMIN), table, index)
        await planned.database.run_write(lambda conn: conn.execute(text("DROP TABLE IF EXISTS sqlite_stat1")))
