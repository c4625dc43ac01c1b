"""PostgreSQL's inserts of a write's rows: every table's rows in one statement, each column's values one array
parameter, unnested."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Dialect, Table, insert


def insert_tables(conn: Connection, inserts: Sequence[tuple[Table, Sequence[dict[str, Any]]]]) -> None:
    """INSERT each table's rows in one statement: a data-modifying WITH clause per table, each table's rows sent
    as one array per column and unnested, so that a write's entity rows, terms, readers and events cost one
    round trip and one pass through SQLAlchemy instead of four (each pass cost ~0.25 ms of the server's CPU); a
    table whose rows do not all have the same keys goes first, through SQLAlchemy's executemany."""
    shapes: list[tuple[Table, tuple[str, ...]]] = []
    parameters: list[list[Any]] = []
    for table, rows in inserts:
        if not rows:
            continue
        keys = tuple(rows[0])
        if any(tuple(row) != keys for row in rows):
            conn.execute(insert(table), rows)
            continue
        shapes.append((table, keys))
        parameters.extend([row[key] for row in rows] for key in keys)
    if shapes:
        conn.exec_driver_sql(unnest_insert(conn.dialect, tuple(shapes)), tuple(parameters))


@functools.lru_cache(maxsize=256)
def unnest_insert(dialect: Dialect, shapes: tuple[tuple[Table, tuple[str, ...]], ...]) -> str:
    """Every (table, keys) of `shapes` inserted in one statement (see `insert_tables`)."""
    *first, last = unnest_inserts(dialect, shapes)
    if not first:
        return last
    return "WITH " + ", ".join(f"w{i} AS ({statement})" for i, statement in enumerate(first)) + " " + last


def unnest_inserts(
    dialect: Dialect, shapes: Sequence[tuple[Table, tuple[str, ...]]], *, first_parameter: int = 1, where: str = ""
) -> list[str]:
    """One `INSERT ... SELECT * FROM unnest(...)` per (table, keys), each column's values one array parameter,
    numbered from `first_parameter` on; `where`, if given, is a condition every insert is under."""
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
