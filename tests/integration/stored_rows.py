"""An entity's stored JSON document, or any table's rows, read or replaced straight in the database (SQLite or
PostgreSQL), past the server: what someone with access to the database, or a server that misbehaves, sees and
could change."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import asyncpg
import orjson

from medstream.model.entities import KIND_BY_NAME
from tests.conftest import RunningServer


def _table(kind_name: str) -> str:
    return KIND_BY_NAME[kind_name].plural


async def read_document(server: RunningServer, kind_name: str, entity_id: str) -> dict[str, Any]:
    """The entity's document as the database holds it."""
    query = f"SELECT document FROM {_table(kind_name)} WHERE id = "
    if server.backend == "sqlite":
        path = server.database_url.removeprefix("sqlite:///")

        def read() -> str:
            with sqlite3.connect(path) as db:
                (document,) = db.execute(query + "?", (entity_id,)).fetchone()
                return str(document)

        return dict(orjson.loads(await asyncio.to_thread(read)))
    conn = await asyncpg.connect(server.database_url)
    try:
        return dict(orjson.loads(await conn.fetchval(query + "$1", entity_id)))
    finally:
        await conn.close()


async def write_document(server: RunningServer, kind_name: str, entity_id: str, document: dict[str, Any]) -> None:
    """Replace the entity's document in the database (no event, no new revision: a change made by hand)."""
    text = orjson.dumps(document).decode()
    query = f"UPDATE {_table(kind_name)} SET document = "
    if server.backend == "sqlite":
        path = server.database_url.removeprefix("sqlite:///")

        def write() -> None:
            with sqlite3.connect(path) as db:
                assert db.execute(query + "? WHERE id = ?", (text, entity_id)).rowcount == 1

        await asyncio.to_thread(write)
        return
    conn = await asyncpg.connect(server.database_url)
    try:
        assert await conn.execute(query + "$1 WHERE id = $2", text, entity_id) == "UPDATE 1"
    finally:
        await conn.close()


async def read_rows(server: RunningServer, table: str, column: str, value: str) -> list[dict[str, Any]]:
    """The rows of `table` whose `column` is `value`, each a dict by column name, as the database holds them."""
    query = f"SELECT * FROM {table} WHERE {column} = "
    if server.backend == "sqlite":
        path = server.database_url.removeprefix("sqlite:///")

        def read() -> list[dict[str, Any]]:
            with sqlite3.connect(path) as db:
                db.row_factory = sqlite3.Row
                return [dict(row) for row in db.execute(query + "?", (value,)).fetchall()]

        return await asyncio.to_thread(read)
    conn = await asyncpg.connect(server.database_url)
    try:
        return [dict(row) for row in await conn.fetch(query + "$1", value)]
    finally:
        await conn.close()
