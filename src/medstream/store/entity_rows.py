"""The statements the repository reads entity rows with, and the access a writer has to the patients its
entities link to: built once, as SQLAlchemy Core for PostgreSQL and as plain SQL for SQLite's driver."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

from sqlalchemy import Dialect, Select, Table, bindparam, exists, select

from medstream.store.schema import ENTITY_TABLES, entity_readers


class EntityRow(NamedTuple):
    id: str
    rev: str
    document: str
    deleted: int | None


@functools.cache
def row_sql(dialect: Dialect, table: Table) -> str:
    """`row_query` for SQLite's driver (statements.sqlite_execute)."""
    return f"SELECT id, rev, document, deleted FROM {dialect.identifier_preparer.format_table(table)} WHERE id = ?"


_PATIENTS = ENTITY_TABLES["Patient"]
_PATIENT_ACCESS_COLUMNS = select(
    _PATIENTS.c.id,
    _PATIENTS.c.deleted,
    exists().where(
        entity_readers.c.entity_type == "Patient",
        entity_readers.c.data_owner_id == bindparam("owner"),
        entity_readers.c.entity_id == _PATIENTS.c.id,
    ),
)
# PostgreSQL only (SQLite runs one write at a time): the patients are locked FOR SHARE until the write commits,
# so that a delete of one of them (FOR UPDATE) cannot commit between this check and the write's commit; in id
# order by bytes (COLLATE "C"), as every other lock on entity rows is taken, so that writes never deadlock.
PATIENT_ACCESS = (
    _PATIENT_ACCESS_COLUMNS.where(_PATIENTS.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_PATIENTS.c.id.collate("C"))
    .with_for_update(read=True, of=_PATIENTS)
)
PATIENT_ACCESS_ONE = _PATIENT_ACCESS_COLUMNS.where(_PATIENTS.c.id == bindparam("id")).with_for_update(
    read=True, of=_PATIENTS
)


@functools.lru_cache(maxsize=64)
def patient_access_sqlite(count: int) -> str:
    """`PATIENT_ACCESS` for SQLite's driver, for `count` ids."""
    where = "id = ?" if count == 1 else f"id IN ({', '.join('?' * count)})"
    return (
        "SELECT id, deleted, EXISTS (SELECT 1 FROM entity_readers WHERE entity_type = 'Patient'"
        f" AND data_owner_id = ? AND entity_id = patients.id) FROM patients WHERE {where}"
    )


@functools.cache
def row_query(table: Table, lock: bool) -> Select[Any]:
    query = select(table.c.id, table.c.rev, table.c.document, table.c.deleted).where(table.c.id == bindparam("id"))
    return query.with_for_update() if lock else query


@functools.cache
def rows_query(table: Table, lock: bool) -> Select[Any]:
    """The statement `_rows_by_id` runs, built once per table (ids are an expanding parameter)."""
    query = select(table.c.id, table.c.rev, table.c.document, table.c.deleted).where(
        table.c.id.in_(bindparam("ids", expanding=True))
    )
    if lock:
        query = query.order_by(table.c.id.collate("C")).with_for_update()
    return query
