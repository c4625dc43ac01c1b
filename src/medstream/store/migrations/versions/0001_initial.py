"""Initial schema: one table per entity kind, terms, readers, the outbox and its tail.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copy of the schema at this revision: later revisions change it with their own operations.
_KIND_COLUMNS: dict[str, list[tuple[str, Any, bool]]] = {
    "patients": [
        ("ssin", sa.String(64), True),
        ("gender", sa.String(32), True),
        ("date_of_birth", sa.Integer(), True),
        ("search_name", sa.Text(), False),
    ],
    "data_samples": [("patient_id", sa.String(128), True), ("value_date", sa.BigInteger(), True)],
    "healthcare_elements": [("patient_id", sa.String(128), True), ("value_date", sa.BigInteger(), True)],
    "healthcare_professionals": [("search_name", sa.Text(), False)],
    "medical_devices": [],
    "notifications": [("type", sa.String(32), True), ("status", sa.String(32), True)],
    "users": [
        ("patient_id", sa.String(128), True),
        ("healthcare_party_id", sa.String(128), True),
        ("device_id", sa.String(128), True),
    ],
}

_ASSIGN_SEQ_FUNCTION = """
CREATE FUNCTION outbox_assign_seq() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE next_seq bigint;
BEGIN
  -- Runs at commit (deferred) and holds the tail row's lock until the transaction ends: PostgreSQL makes a
  -- commit visible before it releases its locks, so whoever reads seq N already sees every seq below N.
  UPDATE outbox_tail SET last_seq = last_seq + 1 WHERE id = 1 RETURNING last_seq INTO next_seq;
  UPDATE outbox SET seq = next_seq WHERE id = NEW.id;
  RETURN NULL;
END $$
"""
_ASSIGN_SEQ_TRIGGER = """
CREATE CONSTRAINT TRIGGER outbox_assign_seq AFTER INSERT ON outbox
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION outbox_assign_seq()
"""


def upgrade() -> None:
    for table, extra in _KIND_COLUMNS.items():
        columns: list[sa.Column[Any]] = [
            sa.Column("id", sa.String(128), primary_key=True),
            sa.Column("rev", sa.String(64), nullable=False),
            sa.Column("document", sa.Text(), nullable=False),
            sa.Column("created", sa.BigInteger(), nullable=False),
            sa.Column("modified", sa.BigInteger(), nullable=False),
            sa.Column("deleted", sa.BigInteger(), nullable=True),
        ]
        columns += [sa.Column(name, type_, nullable=True) for name, type_, _ in extra]
        if table == "users":
            columns += [
                sa.Column("login", sa.String(256), nullable=True, unique=True),
                sa.Column("password_hash", sa.Text(), nullable=True),
            ]
        op.create_table(table, *columns)
        for name, _, indexed in extra:
            if indexed:
                op.create_index(f"ix_{table}_{name}", table, [name])

    op.create_table(
        "entity_terms",
        sa.Column("entity_type", sa.String(32), primary_key=True),
        sa.Column("entity_id", sa.String(128), primary_key=True),
        sa.Column("term", sa.String(24), primary_key=True),
        sa.Column("key", sa.String(256), primary_key=True),
        sa.Column("value", sa.String(256), primary_key=True),
    )
    op.create_index("ix_entity_terms_lookup", "entity_terms", ["entity_type", "term", "key", "value"])
    op.create_table(
        "entity_readers",
        sa.Column("entity_type", sa.String(32), primary_key=True),
        sa.Column("data_owner_id", sa.String(128), primary_key=True),
        sa.Column("entity_id", sa.String(128), primary_key=True),
    )
    op.create_index("ix_entity_readers_entity", "entity_readers", ["entity_type", "entity_id"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("seq", sa.BigInteger(), nullable=True, unique=True),
        sa.Column("entity_type", sa.String(32), nullable=False),
        sa.Column("entity_id", sa.String(128), nullable=False),
        sa.Column("rev", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(8), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("readers", sa.Text(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
    )
    tail = op.create_table(
        "outbox_tail",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("epoch", sa.String(64), nullable=False),
        sa.Column("floor_seq", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(tail, [{"id": 1, "last_seq": 0, "epoch": uuid.uuid4().hex, "floor_seq": 0}])
    keys = op.create_table(
        "server_keys",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.bulk_insert(keys, [{"name": "jwt_secret", "value": secrets.token_urlsafe(48)}])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_ASSIGN_SEQ_FUNCTION)
        op.execute(_ASSIGN_SEQ_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS outbox_assign_seq ON outbox")
        op.execute("DROP FUNCTION IF EXISTS outbox_assign_seq()")
    for table in ("server_keys", "outbox_tail", "outbox", "entity_readers", "entity_terms", *_KIND_COLUMNS):
        op.drop_table(table)
