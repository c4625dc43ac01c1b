"""A write of new entities with no id chosen by the client: its rows are built before it runs, and it only
checks the patients they link to and inserts. Such writes of one kind merge (writes.MergeableWrite), and on
PostgreSQL run as one statement (pg_creates)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import asyncpg
from sqlalchemy import Connection

from medstream.access import Actor
from medstream.errors import ConflictError
from medstream.model.common import Entity
from medstream.model.entities import EntityKind
from medstream.store import outbox
from medstream.store.database import Database
from medstream.store.entity_writes import Stored, WriteRows, inserts, store_rows
from medstream.store.patient_links import PATIENT_LINKS, check_links, linked_patients, raise_for_links
from medstream.store.pg_creates import Link, create_statement, link_states
from medstream.store.storable import integrity_message
from medstream.store.writes import MergeableWrite, Statement

_MERGE_MAX_ENTITIES = 100  # a write of more entities runs alone: merging it saves little and delays the others


class Creates(MergeableWrite[list[Stored]]):
    """A write of new entities whose rows are built (`entity_writes.rows_of`): it only checks the patients they
    link to and inserts. Creates of one kind by any actors merge (writes.MergeableWrite): none of them can
    change what another's check reads, since a kind's entities never link to their own kind."""

    def __init__(self, database: Database, kind: EntityKind, actor: Actor, writes: list[WriteRows]):
        self.database = database
        self.kind = kind
        self.actor = actor
        self.writes = writes

    @property
    def merge_key(self) -> Hashable | None:
        if len(self.writes) > _MERGE_MAX_ENTITIES:
            return None
        return (id(self.database), self.kind.name)

    def __call__(self, conn: Connection) -> list[Stored]:
        is_sqlite = self.database.is_sqlite
        check_links(conn, self.kind, [w.write.entity for w in self.writes], self.actor, is_sqlite=is_sqlite)
        store_rows(conn, self.kind, self.writes, is_sqlite=is_sqlite)
        return [Stored(w.write.entity, w.document) for w in self.writes]

    @classmethod
    def run_merged(cls, conn: Connection, writes: Sequence[Creates]) -> list[list[Stored]]:
        first = writes[0]
        is_sqlite = first.database.is_sqlite
        _check_links_of_many(conn, first.kind, writes, is_sqlite=is_sqlite)
        store_rows(conn, first.kind, [w for create in writes for w in create.writes], is_sqlite=is_sqlite)
        return [[Stored(w.write.entity, w.document) for w in create.writes] for create in writes]

    @classmethod
    def pg_statement(cls, writes: Sequence[Creates], dialect: Any) -> Statement[list[list[Stored]]] | None:
        """The patient check and the inserts in one statement (pg_creates), with `run_merged`'s outcome."""
        kind = writes[0].kind
        checks: list[tuple[list[str], list[Link]]] = []  # per data owner, as _check_links_of_many checks them
        if kind.name in PATIENT_LINKS:
            for actor, entities in _by_reader(writes):
                wanted = linked_patients(kind, entities)
                owner = None if actor.is_admin else actor.data_owner_id
                checks.append((wanted, [Link(patient_id, owner, actor.is_admin) for patient_id in wanted]))
        rows = [w for create in writes for w in create.writes]
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
            return [[Stored(w.write.entity, w.document) for w in create.writes] for create in writes]

        def failure(error: Exception) -> BaseException | None:
            if isinstance(error, asyncpg.IntegrityConstraintViolationError):
                return ConflictError(integrity_message(kind, error))
            return None

        sql, args = built
        return Statement(sql, args, result, failure)


def _by_reader(creates: Sequence[Creates]) -> list[tuple[Actor, list[Entity]]]:
    """The entities of `creates` by the data owner that writes them (admins together), in order."""
    by_reader: dict[tuple[bool, str | None], tuple[Actor, list[Entity]]] = {}
    for create in creates:
        actor = create.actor
        _actor, entities = by_reader.setdefault((actor.is_admin, actor.data_owner_id), (actor, []))
        entities.extend(w.write.entity for w in create.writes)
    return list(by_reader.values())


def _check_links_of_many(conn: Connection, kind: EntityKind, creates: Sequence[Creates], *, is_sqlite: bool) -> None:
    """`check_links` for the entities of several writes at once: one patient query per data owner."""
    if kind.name not in PATIENT_LINKS:
        return
    for actor, entities in _by_reader(creates):
        check_links(conn, kind, entities, actor, is_sqlite=is_sqlite)
