"""The outbox: every committed write appends its event here, in the same transaction (DESIGN section 5).

Positions (`seq`) are dense and in commit order. On SQLite the database serialises writers, so the tail
counter is advanced inside the transaction. On PostgreSQL rows are inserted with `seq` NULL and the deferred
trigger of migration 0001 numbers them at commit while holding the tail row's lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Integer, bindparam, delete, func, select, update

from medstream.events.types import EntityEvent, EventType
from medstream.store.database import Database, insert_rows
from medstream.store.schema import outbox, outbox_tail


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event written by the current transaction; its `seq` is known only once it commits."""

    entity_type: str
    entity_id: str
    rev: str
    event_type: EventType
    document: str
    readers: frozenset[str]
    created: int


@dataclass(frozen=True, slots=True)
class LogHead:
    last_seq: int
    epoch: str
    floor_seq: int


# Statements built once: building one (and its cache key) costs more than running it on SQLite.
_ADVANCE = (
    update(outbox_tail)
    .where(outbox_tail.c.id == 1)
    .values(last_seq=outbox_tail.c.last_seq + bindparam("count", type_=Integer))
    .returning(outbox_tail.c.last_seq)
)


def append(conn: Connection, events: Sequence[PendingEvent], *, assign_seq: bool) -> None:
    """Append `events` in order; `assign_seq` numbers them here (SQLite) instead of at commit (PostgreSQL)."""
    if not events:
        return
    rows: list[dict[str, Any]] = [
        {
            "entity_type": e.entity_type,
            "entity_id": e.entity_id,
            "rev": e.rev,
            "event_type": e.event_type.value,
            "document": e.document,
            "readers": orjson.dumps(sorted(e.readers)).decode(),
            "created": e.created,
            "seq": None,
        }
        for e in events
    ]
    if assign_seq:
        last = conn.execute(_ADVANCE, {"count": len(rows)}).scalar_one()
        for offset, row in enumerate(rows):
            row["seq"] = last - len(rows) + 1 + offset
    insert_rows(conn, outbox, rows)


_HEAD = select(outbox_tail).where(outbox_tail.c.id == 1)


def head(conn: Connection) -> LogHead:
    row = conn.execute(_HEAD).one()
    return LogHead(last_seq=row.last_seq, epoch=row.epoch, floor_seq=row.floor_seq)


_AFTER = (
    select(outbox)
    .where(outbox.c.seq > bindparam("after_seq"))
    .order_by(outbox.c.seq)
    .limit(bindparam("limit", type_=Integer))
)


def read_after(conn: Connection, after_seq: int, limit: int = 1000) -> list[EntityEvent]:
    """Committed events with `seq` > `after_seq`, in `seq` order."""
    result = conn.execute(_AFTER, {"after_seq": after_seq, "limit": limit})
    return [
        EntityEvent(
            seq=row.seq,
            entity_type=row.entity_type,
            entity_id=row.entity_id,
            rev=row.rev,
            event_type=EventType(row.event_type),
            document=row.document.encode(),
            readers=frozenset(orjson.loads(row.readers)),
            created=row.created,
        )
        for row in result
    ]


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
