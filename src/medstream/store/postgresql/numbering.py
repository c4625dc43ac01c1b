"""PostgreSQL's positions of the outbox's events, and its reads of the log.

Rows are inserted with `seq` NULL, and writers take no shared lock: after they commit, a numbering round
(migration 0004's `outbox_number`) gives every committed event still without a position the next ones, in
insert order, and moves the tail past them. Rounds take turns on the tail's row lock, so any node may run one
at any time: each numbers what the one before left. The log is the only source of events here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Integer, bindparam, select

from medstream.events.types import EntityEvent
from medstream.store.outbox import HEAD_SQL, LogHead, log_event
from medstream.store.postgresql.connections import Autocommit
from medstream.store.schema import outbox

# Migration 0004's function: one round, at most $1 events, in a transaction of its own.
_NUMBER = "SELECT outbox_number($1)"
_NUMBER_AND_READ = "SELECT * FROM outbox_number_and_read($1, $2, $3)"
NUMBER_ROUND = 5_000

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


async def number_round(connections: Autocommit, limit: int = NUMBER_ROUND) -> int:
    """Give the committed events that have no position yet theirs, in one round (at most `limit`); how many it
    numbered. Nothing is locked or written when there is nothing to number."""
    rows = await connections.fetch(_NUMBER, (limit,))
    return int(rows[0][0])


async def number_committed(connections: Autocommit) -> None:
    """Rounds until one numbers less than a full round: every event committed before the call has its position."""
    while await number_round(connections) == NUMBER_ROUND:
        pass


async def number_and_page(
    connections: Autocommit, after_seq: int, limit: int
) -> tuple[int, LogHead, list[EntityEvent]]:
    """`outbox.tail_and_page` after a numbering round, as one statement in autocommit (migration 0004): how many
    events the round numbered, the log's head and the page after `after_seq`. The page's snapshot, taken after
    the round, sees every event up to the head it reads, since an event gets its `seq` in the round that moves
    the head past it. The rows come back once the round has committed: asyncpg hands a statement's rows over
    at ReadyForQuery, which PostgreSQL sends after the implicit transaction's commit."""
    rows = await connections.fetch(_NUMBER_AND_READ, (after_seq, NUMBER_ROUND, limit))
    first = rows[0]
    tail = LogHead(last_seq=first["last_seq"], epoch=first["epoch"], floor_seq=first["floor_seq"])
    events = [
        log_event(r["seq"], r["entity_type"], r["entity_id"], r["rev"], r["event_type"], r["document"], r["readers"],
                  r["created"])
        for r in rows
        if r["seq"] is not None
    ]  # fmt: skip
    return int(first["numbered"]), tail, events


def head(conn: Connection) -> LogHead:
    last_seq, epoch, floor_seq = conn.exec_driver_sql(HEAD_SQL).one()
    return LogHead(last_seq=last_seq, epoch=epoch, floor_seq=floor_seq)


def read_after(conn: Connection, after_seq: int, limit: int) -> list[EntityEvent]:
    rows: Any = conn.execute(_AFTER, {"after_seq": after_seq, "limit": limit})
    return [log_event(*row) for row in rows]
