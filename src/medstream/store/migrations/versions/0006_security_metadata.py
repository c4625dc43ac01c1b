"""Secure delegations and exchange data: the `exchange_data_records` table (delegator and delegate indexed),
and every stored document and event whose readers were `systemMetaData.delegations` rewritten with the same
readers as server-made `securityMetadata.secureDelegations`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Frozen copy of the tables at this revision whose documents may carry `systemMetaData`.
_DOCUMENT_TABLES = (
    "patients",
    "data_samples",
    "healthcare_elements",
    "healthcare_professionals",
    "medical_devices",
    "notifications",
    "users",
    "outbox",
)
_PAGE = 1000


def _server_delegation_key(delegator: str | None, delegate: str) -> str:
    context = b"medstream/v1/server-delegation\x00" + (delegator or "").encode() + b"\x00" + delegate.encode()
    return hashlib.sha256(context).hexdigest()


def _secure(document: dict[str, Any]) -> dict[str, Any]:
    system = document.pop("systemMetaData", None) or {}
    delegations: dict[str, Any] = {}
    for reader, delegation in sorted((system.get("delegations") or {}).items()):
        owner = (delegation or {}).get("owner")
        secure: dict[str, Any] = {"delegate": reader} if owner is None else {"delegator": owner, "delegate": reader}
        secure.update(secretIds=[], encryptionKeys=[], owningEntityIds=[], parentDelegations=[], permissions="WRITE")
        delegations[_server_delegation_key(owner, reader)] = secure
    document["securityMetadata"] = {"secureDelegations": delegations}
    return document


def upgrade() -> None:
    op.create_table(
        "exchange_data_records",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("rev", sa.String(64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("modified", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.BigInteger(), nullable=True),
        sa.Column("delegator", sa.String(128), nullable=True),
        sa.Column("delegate", sa.String(128), nullable=True),
    )
    op.create_index("ix_exchange_data_records_delegator", "exchange_data_records", ["delegator"])
    op.create_index("ix_exchange_data_records_delegate", "exchange_data_records", ["delegate"])
    bind = op.get_bind()
    for name in _DOCUMENT_TABLES:
        table = sa.table(name, sa.column("id"), sa.column("document"))
        after: Any = None
        while True:
            query = (
                sa.select(table.c.id, table.c.document)
                .where(table.c.document.like('%"systemMetaData"%'))
                .order_by(table.c.id)
                .limit(_PAGE)
            )
            if after is not None:
                query = query.where(table.c.id > after)
            rows = bind.execute(query).all()
            for row_id, document in rows:
                rewritten = orjson.dumps(_secure(orjson.loads(document))).decode()
                bind.execute(sa.update(table).where(table.c.id == row_id).values(document=rewritten))
            if len(rows) < _PAGE:
                break
            after = rows[-1][0]


def downgrade() -> None:
    op.drop_index("ix_exchange_data_records_delegate", "exchange_data_records")
    op.drop_index("ix_exchange_data_records_delegator", "exchange_data_records")
    op.drop_table("exchange_data_records")
