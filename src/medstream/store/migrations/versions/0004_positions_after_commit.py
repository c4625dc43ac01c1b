"""PostgreSQL: event positions are given after commit, by a numbering round, not inside each writer's commit.

Until now a deferred trigger numbered each event at its writer's commit from the one-row tail, whose row lock
every writer with events then held through its WAL flush: those commits flushed one after the other, never
together, and at 1,000 writes/s the writers spent more time waiting for that lock than flushing. Now writers
insert their events unnumbered and take no shared lock; `outbox_number` numbers, in one short transaction,
every committed event still without a position, in insert (`id`) order, and moves the tail past them. Rounds
take turns on the tail's row lock, and each numbers only what its snapshot, taken after that lock, sees
committed: so the positions stay dense (a rolled-back event is never seen, so never numbered), whoever reads
`seq` N sees every `seq` below N (a round commits, and is visible, before the next can take the lock), and a
write that committed before another began is numbered first (docs/guarantees.md). SQLite is unchanged: there
the database serialises writers, and positions are taken at insert.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_NUMBER_FUNCTION = """
CREATE FUNCTION outbox_number(max_events integer) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  first_seq bigint;
  numbered bigint;
BEGIN
  -- Nothing to number (the common case of a poll): no lock taken, nothing written.
  IF NOT EXISTS (SELECT 1 FROM outbox WHERE seq IS NULL) THEN
    RETURN 0;
  END IF;
  SELECT last_seq INTO first_seq FROM outbox_tail WHERE id = 1 FOR UPDATE;
  -- READ COMMITTED and a VOLATILE function: this statement's snapshot is taken after the lock above, so it sees
  -- every round committed before, and numbers only events whose writers have committed.
  UPDATE outbox o SET seq = first_seq + p.n
    FROM (SELECT id, row_number() OVER (ORDER BY id) AS n
            FROM (SELECT id FROM outbox WHERE seq IS NULL ORDER BY id LIMIT max_events) AS unnumbered) AS p
   WHERE o.id = p.id;
  GET DIAGNOSTICS numbered = ROW_COUNT;
  IF numbered > 0 THEN
    UPDATE outbox_tail SET last_seq = first_seq + numbered WHERE id = 1;
  END IF;
  RETURN numbered;
END $$
"""


# What a node's dispatcher sends whenever it reads the log: a round, then the log's head and the page after
# `after_seq`, in one statement and one transaction. The page is read after the round (a statement of its own,
# its snapshot taken while this round holds the tail), so it sees the events this round numbered and every
# round before; the caller gets the rows once the statement's transaction, the round, has committed.
_NUMBER_AND_READ_FUNCTION = """
CREATE FUNCTION outbox_number_and_read(after_seq bigint, max_events integer, page_size integer)
RETURNS TABLE (numbered bigint, last_seq bigint, epoch text, floor_seq bigint, seq bigint, entity_type text,
               entity_id text, rev text, event_type text, document text, readers text, created bigint)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  numbered_now bigint := outbox_number(max_events);
BEGIN
  RETURN QUERY
    SELECT numbered_now, t.last_seq, t.epoch::text, t.floor_seq, o.seq, o.entity_type::text, o.entity_id::text,
           o.rev::text, o.event_type::text, o.document, o.readers, o.created
      FROM outbox_tail t
      LEFT JOIN LATERAL (SELECT seq, entity_type, entity_id, rev, event_type, document, readers, created
                           FROM outbox WHERE seq > after_seq AND seq <= t.last_seq ORDER BY seq
                          LIMIT page_size) o ON true
     WHERE t.id = 1;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS outbox_assign_seq ON outbox")
    op.execute("DROP FUNCTION IF EXISTS outbox_assign_seq()")
    op.execute("CREATE INDEX ix_outbox_unnumbered ON outbox (id) WHERE seq IS NULL")
    op.execute(_NUMBER_FUNCTION)
    op.execute(_NUMBER_AND_READ_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # Events written since the upgrade and not numbered yet get their positions now, before the trigger that
    # numbers at commit returns: one round, all of them.
    op.execute("SELECT outbox_number(2147483647)")
    op.execute("DROP FUNCTION outbox_number_and_read(bigint, integer, integer)")
    op.execute("DROP FUNCTION outbox_number(integer)")
    op.execute("DROP INDEX ix_outbox_unnumbered")
    # Alembic loads each version file on its own, not as a package's module: load 0001's the same way.
    spec = importlib.util.spec_from_file_location(
        "medstream_migration_0001", Path(__file__).with_name("0001_initial.py")
    )
    assert spec is not None and spec.loader is not None
    initial = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(initial)
    op.execute(initial._ASSIGN_SEQ_FUNCTION)
    op.execute(initial._ASSIGN_SEQ_TRIGGER)
