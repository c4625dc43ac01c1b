"""Migration 0002 (filter columns and indexes) on a database that already holds patients, on both backends."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from sqlalchemy import Connection, text

from medstream.access import Actor
from medstream.filters import PatientByHealthcarePartyGenderEducationProfessionFilter
from medstream.model import KIND_BY_NAME, Gender, Patient
from medstream.store.database import Database
from medstream.store.queries import filter_ids
from medstream.store.upgrade import upgrade_to
from tests.conftest import database_url_for


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_existing_patients_get_education_and_profession_and_are_found_by_them(
    backend: str, tmp_path: Path
) -> None:
    async with database_url_for(backend, tmp_path) as url:
        database = Database(url)
        try:

            def old_schema_and_rows(conn: Connection) -> None:
                upgrade_to(conn, "0001")
                for number, education in enumerate(("university", None, "primary")):
                    patient = Patient(
                        id=f"old-{number}", gender=Gender.female, education=education, profession="nurse", rev="1-a"
                    )
                    conn.execute(
                        text(
                            "INSERT INTO patients (id, rev, document, created, modified, gender) "
                            "VALUES (:id, :rev, :document, 1, 1, 'female')"
                        ),
                        {
                            "id": patient.id,
                            "rev": patient.rev,
                            "document": orjson.dumps(patient.to_json_dict()).decode(),
                        },
                    )
                    conn.execute(
                        text(
                            "INSERT INTO entity_readers (entity_type, data_owner_id, entity_id) "
                            "VALUES ('Patient', 'hcp-old', :id)"
                        ),
                        {"id": patient.id},
                    )

            await database.run_write(old_schema_and_rows)
            await database.migrate()
            query = text("SELECT id, education, profession FROM patients ORDER BY id")
            rows = await database.run_read(lambda conn: conn.execute(query).all())
            assert [tuple(row) for row in rows] == [
                ("old-0", "university", "nurse"),
                ("old-1", None, "nurse"),
                ("old-2", "primary", "nurse"),
            ]
            tree = PatientByHealthcarePartyGenderEducationProfessionFilter(
                healthcare_party_id="hcp-old", gender=Gender.female, education="university", profession="nurse"
            )
            admin = Actor("admin", None, is_admin=True)
            assert await filter_ids(database, KIND_BY_NAME["Patient"], tree, admin) == ["old-0"]
        finally:
            await database.close()
