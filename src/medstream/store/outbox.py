"""The outbox: every committed write appends its event here, in the same transaction.

Positions (`seq`) are dense and follow commit order (docs/guarantees.md). The backend gives them: SQLite in the
write's transaction, which also publishes the events, positions and all, to the process's commit listeners;
PostgreSQL in numbering rounds after commits (`medstream.store.postgresql.numbering`), where the log is the only
source. This module holds the log's rows and events, and reads it through the connection's backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, delete, func, select, update

from medstream.events.types import EntityEvent, EventType
from medstream.model.common import Entity
from medstream.store.backend import backend_of
from medstream.store.schema import outbox, outbox_tail

if TYPE_CHECKING:
    from medstream.store.database import Database


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event written by the current transaction, with the entity it carries; on PostgreSQL its `seq` is
    known only once it commits."""

    entity_type: str
    entity_id: str
    rev: str
    event_type: EventType
    document: str
    readers: frozenset[str]
    created: int
    entity: Entity


@dataclass(frozen=True, slots=True)
class WrittenEvent:
    """An event this process committed, as the dispatcher would read it back, with its entity already parsed."""

    event: EntityEvent
    entity: Entity


EVENTS_IN_LOG = "events in the log"
"""Published by a write whose events are in the log only, without positions yet (PostgreSQL): the dispatcher
reads them there."""


@dataclass(frozen=True, slots=True)
class LogHead:
    last_seq: int
    epoch: str
    floor_seq: int


# Plain SQL: the log's head, for either driver.
HEAD_SQL = "SELECT last_seq, epoch, floor_seq FROM outbox_tail WHERE id = 1"


def event_row(e: PendingEvent) -> dict[str, Any]:
    """The outbox row of `e`, with no position yet."""
    return {
        "entity_type": e.entity_type,
        "entity_id": e.entity_id,
        "rev": e.rev,
        "event_type": e.event_type.value,
        "document": e.document,
        "readers": orjson.dumps(sorted(e.readers)).decode(),
        "created": e.created,
        "seq": None,
    }


def written(seq: int, e: PendingEvent) -> WrittenEvent:
    """`e` as committed at position `seq`, for the commit listeners."""
    event = EntityEvent(seq, e.entity_type, e.entity_id, e.rev, e.event_type, e.document.encode(), e.readers, e.created)
    return WrittenEvent(event, e.entity)


def head(conn: Connection) -> LogHead:
    return backend_of(conn).head(conn)


def read_after(conn: Connection, after_seq: int, limit: int = 1000) -> list[EntityEvent]:
    """Committed events with `seq` > `after_seq`, in `seq` order."""
    return backend_of(conn).read_after(conn, after_seq, limit)


def log_event(
    seq: int, entity_type: str, entity_id: str, rev: str, event_type: str, document: str, readers: str, created: int
) -> EntityEvent:
    return EntityEvent(
        seq=seq,
        entity_type=entity_type,
        entity_id=entity_id,
        rev=rev,
        event_type=EventType(event_type),
        document=document.encode(),
        readers=frozenset(orjson.loads(readers)),
        created=created,
    )


async def number_committed(database: Database) -> None:
    """Every event committed before the call has its position once this returns."""
    await database.backend.number_committed()


def tail_and_page(conn: Connection, after_seq: int, limit: int = 1000) -> tuple[LogHead, list[EntityEvent]]:
    """The log's head and, when it is past `after_seq`, the first page of events after it: one snapshot."""
    tail = head(conn)
    return tail, read_after(conn, after_seq, limit) if tail.last_seq > after_seq else []


async def trim(database: Database, *, created_before: int, keep_last: int, chunk: int = 10_000) -> int:
    """Retention: drop events written before `created_before` (epoch ms) and all but the newest `keep_last`.

    The floor is raised first, in a short transaction, so that a subscriber resuming below it is told (`gap`)
    rather than finding a hole; the rows below it are then deleted in chunks that do not hold the tail row.
    Safe to run on several nodes at once: the floor only ever goes up. Returns the number of rows deleted."""

    def raise_floor(conn: Connection) -> int:
        tail = head(conn)
        by_size = tail.last_seq - keep_last + 1
        by_age = conn.execute(select(func.max(outbox.c.seq)).where(outbox.c.created < created_before)).scalar()
        floor = min(max(by_size, (by_age or 0) + 1), tail.last_seq + 1)
        if floor > tail.floor_seq:
            conn.execute(update(outbox_tail).where(outbox_tail.c.id == 1).values(floor_seq=floor))
        return max(floor, tail.floor_seq)

    def delete_chunk(conn: Connection) -> int:
        batch = select(outbox.c.id).where(outbox.c.seq < floor).limit(chunk).scalar_subquery()
        return conn.execute(delete(outbox).where(outbox.c.id.in_(batch))).rowcount or 0

    floor = await database.run_write(raise_floor)
    deleted = 0
    while True:
        removed = await database.run_write(delete_chunk)
        deleted += removed
        if removed < chunk:
            return deleted
