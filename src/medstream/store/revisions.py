"""An entity's next revision as a write makes it (`prepare_create`, `prepare_update`), what the write stores,
built without the database (`rows_of`: the entity's row, terms, readers and event), and storing it
(`store_rows`, through the database's backend)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sqlalchemy import Connection, Table, and_, delete, update
from sqlalchemy.exc import IntegrityError

from medstream.access import Actor, check_user_write
from medstream.delegations import (
    check_actor_keys,
    check_can_write,
    check_crypto_keys,
    check_exchange_data,
    key_records,
    metadata_for_create,
    metadata_for_update,
)
from medstream.errors import ConflictError, NotFoundError
from medstream.events.types import EventType
from medstream.model.common import Entity
from medstream.model.entities import EntityKind
from medstream.model.exchange_data import ExchangeData
from medstream.model.ids import random_hex
from medstream.model.user import User
from medstream.store import outbox
from medstream.store.backend import Backend
from medstream.store.entity_rows import EntityRow
from medstream.store.schema import ENTITY_TABLES, KIND_COLUMNS, entity_readers, entity_terms, terms_of
from medstream.store.schema import outbox as outbox_table
from medstream.store.storable import TERM_FIELDS, check_storable, integrity_message


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def next_rev(rev: str | None) -> str:
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
class Write:
    """One entity to store and the event it produces."""

    entity: Entity
    event_type: EventType
    is_new: bool
    password_hash: str | None = None


@dataclass(frozen=True, slots=True)
class WriteRows:
    """What one write stores: its entity row (with the document), terms, readers and event."""

    write: Write
    row: dict[str, Any]
    terms: list[dict[str, Any]]
    readers: list[dict[str, Any]]
    event: outbox.PendingEvent
    document: bytes


def prepare_create(
    kind: EntityKind,
    entity_id: str,
    entity: Entity,
    actor: Actor,
    now: int,
    password_hash: str | None,
) -> Write:
    if entity.rev is not None:
        raise NotFoundError(f"no {kind.name} with id {entity_id} to update")
    if isinstance(entity, User):
        check_user_write(actor, entity, None)
    elif isinstance(entity, ExchangeData):
        check_exchange_data(entity, None, actor)
    elif kind.is_data_owner:
        check_crypto_keys(entity_id, key_records(entity), [], actor)
        check_actor_keys(entity_id, entity, None, actor)
    stored = entity.model_copy(
        update={
            "id": entity_id,
            "rev": next_rev(None),
            "created": now,
            "modified": now,
            "author": actor.user_id,
            "responsible": entity.responsible or actor.data_owner_id,
            "deletion_date": None,
            "security_metadata": metadata_for_create(kind, entity_id, entity, actor),
        }
    )
    return Write(stored, EventType.CREATE, is_new=True, password_hash=password_hash)


def prepare_update(
    kind: EntityKind,
    row: EntityRow,
    entity: Entity,
    actor: Actor,
    now: int,
    password_hash: str | None,
) -> Write:
    current = kind.model.model_validate_json(row.document)
    if not actor.can_read(current.readers):
        # With or without a rev, the answer for an entity the actor may not read, as for every read or write of
        # it: nothing tells what it is, and it is never overwritten.
        raise NotFoundError(f"no {kind.name} with id {row.id}")
    if entity.rev is None:
        raise ConflictError(f"a {kind.name} with id {row.id} already exists; send its rev to modify it")
    if entity.rev != row.rev:
        raise ConflictError(f"stale rev for {kind.name} {row.id}: sent {entity.rev}, current is {row.rev}")
    if row.deleted is not None:
        raise ConflictError(f"{kind.name} {row.id} was deleted; it cannot be modified")
    check_can_write(kind, current, actor)
    if isinstance(entity, User):
        assert isinstance(current, User)
        check_user_write(actor, entity, current)
    elif isinstance(entity, ExchangeData):
        assert isinstance(current, ExchangeData)
        check_exchange_data(entity, current, actor)
    elif kind.is_data_owner:
        check_crypto_keys(row.id, key_records(entity), key_records(current), actor)
        check_actor_keys(row.id, entity, current, actor)
    metadata = metadata_for_update(kind, entity, current, actor)
    stored = entity.model_copy(
        update={
            "rev": next_rev(row.rev),
            "created": current.created,
            "modified": now,
            "author": current.author,
            "responsible": entity.responsible or current.responsible,
            "deletion_date": None,
            "security_metadata": metadata,
        }
    )
    return Write(stored, EventType.UPDATE, is_new=False, password_hash=password_hash)


def rows_of(kind: EntityKind, write: Write) -> WriteRows:
    """What `write` stores, built without the database; ValidationError for a value no column can hold."""
    entity = write.entity
    table = ENTITY_TABLES[kind.name]
    row = _row(kind, write)
    check_storable(kind, str(row["id"]), table, row)
    terms = []
    for t, k, v in set(terms_of(entity)):
        # The term's key and value are the entity's; its type, id and term are checked or fixed already.
        check_storable(kind, str(entity.id), entity_terms, {"key": k, "value": v}, field=TERM_FIELDS[t])
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
    return WriteRows(write, row, terms, readers, event, document)


def _row(kind: EntityKind, write: Write) -> dict[str, Any]:
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


def store_rows(conn: Connection, kind: EntityKind, writes: list[WriteRows], backend: Backend) -> None:
    """Write what `rows_of` built: updates and deletes through SQLAlchemy, the inserts (with their events'
    positions) as `backend` makes them."""
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
                delete(entity_terms).where(entity_terms.c.entity_type == kind.name, entity_terms.c.entity_id.in_(ids))
            )
            conn.execute(
                delete(entity_readers).where(
                    and_(entity_readers.c.entity_type == kind.name, entity_readers.c.entity_id.in_(ids))
                )
            )
        # After the deletes: a modified entity's terms and readers are replaced, not added to.
        event_rows = backend.event_rows(conn, [w.event for w in writes])
        backend.insert_tables(conn, inserts(kind, writes, event_rows))
    except IntegrityError as exc:
        raise ConflictError(integrity_message(kind, exc)) from exc


def inserts(
    kind: EntityKind, writes: Sequence[WriteRows], event_rows: list[dict[str, Any]]
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
