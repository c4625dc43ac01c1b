"""Filters: patients' education and profession columns, an index on notifications' creation time, and a
covering terms index.

The gender/education/profession patient filter and the "notifications after date" filter need the first two;
existing patients get the two columns filled from their stored document. The terms lookup index gains
`entity_id` so that label, code and identifier lookups read the index only (and SQLite's planner uses it
rather than scanning the covering primary key by entity type).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BATCH = 500


def upgrade() -> None:
    op.add_column("patients", sa.Column("education", sa.Text(), nullable=True))
    op.add_column("patients", sa.Column("profession", sa.Text(), nullable=True))
    op.create_index("ix_notifications_created", "notifications", ["created"])
    op.create_index("ix_entity_terms_covering", "entity_terms", ["entity_type", "term", "key", "value", "entity_id"])
    op.drop_index("ix_entity_terms_lookup", table_name="entity_terms")
    _fill_patient_columns()


def _fill_patient_columns() -> None:
    connection = op.get_bind()
    patients = sa.table(
        "patients", sa.column("id"), sa.column("document"), sa.column("education"), sa.column("profession")
    )
    last_id = ""
    while True:
        rows = connection.execute(
            sa.select(patients.c.id, patients.c.document)
            .where(patients.c.id > last_id)
            .order_by(patients.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        for row in rows:
            document = json.loads(row.document)
            if document.get("education") is not None or document.get("profession") is not None:
                connection.execute(
                    sa.update(patients)
                    .where(patients.c.id == row.id)
                    .values(education=document.get("education"), profession=document.get("profession"))
                )
        last_id = rows[-1].id


def downgrade() -> None:
    op.create_index("ix_entity_terms_lookup", "entity_terms", ["entity_type", "term", "key", "value"])
    op.drop_index("ix_entity_terms_covering", table_name="entity_terms")
    op.drop_index("ix_notifications_created", table_name="notifications")
    with op.batch_alter_table("patients") as batch:
        batch.drop_column("profession")
        batch.drop_column("education")
