"""What a transaction runs, on either database: statements straight through SQLite's driver, the rows a
write inserts (one statement per table on SQLite, one for all of them on PostgreSQL), and what a write
publishes for the commit listeners (`Database.on_commit`)."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Dialect, Table, insert
from sqlalchemy.exc import DBAPIError, OperationalError

from medstream.store.writes import Work

_SQLITE_ROWS_PER_INSERT = 500
_SQLITE_MAX_VARIABLES = 32766  # SQLite's default bound on a statement's parameters since 3.32

T = TypeVar("T")


def abandoned() -> OperationalError:
    return OperationalError("", {}, RuntimeError("SQLite abandoned the transaction"))


def refuse_if_abandoned(conn: Connection) -> None:
    """Raise if SQLite has rolled back the transaction under `conn` by itself (see `_inside_the_transaction` in
    sqlite_writer): nothing more may run in it, and it must not be committed."""
    raw = conn.connection.dbapi_connection
    assert isinstance(raw, sqlite3.Connection)
    if not raw.in_transaction:
        raise abandoned()


def sqlite_execute(conn: Connection, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
    """Run `sql` (with `?` parameters) on the SQLite connection under `conn`, inside its transaction, and
    return the driver's cursor. For the few statements every write and every dispatch runs: SQLAlchemy's
    execution machinery cost ten times SQLite's own work for them. Errors are SQLAlchemy's, as from
    `conn.execute`, and a transaction SQLite has abandoned is refused as in `_inside_the_transaction`."""
    refuse_if_abandoned(conn)
    return driver_execute(conn, sql, parameters)


def driver_execute(conn: Connection, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
    """Run `sql` on the SQLite connection under `conn`, with SQLAlchemy's errors, as `conn.execute` raises them."""
    raw = conn.connection.dbapi_connection
    assert isinstance(raw, sqlite3.Connection)
    try:
        return raw.execute(sql, parameters)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, parameters, exc, sqlite3.Error) from exc


_PUBLISHED = "medstream_published"


def publish(conn: Connection, items: Sequence[Any]) -> None:
    """Hand `items` to the `on_commit` listeners once the write transaction running on `conn` commits; they
    are dropped if it rolls back (or, in a group commit, if this write's savepoint does)."""
    conn.info.setdefault(_PUBLISHED, []).extend(items)


def take_published(conn: Connection) -> list[Any]:
    published: list[Any] = conn.info.pop(_PUBLISHED, None) or []
    return published


def with_published(conn: Connection, work: Work[T]) -> tuple[T, list[Any]]:
    """Run `work`, and take what it published; nothing it published outlives it on the pooled connection."""
    try:
        return work(conn), take_published(conn)
    finally:
        if not conn.invalidated:  # an invalidated connection leaves the pool, and what it held with it
            conn.info.pop(_PUBLISHED, None)


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT `rows` into `table`. On SQLite, rows with the same keys go to the driver as multi-row VALUES
    statements of plain parameters: SQLAlchemy's parameter processing for each row cost more than SQLite's
    insert of it, and one statement for many rows releases and retakes the GIL once, not once per row."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.execute(insert(table), rows)
        return
    by_keys: dict[tuple[str, ...], list[Any]] = {}
    for row in rows:
        by_keys.setdefault(tuple(row), []).extend(row.values())
    for keys, values in by_keys.items():
        width = len(keys)
        per_statement = max(1, min(_SQLITE_ROWS_PER_INSERT, _SQLITE_MAX_VARIABLES // width)) * width
        for start in range(0, len(values), per_statement):
            chunk = values[start : start + per_statement]
            sqlite_execute(conn, _sqlite_insert(conn.dialect, table, keys, len(chunk) // width), chunk)


def insert_tables(conn: Connection, inserts: Sequence[tuple[Table, Sequence[dict[str, Any]]]]) -> None:
    """INSERT each table's rows. On PostgreSQL in one statement: a data-modifying WITH clause per table, each
    table's rows sent as one array per column and unnested, so that a write's entity rows, terms, readers and
    events cost one round trip and one pass through SQLAlchemy instead of four (each pass cost ~0.25 ms of
    the server's CPU); a table whose rows do not all have the same keys goes first, through `insert_rows`.
    On SQLite, `insert_rows` table by table, in order."""
    inserts = [(table, rows) for table, rows in inserts if rows]
    if conn.dialect.name != "postgresql":
        for table, rows in inserts:
            insert_rows(conn, table, rows)
        return
    shapes: list[tuple[Table, tuple[str, ...]]] = []
    parameters: list[list[Any]] = []
    for table, rows in inserts:
        keys = tuple(rows[0])
        if any(tuple(row) != keys for row in rows):
            insert_rows(conn, table, rows)
            continue
        shapes.append((table, keys))
        parameters.extend([row[key] for row in rows] for key in keys)
    if shapes:
        conn.exec_driver_sql(unnest_insert(conn.dialect, tuple(shapes)), tuple(parameters))


@functools.lru_cache(maxsize=256)
def unnest_insert(dialect: Dialect, shapes: tuple[tuple[Table, tuple[str, ...]], ...]) -> str:
    """PostgreSQL: every (table, keys) of `shapes` inserted in one statement (see `insert_tables`)."""
    *first, last = unnest_inserts(dialect, shapes)
    if not first:
        return last
    return "WITH " + ", ".join(f"w{i} AS ({statement})" for i, statement in enumerate(first)) + " " + last


def unnest_inserts(
    dialect: Dialect, shapes: Sequence[tuple[Table, tuple[str, ...]]], *, first_parameter: int = 1, where: str = ""
) -> list[str]:
    """PostgreSQL: one `INSERT ... SELECT * FROM unnest(...)` per (table, keys), each column's values one array
    parameter, numbered from `first_parameter` on; `where`, if given, is a condition every insert is under."""
    quote = dialect.identifier_preparer.quote
    statements: list[str] = []
    number = first_parameter - 1
    condition = f" WHERE {where}" if where else ""
    for table, keys in shapes:
        arrays = []
        for key in keys:
            number += 1
            arrays.append(f"${number}::{table.c[key].type.compile(dialect=dialect)}[]")
        columns = ", ".join(quote(table.c[key].name) for key in keys)
        statements.append(
            f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({columns}) "
            f"SELECT * FROM unnest({', '.join(arrays)}){condition}"
        )
    return statements


@functools.lru_cache(maxsize=256)
def _sqlite_insert(dialect: Dialect, table: Table, keys: tuple[str, ...], count: int) -> str:
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(quote(table.c[key].name) for key in keys)
    row = "(" + ", ".join("?" * len(keys)) + ")"
    return (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({columns}) VALUES {', '.join([row] * count)}"
    )
