"""Entity storage with the access rule applied: create-or-modify, get, delete, share, list.

Every write runs in one transaction that updates the entity row, its terms and readers, and appends its
event to the outbox, so no write ever escapes the log. Reading or writing an entity the actor may not read is
a NotFoundError, exactly as if it did not exist.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple, NoReturn

import asyncpg
from pydantic.alias_generators import to_camel
from sqlalchemy import (
    BigInteger,
    Connection,
    Dialect,
    Integer,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from medstream.access import Actor, check_user_write, initial_readers
from medstream.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from medstream.events.types import EventType
from medstream.model.common import Delegation, Entity, SystemMetaData
from medstream.model.entities import EntityKind
from medstream.model.ids import new_entity_id, random_hex
from medstream.model.user import User
from medstream.store import outbox
from medstream.store.database import Database, insert_tables, sqlite_execute
from medstream.store.pg_creates import Link, create_statement, link_states
from medstream.store.queries import readable_clause
from medstream.store.schema import ENTITY_TABLES, KIND_COLUMNS, entity_readers, entity_terms, terms_of
from medstream.store.schema import outbox as outbox_table
from medstream.store.writes import MergeableWrite, Statement

# Kinds whose `patient_id` links to a patient the writer must be able to read; True when the link is required.
_PATIENT_LINKS = {"DataSample": True, "HealthcareElement": False}
# A patient delete's lock on the tables of the kinds that link to patients (PostgreSQL): it conflicts with the
# ROW EXCLUSIVE lock of every write to them, and with itself, so two patient deletes take turns.
_HOLD_OFF_PATIENT_LINKS = (
    f"LOCK TABLE {', '.join(ENTITY_TABLES[name].name for name in sorted(_PATIENT_LINKS))} IN SHARE ROW EXCLUSIVE MODE"
)
_DATA_OWNER_KINDS = ("HealthcareProfessional", "Patient", "MedicalDevice")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _next_rev(rev: str | None) -> str:
    generation = int(rev.split("-", 1)[0]) + 1 if rev else 1
    return f"{generation}-{random_hex(16)}"


def _column_value(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


@dataclass(frozen=True, slots=True)
class Stored:
    """An entity as a write stored it, with its JSON (what `entity.to_json()` gives), serialised once."""

    entity: Entity
    json: bytes


@dataclass
class _Write:
    """One entity to store and the event it produces."""

    entity: Entity
    event_type: EventType
    is_new: bool
    password_hash: str | None = None


@dataclass(frozen=True, slots=True)
class _WriteRows:
    """What one write stores: its entity row (with the document), terms, readers and event."""

    write: _Write
    row: dict[str, Any]
    terms: list[dict[str, Any]]
    readers: list[dict[str, Any]]
    event: outbox.PendingEvent
    document: bytes


class EntityRepository:
    """Reads and writes entities of every kind for an actor."""

    def __init__(self, database: Database) -> None:
        self.database = database

    # -- writes ------------------------------------------------------------------------------------------

    async def create_or_modify(
        self,
        kind: EntityKind,
        entities: Sequence[Entity],
        actor: Actor,
        *,
        password_hashes: Sequence[str | None] | None = None,
    ) -> list[Entity]:
        """Create entities without `rev`, update those with one; all or nothing. A stale `rev`, or no `rev`
        for an id that exists, is a ConflictError that changes nothing."""
        stored = await self.create_or_modify_stored(kind, entities, actor, password_hashes=password_hashes)
        return [s.entity for s in stored]

    async def create_or_modify_stored(
        self,
        kind: EntityKind,
        entities: Sequence[Entity],
        actor: Actor,
        *,
        password_hashes: Sequence[str | None] | None = None,
    ) -> list[Stored]:
        """`create_or_modify`, returning each entity with its JSON as stored."""
        hashes = list(password_hashes) if password_hashes is not None else [None] * len(entities)
        ids = [entity.id or new_entity_id() for entity in entities]
        for entity in entities:
            if entity.id is None and entity.rev is not None:
                raise ValidationError("an entity with a rev must also have its id")
        if len(set(ids)) != len(ids):
            raise ValidationError("the same id appears more than once in one batch")
        table = ENTITY_TABLES[kind.name]
        now = now_ms()

        # Only ids the client chose can exist already: those made here are new random UUIDs (and the primary
        # key would refuse a duplicate all the same).
        chosen = [entity.id for entity in entities if entity.id is not None]

        # Entities whose id is made here are new: what they store is built now, on the caller's side, and the
        # writer thread, which every write of this process waits for, only runs their statements.
        prepared: dict[int, _WriteRows] = {
            index: self._rows_of(kind, self._prepare_create(kind, ids[index], entity, actor, now, hashes[index]))
            for index, entity in enumerate(entities)
            if entity.id is None
        }

        if not chosen:  # all new: the rows are built, only the patient check and the inserts are left
            return await self.database.run_write(_Creates(self, kind, actor, list(prepared.values())))

        def transaction(conn: Connection) -> list[Stored]:
            existing = self._rows_by_id(conn, table, chosen, lock=True)
            writes: list[_WriteRows] = []
            for index, (entity_id, entity, password_hash) in enumerate(zip(ids, entities, hashes, strict=True)):
                ready = prepared.get(index)
                if ready is not None:
                    writes.append(ready)
                    continue
                row = existing.get(entity_id)
                if row is None:
                    write = self._prepare_create(kind, entity_id, entity, actor, now, password_hash)
                else:
                    write = self._prepare_update(kind, row, entity, actor, now, password_hash)
                writes.append(self._rows_of(kind, write))
            self._check_links(conn, kind, [w.write.entity for w in writes], actor)
            self._store_rows(conn, kind, writes)
            return [Stored(w.write.entity, w.document) for w in writes]

        return await self.database.run_write(transaction)

    def _prepare_create(
        self,
        kind: EntityKind,
        entity_id: str,
        entity: Entity,
        actor: Actor,
        now: int,
        password_hash: str | None,
    ) -> _Write:
        if entity.rev is not None:
            raise NotFoundError(f"no {kind.name} with id {entity_id} to update")
        linked_owner = entity.data_owner_id if isinstance(entity, User) else None
        if isinstance(entity, User):
            check_user_write(actor, entity, None)
        readers = initial_readers(actor, entity_id, is_data_owner=kind.is_data_owner, linked_owner=linked_owner)
        stored = entity.model_copy(
            update={
                "id": entity_id,
                "rev": _next_rev(None),
                "created": now,
                "modified": now,
                "author": actor.user_id,
                "responsible": entity.responsible or actor.data_owner_id,
                "deletion_date": None,
                "system_meta_data": _delegations(frozenset(readers), granted_by=actor.data_owner_id),
            }
        )
        return _Write(stored, EventType.CREATE, is_new=True, password_hash=password_hash)

    def _prepare_update(
        self,
        kind: EntityKind,
        row: _EntityRow,
        entity: Entity,
        actor: Actor,
        now: int,
        password_hash: str | None,
    ) -> _Write:
        current = kind.model.model_validate_json(row.document)
        if not actor.can_read(current.readers):
            if entity.rev is None:
                raise ConflictError(f"a {kind.name} with id {row.id} already exists")
            raise NotFoundError(f"no {kind.name} with id {row.id}")
        if entity.rev is None:
            raise ConflictError(f"a {kind.name} with id {row.id} already exists; send its rev to modify it")
        if entity.rev != row.rev:
            raise ConflictError(f"stale rev for {kind.name} {row.id}: sent {entity.rev}, current is {row.rev}")
        if row.deleted is not None:
            raise ConflictError(f"{kind.name} {row.id} was deleted; it cannot be modified")
        metadata = current.system_meta_data or SystemMetaData()
        if isinstance(entity, User):
            assert isinstance(current, User)
            check_user_write(actor, entity, current)
            if entity.data_owner_id is not None and entity.data_owner_id not in metadata.delegations:
                metadata = _with_reader(metadata, entity.data_owner_id, granted_by=actor.data_owner_id)
        stored = entity.model_copy(
            update={
                "rev": _next_rev(row.rev),
                "created": current.created,
                "modified": now,
                "author": current.author,
                "responsible": entity.responsible or current.responsible,
                "deletion_date": None,
                "system_meta_data": metadata,
            }
        )
        return _Write(stored, EventType.UPDATE, is_new=False, password_hash=password_hash)

    async def delete(self, kind: EntityKind, ids: Sequence[str], actor: Actor) -> list[Entity]:
        """Soft-delete: each entity becomes a tombstone with `deletion_date`. Deleting a tombstone again
        returns it unchanged. All or nothing: one unknown or unreadable id fails the whole call."""
        if kind.name == "User" and not actor.is_admin:
            raise ForbiddenError("only an admin may delete users")
        if len(set(ids)) != len(ids):
            raise ValidationError("the same id appears more than once in one batch")
        table = ENTITY_TABLES[kind.name]
        now = now_ms()

        def transaction(conn: Connection) -> list[Entity]:
            rows = self._rows_by_id(conn, table, ids, lock=True)
            if kind.name == "Patient" and not self.database.is_sqlite:
                # A create of one statement locks no patient row (store/pg_creates.py): this waits for those in
                # progress and holds off new ones until the delete commits. Taken after the patients' row locks:
                # a write in a transaction holds its patient's share lock while it goes on to write its table, so
                # a delete that held this lock while waiting for that row would deadlock with it.
                conn.exec_driver_sql(_HOLD_OFF_PATIENT_LINKS)
            results: list[Entity] = []
            writes: list[_Write] = []
            for entity_id in ids:
                current = self._readable(kind, rows.get(entity_id), entity_id, actor)
                if current.is_deleted:
                    results.append(current)
                    continue
                tombstone = current.model_copy(
                    update={"rev": _next_rev(current.rev), "modified": now, "deletion_date": now}
                )
                writes.append(_Write(tombstone, EventType.DELETE, is_new=False))
                results.append(tombstone)
            self._store(conn, kind, writes)
            return results

        return await self.database.run_write(transaction)

    async def give_access(self, kind: EntityKind, entity_id: str, data_owner_id: str, actor: Actor) -> Entity:
        """Share an entity with another data owner; sharing it again changes nothing."""
        if kind.name == "User" and not actor.is_admin:
            raise ForbiddenError("only an admin may share users")
        table = ENTITY_TABLES[kind.name]

        def transaction(conn: Connection) -> Entity:
            rows = self._rows_by_id(conn, table, [entity_id], lock=True)
            current = self._readable(kind, rows.get(entity_id), entity_id, actor)
            if current.is_deleted:
                raise ConflictError(f"{kind.name} {entity_id} was deleted; it cannot be shared")
            if not self._data_owner_exists(conn, data_owner_id):
                raise NotFoundError(f"no data owner with id {data_owner_id}")
            if data_owner_id in current.readers:
                return current
            shared = current.model_copy(
                update={
                    "rev": _next_rev(current.rev),
                    "modified": now_ms(),
                    "system_meta_data": _with_reader(
                        current.system_meta_data or SystemMetaData(), data_owner_id, actor.data_owner_id
                    ),
                }
            )
            self._store(conn, kind, [_Write(shared, EventType.UPDATE, is_new=False)])
            return shared

        return await self.database.run_write(transaction)

    # -- reads -------------------------------------------------------------------------------------------

    async def get(self, kind: EntityKind, entity_id: str, actor: Actor) -> Entity:
        """The entity (a tombstone if deleted); NotFoundError if it does not exist or the actor cannot read it."""
        rows = await self._read_rows(ENTITY_TABLES[kind.name], [entity_id])
        return self._readable(kind, rows.get(entity_id), entity_id, actor)

    async def get_many(self, kind: EntityKind, ids: Sequence[str], actor: Actor) -> list[Entity]:
        """The readable entities among `ids`, in the order asked; others are left out."""
        rows = await self._read_rows(ENTITY_TABLES[kind.name], list(dict.fromkeys(ids)))
        found: list[Entity] = []
        for entity_id in dict.fromkeys(ids):
            row = rows.get(entity_id)
            if row is not None:
                entity = kind.model.model_validate_json(row.document)
                if actor.can_read(entity.readers):
                    found.append(entity)
        return found

    async def list_readable(
        self, kind: EntityKind, actor: Actor, *, start_after: str | None = None, limit: int = 1000
    ) -> list[Entity]:
        """Live (not deleted) entities the actor may read, ordered by id, after `start_after`."""
        table = ENTITY_TABLES[kind.name]
        query = select(table.c.document).where(table.c.deleted.is_(None)).order_by(table.c.id).limit(limit)
        if start_after is not None:
            query = query.where(table.c.id > start_after)
        if not actor.is_admin and actor.data_owner_id is None:
            return []
        readable = readable_clause(kind, actor, check_only=True)
        if readable is not None:
            query = query.where(readable)
        documents = await self.database.run_read(lambda conn: [document for (document,) in conn.execute(query)])
        return [kind.model.model_validate_json(document) for document in documents]

    async def find_user_by_login(self, login: str) -> tuple[User, str | None] | None:
        """A live user and its password hash, by login (for authentication only)."""
        table = ENTITY_TABLES["User"]
        query = select(table.c.document, table.c.password_hash).where(table.c.login == login, table.c.deleted.is_(None))
        row = await self.database.run_read(lambda conn: conn.execute(query).one_or_none())
        if row is None:
            return None
        return User.model_validate_json(row.document), row.password_hash

    async def find_user(self, user_id: str) -> User | None:
        """A live user by id, whatever the caller may read (for authentication only)."""
        rows = await self._read_rows(ENTITY_TABLES["User"], [user_id])
        row = rows.get(user_id)
        if row is None or row.deleted is not None:
            return None
        return User.model_validate_json(row.document)

    # -- helpers -----------------------------------------------------------------------------------------

    def _readable(self, kind: EntityKind, row: _EntityRow | None, entity_id: str, actor: Actor) -> Entity:
        if row is not None:
            entity = kind.model.model_validate_json(row.document)
            if actor.can_read(entity.readers):
                return entity
        raise NotFoundError(f"no {kind.name} with id {entity_id}")

    async def _read_rows(self, table: Table, ids: Sequence[str]) -> dict[str, _EntityRow]:
        return await self.database.run_read(lambda conn: self._rows_by_id(conn, table, ids))

    def _rows_by_id(
        self, conn: Connection, table: Table, ids: Sequence[str], *, lock: bool = False
    ) -> dict[str, _EntityRow]:
        """The rows with these ids. With `lock`, for a write that checks then replaces them: on PostgreSQL
        (READ COMMITTED) they are locked until the transaction ends, so that a concurrent writer waits and
        then sees the new rev (else both pass the rev check and one update is lost), and always in id byte
        order, so that two batches never deadlock. SQLite's writers are already serialised."""
        lock = lock and not self.database.is_sqlite
        if lock:
            ids = sorted(ids)
        rows: dict[str, _EntityRow] = {}
        if len(ids) == 1:  # the common case, and a plain equality is cheaper to run than an expanding IN
            found: Iterable[Sequence[Any]]
            if self.database.is_sqlite:
                found = sqlite_execute(conn, _row_sql(conn.dialect, table), (ids[0],))
            else:
                found = conn.execute(_row_query(table, lock), {"id": ids[0]})
            rows.update((row[0], _EntityRow(*row)) for row in found)
            return rows
        query = _rows_query(table, lock)
        for start in range(0, len(ids), 500):
            result = conn.execute(query, {"ids": ids[start : start + 500]})
            rows.update((row[0], _EntityRow(*row)) for row in result)
        return rows

    def _data_owner_exists(self, conn: Connection, data_owner_id: str) -> bool:
        for name in _DATA_OWNER_KINDS:
            table = ENTITY_TABLES[name]
            query = select(table.c.id).where(table.c.id == data_owner_id, table.c.deleted.is_(None))
            if conn.execute(query).first() is not None:
                return True
        return False

    def _check_links(self, conn: Connection, kind: EntityKind, entities: list[Entity], actor: Actor) -> None:
        """A data sample (or a healthcare element that names one) must link to a patient the writer can read."""
        wanted = _linked_patients(kind, entities)
        if wanted:
            _raise_for_links(wanted, self._patients_for(conn, wanted, actor))

    def _check_links_of_many(self, conn: Connection, kind: EntityKind, creates: Sequence[_Creates]) -> None:
        """`_check_links` for the entities of several writes at once: one patient query per data owner."""
        if kind.name not in _PATIENT_LINKS:
            return
        for actor, entities in _by_reader(creates):
            self._check_links(conn, kind, entities, actor)

    def _patients_for(self, conn: Connection, ids: list[str], actor: Actor) -> dict[str, tuple[int | None, bool]]:
        """Per existing patient among `ids`: when it was deleted (None if not), and whether `actor` may read it,
        from its readers rows (kept with its document in every write) rather than by parsing the document."""
        if not ids:
            return {}
        owner = None if actor.is_admin else actor.data_owner_id
        if owner is None and not actor.is_admin:
            return {}
        rows: list[Any]
        if self.database.is_sqlite:
            rows = []
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows.extend(sqlite_execute(conn, _patient_access_sqlite(len(chunk)), (owner, *chunk)))
        elif len(ids) > 1:
            rows = list(conn.execute(_PATIENT_ACCESS, {"owner": owner, "ids": ids}))
        else:  # one id: a plain equality, compiled once (an expanding IN is compiled again at every call)
            rows = list(conn.execute(_PATIENT_ACCESS_ONE, {"owner": owner, "id": ids[0]}))
        return {patient_id: (deleted, actor.is_admin or bool(readable)) for patient_id, deleted, readable in rows}

    def _store(self, conn: Connection, kind: EntityKind, writes: list[_Write]) -> None:
        """Write rows, terms, readers and events for `writes`."""
        self._store_rows(conn, kind, [self._rows_of(kind, w) for w in writes])

    def _rows_of(self, kind: EntityKind, write: _Write) -> _WriteRows:
        """What `write` stores, built without the database; ValidationError for a value no column can hold."""
        entity = write.entity
        table = ENTITY_TABLES[kind.name]
        row = self._row(kind, write)
        _check_storable(kind, str(row["id"]), table, row)
        terms = []
        for t, k, v in set(terms_of(entity)):
            # The term's key and value are the entity's; its type, id and term are checked or fixed already.
            _check_storable(kind, str(entity.id), entity_terms, {"key": k, "value": v}, field=_TERM_FIELDS[t])
            terms.append({"entity_type": kind.name, "entity_id": entity.id, "term": t, "key": k, "value": v})
        document = entity.to_json()  # integers and nesting are bounded by the model's validation
        row["document"] = document.decode()
        reader_ids = entity.readers
        readers = [{"entity_type": kind.name, "entity_id": entity.id, "data_owner_id": r} for r in reader_ids]
        event = outbox.PendingEvent(
            entity_type=kind.name,
            entity_id=str(entity.id),
            rev=str(entity.rev),
            event_type=write.event_type,
            document=row["document"],
            readers=reader_ids,
            created=int(entity.modified or now_ms()),
            entity=entity,
        )
        return _WriteRows(write, row, terms, readers, event, document)

    def _store_rows(self, conn: Connection, kind: EntityKind, writes: list[_WriteRows]) -> None:
        """Write what `_rows_of` built (the inserts in one statement on PostgreSQL, one per table on SQLite)."""
        if not writes:
            return
        table = ENTITY_TABLES[kind.name]
        changed = [w for w in writes if not w.write.is_new]
        try:
            for w in changed:
                values = {k: v for k, v in w.row.items() if k != "id" and not (k == "password_hash" and v is None)}
                conn.execute(update(table).where(table.c.id == w.write.entity.id).values(values))
            if changed:
                ids = [w.write.entity.id for w in changed]
                conn.execute(
                    delete(entity_terms).where(
                        entity_terms.c.entity_type == kind.name, entity_terms.c.entity_id.in_(ids)
                    )
                )
                conn.execute(
                    delete(entity_readers).where(
                        and_(entity_readers.c.entity_type == kind.name, entity_readers.c.entity_id.in_(ids))
                    )
                )
            # After the deletes: a modified entity's terms and readers are replaced, not added to.
            event_rows = outbox.event_rows(conn, [w.event for w in writes], assign_seq=self.database.is_sqlite)
            insert_tables(conn, _inserts(kind, writes, event_rows))
        except IntegrityError as exc:
            raise ConflictError(_integrity_message(kind, exc)) from exc

    def _row(self, kind: EntityKind, write: _Write) -> dict[str, Any]:
        """The entity's row, but for its `document`."""
        entity = write.entity
        row: dict[str, Any] = {
            "id": entity.id,
            "rev": entity.rev,
            "created": entity.created,
            "modified": entity.modified,
            "deleted": entity.deletion_date,
        }
        for column in KIND_COLUMNS[kind.name]:
            row[column.name] = _column_value(column.extract(entity))
        if isinstance(entity, User):
            # A deleted user's login is free again: its tombstone keeps the login in its document only.
            row["login"] = None if entity.is_deleted else entity.login
            row["password_hash"] = write.password_hash
        return row


_MERGE_MAX_ENTITIES = 100  # a write of more entities runs alone: merging it saves little and delays the others


class _Creates(MergeableWrite[list[Stored]]):
    """A write of new entities whose rows are built (`_rows_of`): it only checks the patients they link to and
    inserts. Creates of one kind by any actors merge (database.MergeableWrite): none of them can change what
    another's check reads, since a kind's entities never link to their own kind."""

    def __init__(self, repository: EntityRepository, kind: EntityKind, actor: Actor, writes: list[_WriteRows]):
        self.repository = repository
        self.kind = kind
        self.actor = actor
        self.writes = writes

    @property
    def merge_key(self) -> Hashable | None:
        if len(self.writes) > _MERGE_MAX_ENTITIES:
            return None
        return (id(self.repository), self.kind.name)

    def __call__(self, conn: Connection) -> list[Stored]:
        self.repository._check_links(conn, self.kind, [w.write.entity for w in self.writes], self.actor)
        self.repository._store_rows(conn, self.kind, self.writes)
        return [Stored(w.write.entity, w.document) for w in self.writes]

    @classmethod
    def run_merged(cls, conn: Connection, writes: Sequence[_Creates]) -> list[list[Stored]]:
        first = writes[0]
        first.repository._check_links_of_many(conn, first.kind, writes)
        first.repository._store_rows(conn, first.kind, [w for create in writes for w in create.writes])
        return [[Stored(w.write.entity, w.document) for w in create.writes] for create in writes]

    @classmethod
    def pg_statement(cls, writes: Sequence[_Creates], dialect: Any) -> Statement[list[list[Stored]]] | None:
        """The patient check and the inserts in one statement (pg_creates), with `run_merged`'s outcome."""
        kind = writes[0].kind
        checks: list[tuple[list[str], list[Link]]] = []  # per data owner, as _check_links_of_many checks them
        if kind.name in _PATIENT_LINKS:
            for actor, entities in _by_reader(writes):
                wanted = _linked_patients(kind, entities)
                owner = None if actor.is_admin else actor.data_owner_id
                checks.append((wanted, [Link(patient_id, owner, actor.is_admin) for patient_id in wanted]))
        rows = [w for create in writes for w in create.writes]
        built = create_statement(
            dialect,
            _inserts(kind, rows, [outbox.event_row(w.event) for w in rows]),
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
                _raise_for_links(wanted, found)
            return [[Stored(w.write.entity, w.document) for w in create.writes] for create in writes]

        def failure(error: Exception) -> BaseException | None:
            if isinstance(error, asyncpg.IntegrityConstraintViolationError):
                return ConflictError(_integrity_message(kind, error))
            return None

        sql, args = built
        return Statement(sql, args, result, failure)


def _inserts(
    kind: EntityKind, writes: Sequence[_WriteRows], event_rows: list[dict[str, Any]]
) -> list[tuple[Table, list[dict[str, Any]]]]:
    """The INSERTs that `writes` need, table by table: their new entity rows, terms, readers and `event_rows`."""
    # Every table keyed by entity in id order, like the locks of _rows_by_id, so that two batches creating the
    # same ids never deadlock: on PostgreSQL the inserts are one statement whose tables are written in no set
    # order, so sorting the entity rows alone left the readers and terms to meet in opposite orders. The
    # events keep the batch's order.
    in_id_order = sorted(writes, key=lambda w: str(w.row["id"]))
    return [
        (ENTITY_TABLES[kind.name], [w.row for w in in_id_order if w.write.is_new]),
        (entity_terms, [term for w in in_id_order for term in w.terms]),
        (entity_readers, [reader for w in in_id_order for reader in w.readers]),
        (outbox_table, event_rows),
    ]


def _by_reader(creates: Sequence[_Creates]) -> list[tuple[Actor, list[Entity]]]:
    """The entities of `creates` by the data owner that writes them (admins together), in order."""
    by_reader: dict[tuple[bool, str | None], tuple[Actor, list[Entity]]] = {}
    for create in creates:
        actor = create.actor
        _actor, entities = by_reader.setdefault((actor.is_admin, actor.data_owner_id), (actor, []))
        entities.extend(w.write.entity for w in create.writes)
    return list(by_reader.values())


def _linked_patients(kind: EntityKind, entities: Sequence[Entity]) -> list[str]:
    """The patients `entities` link to, sorted; ValidationError if one of a kind that must link does not."""
    required = _PATIENT_LINKS.get(kind.name)
    if required is None:
        return []
    patient_ids = {getattr(e, "patient_id", None) for e in entities}
    if None in patient_ids and required:
        raise ValidationError(f"a {kind.name} needs a patientId: create it with POST /patients/{{id}}/data-samples")
    return sorted(p for p in patient_ids if p is not None)


def _raise_for_links(wanted: list[str], found: dict[str, tuple[int | None, bool]]) -> None:
    """NotFoundError for the first of `wanted` that the writer cannot read (or that does not exist), ConflictError
    if it was deleted; `found` holds (deleted, readable) per existing patient."""
    for patient_id in wanted:
        deleted, readable = found.get(patient_id, (None, False))
        if not readable:
            raise NotFoundError(f"no Patient with id {patient_id}")
        if deleted is not None:
            raise ConflictError(f"patient {patient_id} was deleted")


class _EntityRow(NamedTuple):
    id: str
    rev: str
    document: str
    deleted: int | None


@functools.cache
def _row_sql(dialect: Dialect, table: Table) -> str:
    """`_row_query` for SQLite's driver (database.sqlite_execute)."""
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
_PATIENT_ACCESS = (
    _PATIENT_ACCESS_COLUMNS.where(_PATIENTS.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_PATIENTS.c.id.collate("C"))
    .with_for_update(read=True, of=_PATIENTS)
)
_PATIENT_ACCESS_ONE = _PATIENT_ACCESS_COLUMNS.where(_PATIENTS.c.id == bindparam("id")).with_for_update(
    read=True, of=_PATIENTS
)


@functools.lru_cache(maxsize=64)
def _patient_access_sqlite(count: int) -> str:
    """`_PATIENT_ACCESS` for SQLite's driver, for `count` ids."""
    where = "id = ?" if count == 1 else f"id IN ({', '.join('?' * count)})"
    return (
        "SELECT id, deleted, EXISTS (SELECT 1 FROM entity_readers WHERE entity_type = 'Patient'"
        f" AND data_owner_id = ? AND entity_id = patients.id) FROM patients WHERE {where}"
    )


@functools.cache
def _row_query(table: Table, lock: bool) -> Select[Any]:
    query = select(table.c.id, table.c.rev, table.c.document, table.c.deleted).where(table.c.id == bindparam("id"))
    return query.with_for_update() if lock else query


@functools.cache
def _rows_query(table: Table, lock: bool) -> Select[Any]:
    """The statement `_rows_by_id` runs, built once per table (ids are an expanding parameter)."""
    query = select(table.c.id, table.c.rev, table.c.document, table.c.deleted).where(
        table.c.id.in_(bindparam("ids", expanding=True))
    )
    if lock:
        query = query.order_by(table.c.id.collate("C")).with_for_update()
    return query


_INT_BITS: dict[type[Any], int] = {Integer: 32, BigInteger: 64}
_TERM_FIELDS = {
    "label": "labels",
    "code": "codes",
    "identifier": "identifiers",
    "healthcare_element": "healthcareElementIds",
}


def _field_of_column(column: str) -> str:
    return "a name (firstName, lastName, names...)" if column == "search_name" else to_camel(column)


def _check_storable(
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


@functools.lru_cache(maxsize=1024)
def _delegations(readers: frozenset[str], granted_by: str | None) -> SystemMetaData:
    """Shared by the entities of a batch (and beyond): building it was a sixth of a batch write's time. Never
    mutated: `_with_reader` builds a new one."""
    return SystemMetaData(delegations={r: Delegation(owner=granted_by, delegated_to=r) for r in sorted(readers)})


def _with_reader(metadata: SystemMetaData, data_owner_id: str, granted_by: str | None) -> SystemMetaData:
    delegations = dict(metadata.delegations)
    delegations[data_owner_id] = Delegation(owner=granted_by, delegated_to=data_owner_id)
    return SystemMetaData(delegations=delegations)


def _integrity_message(kind: EntityKind, exc: Exception) -> str:
    text = str(getattr(exc, "orig", exc)).lower()
    if "login" in text:
        return "a user with this login already exists"
    return f"a {kind.name} with one of these ids already exists"


__all__ = ["EntityRepository", "Stored", "now_ms"]
