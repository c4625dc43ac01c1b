"""Filtered reads: a compiled filter, the access rule and liveness, ordered and paged by id.

The access rule is `readable_clause` (which `EntityRepository.list_readable` uses too): an admin reads every
entity; anyone else reads the entities shared with their data owner, and nothing without one. Deleted
entities (tombstones) are never listed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, select

from medstream.access import Actor
from medstream.errors import ValidationError
from medstream.filters import Filter
from medstream.model.common import Entity
from medstream.model.entities import EntityKind
from medstream.store.database import Database
from medstream.store.filter_sql import FilterTables, compile_filter, has_driving_constraint
from medstream.store.schema import ENTITY_TABLES, entity_readers, entity_terms

MAX_PAGE = 10_000


def filter_tables(kind: EntityKind) -> FilterTables:
    """The tables a filter on `kind` compiles against."""
    return FilterTables(entity=ENTITY_TABLES[kind.name], terms=entity_terms, readers=entity_readers)


def readable_clause(kind: EntityKind, actor: Actor, *, check_only: bool = False) -> ColumnElement[bool] | None:
    """The access rule as a WHERE clause over the kind's table; None when the actor reads everything. With
    `check_only`, a correlated EXISTS probed per row (when other conditions drive the query) rather than an
    IN over every entity the actor reads (which the database can start from)."""
    if actor.is_admin:
        return None
    table = ENTITY_TABLES[kind.name]
    shared = select(entity_readers.c.entity_id).where(
        entity_readers.c.entity_type == kind.name, entity_readers.c.data_owner_id == actor.data_owner_id
    )
    if check_only:
        return shared.where(entity_readers.c.entity_id == table.c.id).exists()
    return table.c.id.in_(shared)


def filter_query(
    kind: EntityKind,
    filter: Filter,
    actor: Actor,
    columns: tuple[str, ...] = ("id",),
    *,
    start_after: str | None = None,
    start_at: str | None = None,
    limit: int = 1000,
) -> Select[Any]:
    """The SELECT of `columns` for the live entities of `kind` that `filter` matches and `actor` may read, from
    the id after `start_after` or from `start_at` itself (iCure's pages begin at their first id)."""
    if filter.entity_type != kind.name:
        raise ValidationError(f"a {filter.entity_type} filter cannot select {kind.name} entities")
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    table = ENTITY_TABLES[kind.name]
    query = (
        select(*(table.c[name] for name in columns))
        .where(table.c.deleted.is_(None), compile_filter(filter, filter_tables(kind)))
        .order_by(table.c.id)
        .limit(limit)
    )
    access = readable_clause(kind, actor, check_only=has_driving_constraint(filter))
    if access is not None:
        query = query.where(access)
    if start_after is not None:
        query = query.where(table.c.id > start_after)
    if start_at is not None:
        query = query.where(table.c.id >= start_at)
    return query


async def filter_ids(
    database: Database,
    kind: EntityKind,
    filter: Filter,
    actor: Actor,
    *,
    start_after: str | None = None,
    limit: int = 1000,
) -> list[str]:
    """Ids of the live entities `filter` matches and `actor` may read, in id order, after `start_after`."""
    query = filter_query(kind, filter, actor, ("id",), start_after=start_after, limit=limit)
    if not actor.is_admin and actor.data_owner_id is None:
        return []
    return await database.run_read(lambda conn: [entity_id for (entity_id,) in conn.execute(query)])


async def filter_entities(
    database: Database,
    kind: EntityKind,
    filter: Filter,
    actor: Actor,
    *,
    start_after: str | None = None,
    start_at: str | None = None,
    limit: int = 1000,
) -> list[Entity]:
    """The entities `filter_ids` names, in the same order."""
    query = filter_query(kind, filter, actor, ("document",), start_after=start_after, start_at=start_at, limit=limit)
    if not actor.is_admin and actor.data_owner_id is None:
        return []
    documents = await database.run_read(lambda conn: [document for (document,) in conn.execute(query)])
    return [kind.model.model_validate_json(document) for document in documents]
