"""Entity storage with the access rule applied: create-or-modify, get, delete, share, list.

Every write runs in one transaction that updates the entity row, its terms and readers, and appends its
event to the outbox, so no write ever escapes the log. Reading or writing an entity the actor may not read is
a NotFoundError, exactly as if it did not exist.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

from sqlalchemy import Connection, Table, select

from medstream.access import Actor
from medstream.delegations import EMPTY, check_can_write, check_sharable, with_access, without_access
from medstream.errors import ConflictError, ForbiddenError, MedstreamError, NotFoundError, ValidationError
from medstream.events.types import EventType
from medstream.model.common import Entity
from medstream.model.entities import KIND_BY_NAME, EntityKind
from medstream.model.ids import new_entity_id
from medstream.model.security import SecurityMetadata, document_readers
from medstream.model.user import User
from medstream.store.database import Database
from medstream.store.entity_rows import EntityRow
from medstream.store.new_entities import Creates
from medstream.store.patient_links import check_links
from medstream.store.queries import readable_clause
from medstream.store.revisions import (
    Stored,
    Write,
    WriteRows,
    next_rev,
    now_ms,
    prepare_create,
    prepare_update,
    rows_of,
    store_rows,
)
from medstream.store.schema import ENTITY_TABLES
from medstream.store.user_changes import UserChange, apply_user_changes

_DATA_OWNER_KINDS = ("HealthcareProfessional", "Patient", "MedicalDevice")


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
        prepared: dict[int, WriteRows] = {
            index: rows_of(kind, prepare_create(kind, ids[index], entity, actor, now, hashes[index]))
            for index, entity in enumerate(entities)
            if entity.id is None
        }

        if not chosen:  # all new: the rows are built, only the patient check and the inserts are left
            return await self.database.run_write(Creates(self.database, kind, actor, list(prepared.values())))

        if all(entity.rev is None for entity in entities):
            # Creates with ids the client chose (an encrypting client chooses them: the id is bound into the
            # ciphertext): built here and inserted as new, in one statement, without reading first. When that is
            # refused (by a check of a new entity, its patient's, or the primary key for an id that exists), the
            # write runs as a create-or-modify below, which reads the ids first and so answers as it always does
            # (409 for an id that exists, 404 for an entity the actor may not read, before any check of a new
            # entity); nothing of the first attempt is stored.
            built: list[WriteRows] | None
            try:
                built = [
                    prepared[index]
                    if index in prepared
                    else rows_of(kind, prepare_create(kind, ids[index], entity, actor, now, hashes[index]))
                    for index, entity in enumerate(entities)
                ]
            except MedstreamError:
                built = None
            if built is not None:
                # The refusals of a create: none of them stored anything, and the id may exist.
                with contextlib.suppress(ConflictError, NotFoundError, ValidationError, ForbiddenError):
                    return await self.database.run_write(Creates(self.database, kind, actor, built))

        def transaction(conn: Connection) -> list[Stored]:
            existing = self._rows_by_id(conn, table, chosen, lock=True)
            writes: list[WriteRows] = []
            for index, (entity_id, entity, password_hash) in enumerate(zip(ids, entities, hashes, strict=True)):
                ready = prepared.get(index)
                if ready is not None:
                    writes.append(ready)
                    continue
                row = existing.get(entity_id)
                if row is None:
                    write = prepare_create(kind, entity_id, entity, actor, now, password_hash)
                else:
                    write = prepare_update(kind, row, entity, actor, now, password_hash)
                writes.append(rows_of(kind, write))
            backend = self.database.backend
            check_links(conn, kind, [w.write.entity for w in writes], actor, backend)
            store_rows(conn, kind, writes, backend)
            if kind.name == "User":
                apply_user_changes(conn, _user_changes(existing, [w.write for w in writes]))
            return [Stored(w.write.entity, w.document) for w in writes]

        return await self.database.run_write(transaction)

    async def create_or_modify_together(
        self,
        batches: Sequence[tuple[EntityKind, Sequence[Entity]]],
        actor: Actor,
        *,
        deletions: Sequence[tuple[EntityKind, Sequence[str]]] = (),
    ) -> list[list[Stored]]:
        """`create_or_modify` of entities of several kinds (not users) in one transaction, all or nothing: a
        contact and its data samples. The batches are written in order, each as `create_or_modify` writes it;
        then the entities of `deletions` (not users or patients) are deleted as `delete` deletes them: the
        data samples of the services a modified contact no longer holds."""
        for kind, _ in deletions:
            if kind.name in ("User", "Patient"):
                raise ValidationError(f"{kind.name}s are deleted on their own")
        now = now_ms()
        plans: list[tuple[EntityKind, Sequence[Entity], list[str]]] = []
        for kind, entities in batches:
            if kind.name == "User":
                raise ValidationError("users are written on their own")
            for entity in entities:
                if entity.id is None and entity.rev is not None:
                    raise ValidationError("an entity with a rev must also have its id")
            ids = [entity.id or new_entity_id() for entity in entities]
            if len(set(ids)) != len(ids):
                raise ValidationError("the same id appears more than once in one batch")
            plans.append((kind, entities, ids))

        def transaction(conn: Connection) -> list[list[Stored]]:
            backend = self.database.backend
            results: list[list[Stored]] = []
            for kind, entities, ids in plans:
                chosen = [entity.id for entity in entities if entity.id is not None]
                existing = self._rows_by_id(conn, ENTITY_TABLES[kind.name], chosen, lock=True)
                writes: list[WriteRows] = []
                for entity_id, entity in zip(ids, entities, strict=True):
                    row = existing.get(entity_id)
                    if row is None:
                        write = prepare_create(kind, entity_id, entity, actor, now, None)
                    else:
                        write = prepare_update(kind, row, entity, actor, now, None)
                    writes.append(rows_of(kind, write))
                check_links(conn, kind, [w.write.entity for w in writes], actor, backend)
                store_rows(conn, kind, writes, backend)
                results.append([Stored(w.write.entity, w.document) for w in writes])
            for kind, deleted_ids in deletions:
                rows = self._rows_by_id(conn, ENTITY_TABLES[kind.name], deleted_ids, lock=True)
                self._store(conn, kind, self._tombstones(kind, rows, deleted_ids, actor, now)[1])
            return results

        return await self.database.run_write(transaction)

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
            if kind.name == "Patient":
                # Taken after the patients' row locks: a write in a transaction holds its patient's share lock
                # while it goes on to write its table, so a delete that held this lock while waiting for that
                # row would deadlock with it.
                self.database.backend.hold_off_patient_links(conn)
            results, writes = self._tombstones(kind, rows, ids, actor, now)
            self._store(conn, kind, writes)
            if kind.name == "User":
                apply_user_changes(conn, _user_changes(rows, writes))
            return results

        return await self.database.run_write(transaction)

    async def give_access(self, kind: EntityKind, entity_id: str, data_owner_id: str, actor: Actor) -> Entity:
        """Share an entity with another data owner (a server delegation from the actor's data owner); sharing
        it again changes nothing."""
        if kind.name == "User" and not actor.is_admin:
            raise ForbiddenError("only an admin may share users")

        def change(conn: Connection, current: Entity) -> SecurityMetadata:
            if not self._data_owner_exists(conn, data_owner_id):
                raise NotFoundError(f"no data owner with id {data_owner_id}")
            return with_access(current.security_metadata or EMPTY, actor, data_owner_id)

        return await self._change_access(kind, entity_id, actor, change, "shared")

    async def revoke_access(self, kind: EntityKind, entity_id: str, data_owner_id: str, actor: Actor) -> Entity:
        """Remove the actor's delegations to `data_owner_id` (an admin's: all of them). The entity and its
        events are no longer served to that data owner once no delegation names it; revoking what was never
        given changes nothing."""
        if kind.name == "User" and not actor.is_admin:
            raise ForbiddenError("only an admin may share users")

        def change(conn: Connection, current: Entity) -> SecurityMetadata:
            return without_access(current.security_metadata or EMPTY, actor, data_owner_id)

        return await self._change_access(kind, entity_id, actor, change, "unshared")

    async def _change_access(
        self,
        kind: EntityKind,
        entity_id: str,
        actor: Actor,
        change: Callable[[Connection, Entity], SecurityMetadata],
        verb: str,
    ) -> Entity:
        """A new revision of the entity with the metadata `change` makes (none when it makes no change)."""
        table = ENTITY_TABLES[kind.name]

        def transaction(conn: Connection) -> Entity:
            rows = self._rows_by_id(conn, table, [entity_id], lock=True)
            current = self._readable(kind, rows.get(entity_id), entity_id, actor)
            if current.is_deleted:
                raise ConflictError(f"{kind.name} {entity_id} was deleted; it cannot be {verb}")
            check_sharable(kind)
            metadata = change(conn, current)
            if metadata is current.security_metadata or metadata == (current.security_metadata or EMPTY):
                return current
            changed = current.model_copy(
                update={"rev": next_rev(current.rev), "modified": now_ms(), "security_metadata": metadata}
            )
            self._store(conn, kind, [Write(changed, EventType.UPDATE, is_new=False)])
            return changed

        return await self.database.run_write(transaction)

    # -- reads -------------------------------------------------------------------------------------------

    async def get(self, kind: EntityKind, entity_id: str, actor: Actor) -> Entity:
        """The entity (a tombstone if deleted); NotFoundError if it does not exist or the actor cannot read it."""
        rows = await self._read_rows(ENTITY_TABLES[kind.name], [entity_id])
        return self._readable(kind, rows.get(entity_id), entity_id, actor)

    async def get_json(self, kind: EntityKind, entity_id: str, actor: Actor) -> bytes:
        """`get`'s entity as the JSON its write stored (the entity's `to_json()`, as a write answers it and an
        event carries it), without building the entity to serialise it again."""
        rows = await self._read_rows(ENTITY_TABLES[kind.name], [entity_id])
        row = rows.get(entity_id)
        if row is not None and actor.can_read(document_readers(row.document)):
            return row.document.encode()
        raise NotFoundError(f"no {kind.name} with id {entity_id}")

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

    async def published_keys(self, data_owner_id: str) -> tuple[str, Entity] | None:
        """The live data owner `data_owner_id` and its kind's name, whoever asks: only its public key records
        leave the server (they are public: clients wrap keys for them and verify signatures with them)."""
        for name in _DATA_OWNER_KINDS:
            row = (await self._read_rows(ENTITY_TABLES[name], [data_owner_id])).get(data_owner_id)
            if row is not None and row.deleted is None:
                return name, KIND_BY_NAME[name].model.model_validate_json(row.document)
        return None

    async def find_user_by_login(self, login: str, *, with_disabled: bool = False) -> tuple[User, str | None] | None:
        """A live user and its password hash, by login (for authentication, which refuses a disabled user: it
        is left out unless `with_disabled`)."""
        table = ENTITY_TABLES["User"]
        query = select(table.c.document, table.c.password_hash).where(table.c.login == login, table.c.deleted.is_(None))
        row = await self.database.run_read(lambda conn: conn.execute(query).one_or_none())
        if row is None:
            return None
        user = User.model_validate_json(row.document)
        return None if user.disabled and not with_disabled else (user, row.password_hash)

    async def find_user(self, user_id: str) -> User | None:
        """A live user by id that is not disabled, whatever the caller may read (for authentication only)."""
        rows = await self._read_rows(ENTITY_TABLES["User"], [user_id])
        row = rows.get(user_id)
        if row is None or row.deleted is not None:
            return None
        user = User.model_validate_json(row.document)
        return None if user.disabled else user

    # -- helpers -----------------------------------------------------------------------------------------

    def _tombstones(
        self, kind: EntityKind, rows: dict[str, EntityRow], ids: Sequence[str], actor: Actor, now: int
    ) -> tuple[list[Entity], list[Write]]:
        """Each entity of `ids` as deleted (a tombstone already is, unchanged), and the writes that delete those
        that were not; NotFoundError for one the actor may not read, ForbiddenError for one it may not write."""
        results: list[Entity] = []
        writes: list[Write] = []
        for entity_id in ids:
            current = self._readable(kind, rows.get(entity_id), entity_id, actor)
            if current.is_deleted:
                results.append(current)
                continue
            check_can_write(kind, current, actor)
            tombstone = current.model_copy(update={"rev": next_rev(current.rev), "modified": now, "deletion_date": now})
            writes.append(Write(tombstone, EventType.DELETE, is_new=False))
            results.append(tombstone)
        return results, writes

    def _readable(self, kind: EntityKind, row: EntityRow | None, entity_id: str, actor: Actor) -> Entity:
        if row is not None:
            entity = kind.model.model_validate_json(row.document)
            if actor.can_read(entity.readers):
                return entity
        raise NotFoundError(f"no {kind.name} with id {entity_id}")

    async def _read_rows(self, table: Table, ids: Sequence[str]) -> dict[str, EntityRow]:
        return await self.database.run_read(lambda conn: self._rows_by_id(conn, table, ids))

    def _rows_by_id(
        self, conn: Connection, table: Table, ids: Sequence[str], *, lock: bool = False
    ) -> dict[str, EntityRow]:
        """The rows with these ids. With `lock`, for a write that checks then replaces them: no concurrent
        writer changes them until the transaction ends (else both pass the rev check and one update is lost)."""
        return self.database.backend.rows_by_id(conn, table, ids, lock=lock)

    def _data_owner_exists(self, conn: Connection, data_owner_id: str) -> bool:
        for name in _DATA_OWNER_KINDS:
            table = ENTITY_TABLES[name]
            query = select(table.c.id).where(table.c.id == data_owner_id, table.c.deleted.is_(None))
            if conn.execute(query).first() is not None:
                return True
        return False

    def _store(self, conn: Connection, kind: EntityKind, writes: list[Write]) -> None:
        """Write rows, terms, readers and events for `writes`."""
        store_rows(conn, kind, [rows_of(kind, w) for w in writes], self.database.backend)


def _user_changes(rows: dict[str, EntityRow], writes: Sequence[Write]) -> list[UserChange]:
    """The users among `writes` that existed (in `rows`), as they were and as the writes leave them."""
    changes: list[UserChange] = []
    for write in writes:
        row = rows.get(str(write.entity.id))
        if row is not None and isinstance(write.entity, User):
            current = User.model_validate_json(row.document)
            changes.append(UserChange(current, write.entity, new_password=write.password_hash is not None))
    return changes


__all__ = ["EntityRepository", "Stored", "now_ms"]
