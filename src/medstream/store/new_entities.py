"""A write of new entities with no id chosen by the client (`Creates`): its rows are built before it runs, and
it only checks the patients they link to and inserts. Such writes of one kind merge
(`transactions.MergeableWrite`), and on PostgreSQL run as one statement (`postgresql.creates`)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from sqlalchemy import Connection

from medstream.access import Actor
from medstream.model.common import Entity
from medstream.model.entities import EntityKind
from medstream.store.backend import Backend
from medstream.store.database import Database
from medstream.store.patient_links import PATIENT_LINKS, check_links
from medstream.store.postgresql.creates import creates_statement
from medstream.store.revisions import Stored, WriteRows, store_rows
from medstream.store.transactions import MergeableWrite, Statement

_MERGE_MAX_ENTITIES = 100  # a write of more entities runs alone: merging it saves little and delays the others


class Creates(MergeableWrite[list[Stored]]):
    """A write of new entities whose rows are built (`revisions.rows_of`): it only checks the patients they
    link to and inserts. Creates of one kind by any actors merge (`transactions.MergeableWrite`): none of them can
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
        backend = self.database.backend
        check_links(conn, self.kind, [w.write.entity for w in self.writes], self.actor, backend)
        store_rows(conn, self.kind, self.writes, backend)
        return [Stored(w.write.entity, w.document) for w in self.writes]

    @classmethod
    def run_merged(cls, conn: Connection, writes: Sequence[Creates]) -> list[list[Stored]]:
        first = writes[0]
        backend = first.database.backend
        _check_links_of_many(conn, first.kind, writes, backend)
        store_rows(conn, first.kind, [w for create in writes for w in create.writes], backend)
        return [[Stored(w.write.entity, w.document) for w in create.writes] for create in writes]

    @classmethod
    def pg_statement(cls, writes: Sequence[Creates], dialect: Any) -> Statement[list[list[Stored]]] | None:
        """The patient check and the inserts in one statement, with `run_merged`'s outcome."""
        kind = writes[0].kind
        readers = _by_reader(writes) if kind.name in PATIENT_LINKS else []
        return creates_statement(dialect, kind, readers, [create.writes for create in writes])


def _by_reader(creates: Sequence[Creates]) -> list[tuple[Actor, list[Entity]]]:
    """The entities of `creates` by the data owner that writes them (admins together), in order."""
    by_reader: dict[tuple[bool, str | None], tuple[Actor, list[Entity]]] = {}
    for create in creates:
        actor = create.actor
        _actor, entities = by_reader.setdefault((actor.is_admin, actor.data_owner_id), (actor, []))
        entities.extend(w.write.entity for w in create.writes)
    return list(by_reader.values())


def _check_links_of_many(conn: Connection, kind: EntityKind, creates: Sequence[Creates], backend: Backend) -> None:
    """`check_links` for the entities of several writes at once: one patient query per data owner."""
    if kind.name not in PATIENT_LINKS:
        return
    for actor, entities in _by_reader(creates):
        check_links(conn, kind, entities, actor, backend)
