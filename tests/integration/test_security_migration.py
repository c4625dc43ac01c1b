"""Migration 0006 on a database that already holds entities and events: every `systemMetaData.delegations` becomes
server-made secure delegations with the same readers, and the exchange data table appears, on both backends."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from sqlalchemy import Connection, text

from medstream.access import Actor
from medstream.model import KIND_BY_NAME, Patient, server_delegation_key
from medstream.store.database import Database
from medstream.store.repository import EntityRepository
from medstream.store.upgrade import upgrade_to
from tests.conftest import database_url_for

OLD_DOCUMENT = {
    "id": "old-patient",
    "rev": "1-a",
    "firstName": "Ada",
    "labels": [],
    "codes": [],
    "systemMetaData": {
        "delegations": {
            "hcp-old": {"owner": "hcp-old", "delegatedTo": "hcp-old"},
            "old-patient": {"delegatedTo": "old-patient"},
        }
    },
}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_stored_documents_and_events_keep_their_readers_as_secure_delegations(
    backend: str, tmp_path: Path
) -> None:
    async with database_url_for(backend, tmp_path) as url:
        database = Database(url)
        try:

            def old_schema_and_rows(conn: Connection) -> None:
                upgrade_to(conn, "0005")
                document = orjson.dumps(OLD_DOCUMENT).decode()
                conn.execute(
                    text("INSERT INTO patients (id, rev, document, created, modified) VALUES (:id, '1-a', :d, 1, 1)"),
                    {"id": "old-patient", "d": document},
                )
                for reader in ("hcp-old", "old-patient"):
                    conn.execute(
                        text("INSERT INTO entity_readers VALUES ('Patient', :r, 'old-patient')"), {"r": reader}
                    )
                conn.execute(
                    text(
                        "INSERT INTO outbox (entity_type, entity_id, rev, event_type, document, readers, created) "
                        "VALUES ('Patient', 'old-patient', '1-a', 'CREATE', :d, '[\"hcp-old\",\"old-patient\"]', 1)"
                    ),
                    {"d": document},
                )

            await database.run_write(old_schema_and_rows)
            await database.migrate()

            patient = await EntityRepository(database).get(
                KIND_BY_NAME["Patient"], "old-patient", Actor("u", "hcp-old")
            )
            assert isinstance(patient, Patient) and patient.first_name == "Ada"
            assert patient.readers == {"hcp-old", "old-patient"}
            assert patient.security_metadata is not None
            delegations = patient.security_metadata.secure_delegations
            assert set(delegations) == {
                server_delegation_key("hcp-old", "hcp-old"),
                server_delegation_key(None, "old-patient"),
            }
            query = text("SELECT document FROM outbox WHERE entity_id = 'old-patient'")
            (event_document,) = await database.run_read(lambda conn: conn.execute(query).scalars().all())
            assert Patient.model_validate_json(event_document) == patient, "replayed events parse as entities do"
            tables = text("SELECT count(*) FROM exchange_data_records")
            assert await database.run_read(lambda conn: conn.execute(tables).scalar()) == 0
        finally:
            await database.close()
