"""The backends' `insert_tables`: a write's rows of several tables in one statement on PostgreSQL (unnested
arrays in one WITH clause), table by table on SQLite; either way every row whole, and all or nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, func, select
from sqlalchemy.exc import IntegrityError

from medstream.store.database import Database
from medstream.store.schema import entity_readers, entity_terms, server_keys
from tests.conftest import database_url_for


def _term(entity_id: str, value: str) -> dict[str, Any]:
    return {"entity_type": "Patient", "entity_id": entity_id, "term": "label", "key": "T", "value": value}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_rows_of_several_tables_go_in_together_and_fail_together(backend: str, tmp_path: Path) -> None:
    async with database_url_for(backend, tmp_path) as url:
        database = Database(url)
        await database.migrate()
        try:
            keys = [{"name": f"t-{i}", "value": f"v{i}"} for i in range(3)]
            reordered = [{"name": "t-a", "value": "a"}, {"value": "b", "name": "t-b"}]  # keys in another order
            terms = [_term(f"p{i:04d}", f"c{i}") for i in range(700)]
            readers = [{"entity_type": "Patient", "data_owner_id": "hcp", "entity_id": "p0000"}]

            def work(conn: Connection) -> None:
                database.backend.insert_tables(
                    conn,
                    [(server_keys, keys), (entity_terms, terms), (server_keys, reordered), (entity_readers, readers)],
                )
                database.backend.insert_tables(conn, [(entity_readers, [])])  # nothing to insert is no statement at all

            statements: list[str] = []
            listener = lambda *args: statements.append(args[2])  # noqa: E731 - (conn, cursor, statement, ...)
            event.listen(database.sync_engine, "before_cursor_execute", listener)
            await database.run_write(work)
            event.remove(database.sync_engine, "before_cursor_execute", listener)
            if backend == "postgresql":  # one statement for the three tables, one for the rows of another shape
                inserts = [s for s in statements if "INSERT" in s]
                assert len(inserts) == 2, inserts
                assert sum(s.startswith("WITH") and s.count("unnest") == 3 for s in inserts) == 1, inserts

            def stored(conn: Connection) -> tuple[dict[str, str], list[Any], int]:
                names = {n: v for n, v in conn.execute(select(server_keys.c.name, server_keys.c.value))}
                rows = list(conn.execute(select(entity_terms).order_by(entity_terms.c.entity_id)))
                count = conn.execute(select(func.count()).select_from(entity_readers)).scalar_one()
                return {n: v for n, v in names.items() if n.startswith("t-")}, rows, count

            names, rows, readers_count = await database.run_read(stored)
            assert names == {**{k["name"]: k["value"] for k in keys}, "t-a": "a", "t-b": "b"}
            assert [dict(row._mapping) for row in rows] == terms
            assert readers_count == 1

            def duplicate(conn: Connection) -> None:
                database.backend.insert_tables(conn, [(entity_terms, [_term("p-new", "x")]), (server_keys, [keys[0]])])

            with pytest.raises(IntegrityError):
                await database.run_write(duplicate)
            _, rows, _ = await database.run_read(stored)
            assert "p-new" not in {row.entity_id for row in rows}  # the statement's other rows are gone with it
        finally:
            await database.close()
