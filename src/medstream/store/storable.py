"""What a column can hold: a value it cannot hold is refused as bad input, with the field it came from,
before anything is written; and the message of a write that broke a unique key."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, NoReturn

from pydantic.alias_generators import to_camel
from sqlalchemy import BigInteger, Integer, Table

from medstream.errors import ValidationError
from medstream.model.entities import EntityKind

_INT_BITS: dict[type[Any], int] = {Integer: 32, BigInteger: 64}
TERM_FIELDS = {  # the entity field each kind of term comes from
    "label": "labels",
    "code": "codes",
    "identifier": "identifiers",
    "healthcare_element": "healthcareElementIds",
    "blind_index": "blindIndex",
}


def _field_of_column(column: str) -> str:
    return "a name (firstName, lastName, names...)" if column == "search_name" else to_camel(column)


def check_storable(
    kind: EntityKind, entity_id: str, table: Table, values: dict[str, Any], *, field: str | None = None
) -> None:
    """Refuse, as bad input, a value its column cannot hold: PostgreSQL would fail the write (a 500) where
    SQLite stores it, so both refuse it alike, before anything is written. `field` names the entity's field
    the values come from (by default, the column's own name). Every write checks every column of its row and
    terms: the common case, nothing wrong, is kept to a test or two per value."""
    limits = _column_limits(table)
    for name, value in values.items():
        if isinstance(value, str):
            limit = limits[name]
            if "\x00" in value or (limit.length is not None and len(value) > limit.length):
                _refuse_unstorable(kind, entity_id, name, value, limit, field)
        elif isinstance(value, int) and not isinstance(value, bool):
            limit = limits[name]
            if not limit.low <= value <= limit.high:
                _refuse_unstorable(kind, entity_id, name, value, limit, field)


class _ColumnLimit(NamedTuple):
    length: int | None  # the longest text the column holds, None: no limit
    bits: int  # its integer width
    low: int
    high: int


def _refuse_unstorable(
    kind: EntityKind, entity_id: str, name: str, value: object, limit: _ColumnLimit, field: str | None
) -> NoReturn:
    if isinstance(value, str):
        problem = (
            "holds a NUL character (U+0000), which cannot be stored"
            if "\x00" in value
            else f"holds text longer than {limit.length} characters, which cannot be stored"
        )
    else:
        problem = f"holds an integer out of the {limit.bits}-bit range, which cannot be stored"
    path = field or _field_of_column(name)
    raise ValidationError(f"{kind.name} {entity_id}: {path} {problem}", details=[{"path": path, "message": problem}])


@functools.cache
def _column_limits(table: Table) -> dict[str, _ColumnLimit]:
    """Per column of `table`: the longest text it holds and the integers it holds."""
    limits = {}
    for column in table.columns:
        bits = _INT_BITS.get(type(column.type), 64)
        limits[column.key] = _ColumnLimit(
            getattr(column.type, "length", None), bits, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        )
    return limits


def integrity_message(kind: EntityKind, exc: Exception) -> str:
    text = str(getattr(exc, "orig", exc)).lower()
    if "login" in text:
        return "a user with this login already exists"
    return f"a {kind.name} with one of these ids already exists"
