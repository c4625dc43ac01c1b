"""Secrets shared by every node of one database (made by the first migration)."""

from __future__ import annotations

from sqlalchemy import select

from medstream.store.database import Database
from medstream.store.schema import server_keys


async def read_key(database: Database, name: str) -> str:
    query = select(server_keys.c.value).where(server_keys.c.name == name)
    value = await database.run_read(lambda conn: conn.execute(query).scalar_one())
    return str(value)
