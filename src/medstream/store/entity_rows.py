"""Entity rows as the repository reads them by id, and the SQLAlchemy statements that read them (the backends
run them, or statements of their own)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, Select, Table, bindparam, select


class EntityRow(NamedTuple):
    id: str
    rev: str
    document: str
    deleted: int | None


@functools.cache
def row_query(table: Table, lock: bool) -> Select[Any]:
    query = select(table.c.id, table.c.rev, table.c.document, table.c.deleted).where(table.c.id == bindparam("id"))
    return query.with_for_update() if lock else query


@functools.cache
def rows_query(table: Table, lock: bool) -> Select[Any]:
    """The statement `rows_in_chunks` runs, built once per table (ids are an expanding parameter)."""
    query = select(table.c.id, table.c.rev, table.c.document, table.c.deleted).where(
        table.c.id.in_(bindparam("ids", expanding=True))
    )
    if lock:
        query = query.order_by(table.c.id.collate("C")).with_for_update()
    return query


def rows_in_chunks(conn: Connection, table: Table, ids: Sequence[str], *, lock: bool) -> dict[str, EntityRow]:
    """The rows with these ids, read 500 ids at a time (`rows_query`)."""
    query = rows_query(table, lock)
    rows: dict[str, EntityRow] = {}
    for start in range(0, len(ids), 500):
        result = conn.execute(query, {"ids": ids[start : start + 500]})
        rows.update((row[0], EntityRow(*row)) for row in result)
    return rows
