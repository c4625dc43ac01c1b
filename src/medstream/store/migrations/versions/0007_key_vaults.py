"""Key vaults: each user's opaque key vault blob and its revision (store/key_vaults.py).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_vaults",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("rev", sa.String(64), nullable=False),
        sa.Column("blob", sa.Text(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("modified", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("key_vaults")
