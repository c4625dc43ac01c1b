"""Token state: each user's session generation, and each login's refresh-token family (store/sessions.py).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_sessions",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("ended", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_index("ix_user_sessions_ended", "user_sessions", ["ended"])
    op.create_table(
        "refresh_families",
        sa.Column("family", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("current_jti", sa.String(64), nullable=False),
        sa.Column("expires", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_refresh_families_user", "refresh_families", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_refresh_families_user", "refresh_families")
    op.drop_table("refresh_families")
    op.drop_index("ix_user_sessions_ended", "user_sessions")
    op.drop_table("user_sessions")
