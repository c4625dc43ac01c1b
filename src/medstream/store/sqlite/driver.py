"""SQLite's statements straight through its driver (`sqlite3`), under a SQLAlchemy connection: for the few
statements every write and every dispatch runs, SQLAlchemy's execution machinery cost ten times SQLite's own
work. Also the refusal of statements in a transaction SQLite has abandoned by itself."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Dialect, Table
from sqlalchemy.exc import DBAPIError, OperationalError

_SQLITE_ROWS_PER_INSERT = 500
_SQLITE_MAX_VARIABLES = 32766  # SQLite's default bound on a statement's parameters since 3.32


def abandoned() -> OperationalError:
    return OperationalError("", {}, RuntimeError("SQLite abandoned the transaction"))


def refuse_if_abandoned(conn: Connection) -> None:
    """Raise if SQLite has rolled back the transaction under `conn` by itself (see `_inside_the_transaction` in
    `group_commit`): nothing more may run in it, and it must not be committed."""
    raw = conn.connection.dbapi_connection
    assert isinstance(raw, sqlite3.Connection)
    if not raw.in_transaction:
        raise abandoned()


def sqlite_execute(conn: Connection, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
    """Run `sql` (with `?` parameters) on the SQLite connection under `conn`, inside its transaction, and
    return the driver's cursor. Errors are SQLAlchemy's, as from `conn.execute`, and a transaction SQLite has
    abandoned is refused as in `_inside_the_transaction`."""
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


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT `rows` into `table`: rows with the same keys go to the driver as multi-row VALUES statements of
    plain parameters. SQLAlchemy's parameter processing for each row cost more than SQLite's insert of it, and
    one statement for many rows releases and retakes the GIL once, not once per row."""
    if not rows:
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


@functools.lru_cache(maxsize=256)
def _sqlite_insert(dialect: Dialect, table: Table, keys: tuple[str, ...], count: int) -> str:
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(quote(table.c[key].name) for key in keys)
    row = "(" + ", ".join("?" * len(keys)) + ")"
    return (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({columns}) VALUES {', '.join([row] * count)}"
    )
