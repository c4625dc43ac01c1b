"""The outbox: every committed write appends its event here, in the same transaction (DESIGN section 5).

Positions (`seq`) are dense and follow commit order (docs/guarantees.md). On SQLite the database serialises
writers, so the tail counter is advanced inside the transaction, and the transaction also publishes its events,
positions and all, to the process's commit listeners (the dispatcher then need not read them back). On PostgreSQL
rows are inserted with `seq` NULL, and writers take no shared lock: after they commit, a numbering round
(`pg_number`, migration 0004) gives every committed event still without a position the next ones, in insert
order, and moves the tail past them. There the log is the only source.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Integer, bindparam, delete, func, select, update

from medstream.events.types import EntityEvent, EventType
from medstream.model.common import Entity
from medstream.store.database import Database
from medstream.store.schema import outbox, outbox_tail
from medstream.store.statements import publish, sqlite_execute


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


@dataclass(frozen=True, slots=True)
class LogHead:
    last_seq: int
    epoch: str
    floor_seq: int


# Plain SQL: the log's head, for either driver.
_HEAD_SQL = "SELECT last_seq, epoch, floor_seq FROM outbox_tail WHERE id = 1"
# On SQLite these run through the driver itself (statements.sqlite_execute). _ADVANCE_SQLITE numbers the events
# there; on PostgreSQL numbering rounds do (pg_number).
_ADVANCE_SQLITE = "UPDATE outbox_tail SET last_seq = last_seq + ? WHERE id = 1 RETURNING last_seq"
_AFTER_SQLITE = (
    "SELECT seq, entity_type, entity_id, rev, event_type, document, readers, created FROM outbox"
    " WHERE seq > ? ORDER BY seq LIMIT ?"
)


def event_rows(conn: Connection, events: Sequence[PendingEvent], *, assign_seq: bool) -> list[dict[str, Any]]:
    """The outbox rows of `events`, in order, for the caller to insert in this transaction with the write's
    other rows (statements.insert_tables). With `assign_seq` (SQLite) their positions are taken from the tail
    counter here, and the events are published (`WrittenEvent`s) for when the transaction commits; on
    PostgreSQL a numbering round does, after the commit (`pg_number`)."""
    if not events:
        return []
    rows = [event_row(e) for e in events]
    if assign_seq:  # SQLite
        (last,) = sqlite_execute(conn, _ADVANCE_SQLITE, (len(rows),)).fetchone()
        first = last - len(rows) + 1
        for offset, row in enumerate(rows):
            row["seq"] = first + offset
        publish(conn, [_written(first + offset, e) for offset, e in enumerate(events)])
    return rows


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


def _written(seq: int, e: PendingEvent) -> WrittenEvent:
    event = EntityEvent(seq, e.entity_type, e.entity_id, e.rev, e.event_type, e.document.encode(), e.readers, e.created)
    return WrittenEvent(event, e.entity)


def head(conn: Connection) -> LogHead:
    if conn.dialect.name == "sqlite":
        last_seq, epoch, floor_seq = sqlite_execute(conn, _HEAD_SQL).fetchone()
    else:
        last_seq, epoch, floor_seq = conn.exec_driver_sql(_HEAD_SQL).one()
    return LogHead(last_seq=last_seq, epoch=epoch, floor_seq=floor_seq)


_AFTER = (
    select(
        outbox.c.seq,
        outbox.c.entity_type,
        outbox.c.entity_id,
        outbox.c.rev,
        outbox.c.event_type,
        outbox.c.document,
        outbox.c.readers,
        outbox.c.created,
    )
    .where(outbox.c.seq > bindparam("after_seq"))
    .order_by(outbox.c.seq)
    .limit(bindparam("limit", type_=Integer))
)


def read_after(conn: Connection, after_seq: int, limit: int = 1000) -> list[EntityEvent]:
    """Committed events with `seq` > `after_seq`, in `seq` order."""
    if conn.dialect.name == "sqlite":
        rows: Iterable[Sequence[Any]] = sqlite_execute(conn, _AFTER_SQLITE, (after_seq, limit))
    else:
        rows = conn.execute(_AFTER, {"after_seq": after_seq, "limit": limit})
    return [_event(*row) for row in rows]


def _event(
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


# Migration 0004's function: one round, at most $1 events, in a transaction of its own.
_NUMBER_PG = "SELECT outbox_number($1)"
NUMBER_ROUND = 5_000


async def pg_number(database: Database, limit: int = NUMBER_ROUND) -> int:
    """PostgreSQL: give the committed events that have no position yet theirs, in one round (at most `limit`);
    how many it numbered. Rounds take turns on the tail's row lock, so any node may run one at any time: each
    numbers what the one before left. Nothing is locked or written when there is nothing to number."""
    rows = await database.autocommit.fetch(_NUMBER_PG, (limit,))
    return int(rows[0][0])


async def number_committed(database: Database) -> None:
    """Every event committed before the call has its position once this returns: on PostgreSQL, rounds until
    one numbers less than a full round; on SQLite, where positions are taken at insert, nothing to do."""
    if not database.is_sqlite:
        while await pg_number(database) == NUMBER_ROUND:
            pass


_NUMBER_AND_READ_PG = "SELECT * FROM outbox_number_and_read($1, $2, $3)"


async def pg_number_and_page(
    database: Database, after_seq: int, limit: int = 1000
) -> tuple[int, LogHead, list[EntityEvent]]:
    """`tail_and_page` on PostgreSQL, after a numbering round, as one statement in autocommit (migration 0004):
    how many events the round numbered, the log's head and the page after `after_seq`. The page's snapshot,
    taken after the round, sees every event up to the head it reads, since an event gets its `seq` in the round
    that moves the head past it. The rows come back once the round has committed: asyncpg hands a statement's
    rows over at ReadyForQuery, which PostgreSQL sends after the implicit transaction's commit."""
    rows = await database.autocommit.fetch(_NUMBER_AND_READ_PG, (after_seq, NUMBER_ROUND, limit))
    first = rows[0]
    tail = LogHead(last_seq=first["last_seq"], epoch=first["epoch"], floor_seq=first["floor_seq"])
    events = [
        _event(r["seq"], r["entity_type"], r["entity_id"], r["rev"], r["event_type"], r["document"], r["readers"],
               r["created"])
        for r in rows
        if r["seq"] is not None
    ]  # fmt: skip
    return int(first["numbered"]), tail, events


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
