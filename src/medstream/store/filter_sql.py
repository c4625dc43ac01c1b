"""The SQL evaluator: a filter compiled to a WHERE clause over one entity kind's table.

Each constraint atom becomes an indexed lookup: ids use the primary key, data owners the `entity_readers` key,
labels, codes, identifiers, blind-index tokens and healthcare elements the `entity_terms` lookup index (as
`id IN (subquery)`, which both SQLite and PostgreSQL drive from the subquery), patients, ssins, genders, types
and dates the entity table's own indexed columns. Only the fuzzy name search scans (a substring), and it always
comes with a data owner or other constraint in practice.

Every clause is two-valued (never NULL): a nullable column is tested with IS NOT NULL first, so that NOT, in a
ComplementFilter, means exactly what it means in the matcher.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Table,
    and_,
    false,
    literal,
    not_,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from medstream.filters.base import LeafFilter
from medstream.filters.constraints import (
    FieldBetween,
    FieldIn,
    HasBlindToken,
    HasCoding,
    HasHealthcareElement,
    HasIdentifier,
    IdIn,
    NameContains,
    SharedWith,
)
from medstream.filters.tree import ComplementFilter, Filter, IntersectionFilter, UnionFilter
from medstream.store.schema import BLIND_INDEX_TERM


@dataclass(frozen=True)
class FilterTables:
    """The tables a compiled filter reads: the entity kind's own table (with `id` and the indexed columns its
    filters name), `entity_terms` and `entity_readers`. The caller (the store) passes them in."""

    entity: Table
    terms: Table
    readers: Table


def compile_filter(filter: Filter, tables: FilterTables) -> ColumnElement[bool]:
    """A WHERE clause over `tables.entity` selecting the rows whose entity `filter` matches (deleted or not,
    readable or not: the caller adds those conditions)."""
    return _Compiler(filter.entity_type, tables).node(filter)


def has_driving_constraint(filter: Filter) -> bool:
    """Whether the compiled filter gives the database an index to start from on every branch (anything but
    a fuzzy name or "all"). The store then only checks the access rule row by row instead of listing every
    entity the reader may read."""
    if isinstance(filter, LeafFilter):
        return any(not isinstance(atom, NameContains) for atom in filter.constraints)
    if isinstance(filter, IntersectionFilter):
        return any(has_driving_constraint(child) for child in filter.filters)
    if isinstance(filter, UnionFilter):
        return all(has_driving_constraint(child) for child in filter.filters)
    return has_driving_constraint(filter.super_set)


class _Compiler:
    def __init__(self, entity_type: str, tables: FilterTables) -> None:
        self.entity_type = entity_type
        self.tables = tables
        self.atoms: dict[type[Any], Callable[[Any], ColumnElement[bool]]] = {
            SharedWith: self._shared_with,
            IdIn: self._id_in,
            HasCoding: self._has_coding,
            HasIdentifier: self._has_identifier,
            HasBlindToken: self._has_blind_token,
            HasHealthcareElement: self._has_healthcare_element,
            FieldIn: self._field_in,
            FieldBetween: self._field_between,
            NameContains: self._name_contains,
        }

    def node(self, node: Any) -> ColumnElement[bool]:
        if isinstance(node, LeafFilter):
            atoms = sorted(node.constraints, key=_selectivity_rank)
            if not atoms:
                return true()
            clauses = [self.atoms[type(atom)](atom) for atom in atoms]
            if isinstance(atoms[-1], SharedWith) and _selectivity_rank(atoms[0]) < _RANKS[SharedWith]:
                # Another atom can drive the query: the data owner only needs checking, row by row.
                clauses[-1] = self._shared_with_check(atoms[-1])
            return and_(*clauses)
        if isinstance(node, IntersectionFilter):
            return _balanced(and_, [self.node(child) for child in node.filters])
        if isinstance(node, UnionFilter):
            return _balanced(or_, [self.node(child) for child in node.filters])
        if isinstance(node, ComplementFilter):
            return and_(self.node(node.super_set), not_(self.node(node.sub_set)))
        raise TypeError(f"not a filter node: {node!r}")

    # -- atoms -----------------------------------------------------------------------------------------------

    def _with_terms(self, term: str, *conditions: ColumnElement[bool]) -> ColumnElement[bool]:
        """The entity has an `entity_terms` row of `term` meeting `conditions` (the terms lookup index)."""
        terms = self.tables.terms
        matching = select(terms.c.entity_id).where(
            terms.c.entity_type == self.entity_type, terms.c.term == term, *conditions
        )
        return self.tables.entity.c.id.in_(matching)

    def _shared_with(self, atom: SharedWith) -> ColumnElement[bool]:
        readers = self.tables.readers
        shared = select(readers.c.entity_id).where(
            readers.c.entity_type == self.entity_type, readers.c.data_owner_id == atom.data_owner_id
        )
        return self.tables.entity.c.id.in_(shared)

    def _shared_with_check(self, atom: SharedWith) -> ColumnElement[bool]:
        """The same test as a correlated EXISTS: SQLite never drives a query from it, so it probes the readers
        key once per row the other atoms found, rather than listing every entity the data owner reads."""
        readers = self.tables.readers
        return (
            select(readers.c.entity_id)
            .where(
                readers.c.entity_type == self.entity_type,
                readers.c.data_owner_id == atom.data_owner_id,
                readers.c.entity_id == self.tables.entity.c.id,
            )
            .exists()
        )

    def _id_in(self, atom: IdIn) -> ColumnElement[bool]:
        if not atom.ids:
            return false()
        return self.tables.entity.c.id.in_(sorted(atom.ids))

    def _has_coding(self, atom: HasCoding) -> ColumnElement[bool]:
        terms = self.tables.terms
        conditions: list[ColumnElement[bool]] = [terms.c.key == atom.type]
        if atom.code is not None:
            conditions.append(terms.c.value == atom.code)
        return self._with_terms(atom.term, *conditions)

    def _has_identifier(self, atom: HasIdentifier) -> ColumnElement[bool]:
        if not atom.pairs:
            return false()
        terms = self.tables.terms
        values_by_system: dict[str, list[str]] = {}
        for system, value in sorted(atom.pairs):
            values_by_system.setdefault(system, []).append(value)
        if len(values_by_system) > _MAX_SYSTEMS:
            # Many systems: one row-value IN, which scans this kind's identifiers rather than probing each.
            return self._with_terms("identifier", tuple_(terms.c.key, terms.c.value).in_(sorted(atom.pairs)))
        by_system = [
            and_(terms.c.key == system, terms.c.value.in_(values)) for system, values in values_by_system.items()
        ]
        return self._with_terms("identifier", or_(*by_system))

    def _has_blind_token(self, atom: HasBlindToken) -> ColumnElement[bool]:
        if not atom.tokens:
            return false()
        terms = self.tables.terms
        return self._with_terms(BLIND_INDEX_TERM, terms.c.key == atom.field, terms.c.value.in_(sorted(atom.tokens)))

    def _has_healthcare_element(self, atom: HasHealthcareElement) -> ColumnElement[bool]:
        if not atom.ids:
            return false()
        terms = self.tables.terms
        return self._with_terms("healthcare_element", terms.c.key == "", terms.c.value.in_(sorted(atom.ids)))

    def _field_in(self, atom: FieldIn) -> ColumnElement[bool]:
        if not atom.values:
            return false()
        column = self.tables.entity.c[atom.field]
        if len(atom.values) == 1:
            (value,) = atom.values
            return and_(column.is_not(None), column == value)
        return and_(column.is_not(None), column.in_(sorted(atom.values)))

    def _field_between(self, atom: FieldBetween) -> ColumnElement[bool]:
        column = self.tables.entity.c[atom.field]
        # Both bounds always, as BIGINT: SQLite's planner takes a two-sided range for selective enough to use
        # the index (a one-sided one it would rather scan in id order), and a date column may be INTEGER while
        # a bound (an instant in ms) is not.
        minimum = atom.minimum if atom.minimum is not None else _MIN_INT64
        maximum = atom.maximum if atom.maximum is not None else _MAX_INT64
        return and_(
            column.is_not(None),
            column >= literal(minimum, BigInteger()),
            column <= literal(maximum, BigInteger()),
        )

    def _name_contains(self, atom: NameContains) -> ColumnElement[bool]:
        column = self.tables.entity.c.search_name
        return and_(column.is_not(None), column.contains(atom.text, autoescape=True))


# SQLite parses "a OR b OR c ..." into a tree as deep as the list is long, and refuses one deeper than 1000;
# a combinator may have up to 1000 children, so long lists are grouped into a tree at most this wide.
_GROUP_WIDTH = 16


class _Parenthesized(ColumnElement[bool]):
    """A boolean clause kept in its own parentheses: SQLAlchemy flattens an AND (OR) list nested in another
    into one flat list, even through `self_group()`, which would undo `_balanced`."""

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [("clause", InternalTraversal.dp_clauseelement)]

    def __init__(self, clause: ColumnElement[bool]) -> None:
        self.clause = clause


@compiles(_Parenthesized)
def _render_parenthesized(element: _Parenthesized, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.clause, **kw)})"


def _balanced(combine: Callable[..., ColumnElement[bool]], clauses: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    while len(clauses) > _GROUP_WIDTH:
        clauses = [
            _Parenthesized(combine(*clauses[start : start + _GROUP_WIDTH]))
            for start in range(0, len(clauses), _GROUP_WIDTH)
        ]
    return combine(*clauses)


_MIN_INT64, _MAX_INT64 = -(2**63), 2**63 - 1

# Up to this many identifier systems in one filter, each is probed in the terms index with its values.
_MAX_SYSTEMS = 16

# Most selective first: SQLite drives a conjunction of `id IN (...)` from the first one it can use.
_RANKS: dict[type[Any], int] = {
    IdIn: 0,
    HasIdentifier: 1,
    HasBlindToken: 1,
    HasHealthcareElement: 1,
    FieldIn: 2,
    HasCoding: 3,
    FieldBetween: 4,
    SharedWith: 5,
    NameContains: 6,
}


def _selectivity_rank(atom: Any) -> int:
    if isinstance(atom, HasCoding) and atom.code is None:
        return 4
    return _RANKS[type(atom)]
