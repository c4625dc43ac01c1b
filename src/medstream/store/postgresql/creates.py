"""PostgreSQL's create of new entities as one statement (`transactions.Statement`, for `new_entities.Creates`):
the check of the patients they link to and every table's inserts together, the inserts made only if every
check passes.

The check is the one `patient_links.check_links` runs in a transaction: per (patient, writer's data
owner), whether the patient exists, when it was deleted, and whether the writer may read it (from the
patient's readers rows). The statement returns those rows whatever they say, so the caller raises the same
error the transaction would have; when a check fails, nothing was inserted.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import asyncpg
from sqlalchemy import Dialect, Table

from medstream.access import Actor
from medstream.errors import ConflictError
from medstream.model.common import Entity
from medstream.model.entities import EntityKind
from medstream.store import outbox
from medstream.store.patient_links import linked_patients, raise_for_links
from medstream.store.postgresql.inserts import unnest_insert, unnest_inserts
from medstream.store.revisions import Stored, WriteRows, inserts
from medstream.store.schema import ENTITY_TABLES
from medstream.store.storable import integrity_message
from medstream.store.transactions import Statement

_PATIENTS = ENTITY_TABLES["Patient"].name


class Link(NamedTuple):
    """A patient that an entity links to, as its writer sees it: `owner` is the writer's data owner."""

    patient_id: str
    owner: str | None
    is_admin: bool


class LinkState(NamedTuple):
    """What the check found of a Link's patient: None for `deleted` when it is not deleted."""

    found: bool
    deleted: int | None
    readable: bool


# The parameters $1..$3 are the links, one array per field; the inserts' arrays follow. The statement locks no
# patient row (a share lock taken by many creates at once costs each of them a MultiXact and a WAL record on the
# patient's row). A delete of a patient is kept out another way (`EntityRepository.delete`): before writing, it
# takes SHARE ROW EXCLUSIVE on the tables of the kinds that link to patients, which waits for every create in
# progress and holds off every new one until it commits. This statement's ROW EXCLUSIVE lock on its table is
# taken before its snapshot (PostgreSQL takes a statement's snapshot after the locks of its plan), so a create
# that waited for such a delete sees the patient deleted, and the delete waited for any create that did not.
_CHECK = (
    "link AS (SELECT c.patient_id, c.owner, c.is_admin, p.id IS NOT NULL AS found, p.deleted,"
    " c.is_admin OR EXISTS (SELECT 1 FROM entity_readers r WHERE r.entity_type = 'Patient'"
    " AND r.data_owner_id = c.owner AND r.entity_id = c.patient_id) AS readable"
    " FROM unnest($1::varchar[], $2::varchar[], $3::boolean[]) AS c(patient_id, owner, is_admin)"
    f" LEFT JOIN {_PATIENTS} p ON p.id = c.patient_id),"
    " ok AS (SELECT coalesce(bool_and(found AND readable AND deleted IS NULL), true) AS ok FROM link)"
)


def creates_statement(
    dialect: Dialect, kind: EntityKind, readers: Sequence[tuple[Actor, list[Entity]]], groups: Sequence[list[WriteRows]]
) -> Statement[list[list[Stored]]] | None:
    """Writes of new entities of `kind`, a group of rows each, as one statement with the outcome of running them
    in a transaction: the entities as stored, per group, or the error of the first patient that `readers`
    (each data owner's entities that link to patients, in order) may not link to. None when the rows cannot
    make one statement (`create_statement`)."""
    checks: list[tuple[list[str], list[Link]]] = []  # per data owner, as a transaction checks them
    for actor, entities in readers:
        wanted = linked_patients(kind, entities)
        owner = None if actor.is_admin else actor.data_owner_id
        checks.append((wanted, [Link(patient_id, owner, actor.is_admin) for patient_id in wanted]))
    rows = [w for group in groups for w in group]
    built = create_statement(
        dialect,
        inserts(kind, rows, [outbox.event_row(w.event) for w in rows]),
        [link for _wanted, links in checks for link in links],
    )
    if built is None:
        return None

    def result(returned: list[Any]) -> list[list[Stored]]:
        states = link_states(returned)
        for wanted, links in checks:
            found = {
                link.patient_id: (state.deleted, state.readable)
                for link in links
                if (state := states.get(link)) is not None and state.found
            }
            raise_for_links(wanted, found)
        return [[Stored(w.write.entity, w.document) for w in group] for group in groups]

    def failure(error: Exception) -> BaseException | None:
        if isinstance(error, asyncpg.IntegrityConstraintViolationError):
            return ConflictError(integrity_message(kind, error))
        return None

    sql, args = built
    return Statement(sql, args, result, failure)


def create_statement(
    dialect: Dialect, inserts: Sequence[tuple[Table, Sequence[dict[str, Any]]]], links: Sequence[Link]
) -> tuple[str, tuple[Any, ...]] | None:
    """SQL and arguments that check `links` and insert each table's rows, or None when a table's rows do not
    all have the same keys (one array per column needs them to)."""
    shapes: list[tuple[Table, tuple[str, ...]]] = []
    args: list[list[Any]] = []
    if links:
        args += [[link.patient_id for link in links], [link.owner for link in links], [link.is_admin for link in links]]
    for table, rows in inserts:
        if not rows:
            continue
        keys = tuple(rows[0])
        if any(tuple(row) != keys for row in rows):
            return None
        shapes.append((table, keys))
        args.extend([row[key] for row in rows] for key in keys)
    if not shapes:
        return None
    return _sql(dialect, tuple(shapes), bool(links)), tuple(args)


def link_states(rows: Sequence[Any]) -> dict[Link, LinkState]:
    """The statement's returned rows, per link."""
    return {
        Link(row["patient_id"], row["owner"], row["is_admin"]): LinkState(row["found"], row["deleted"], row["readable"])
        for row in rows
    }


@functools.lru_cache(maxsize=256)
def _sql(dialect: Dialect, shapes: tuple[tuple[Table, tuple[str, ...]], ...], with_links: bool) -> str:
    if not with_links:
        return unnest_insert(dialect, shapes)
    inserts = unnest_inserts(dialect, shapes, first_parameter=4, where="(SELECT ok FROM ok)")
    ctes = ", ".join(f"w{i} AS ({statement})" for i, statement in enumerate(inserts))
    return f"WITH {_CHECK}, {ctes} SELECT patient_id, owner, is_admin, found, deleted, readable FROM link"
