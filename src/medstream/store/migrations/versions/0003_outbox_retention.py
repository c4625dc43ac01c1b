"""Outbox retention: an index on the events' write time, so trimming by age finds its bound without a scan.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_created", "outbox", ["created"])


def downgrade() -> None:
    op.drop_index("ix_outbox_created", "outbox")
