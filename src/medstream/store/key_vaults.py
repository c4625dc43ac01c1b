"""Each user's key vault: one opaque blob per user, replaced only with its current revision, dropped with its user.

A write is one conditional statement, so two writers racing are told apart by the database on both backends,
without locks: a first vault is an INSERT that does nothing if the user has one, a replacement an UPDATE of the
row at the revision the writer read. Either touching no row is a conflict.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Connection, String, Table, Text, delete, select, update

from medstream.errors import ConflictError
from medstream.store.backend import backend_of
from medstream.store.database import Database
from medstream.store.revisions import next_rev
from medstream.store.schema import metadata

key_vaults = Table(
    "key_vaults",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("rev", String(64), nullable=False),
    Column("blob", Text(), nullable=False),
    Column("created", BigInteger(), nullable=False),  # unix ms
    Column("modified", BigInteger(), nullable=False),  # unix ms
)


@dataclass(frozen=True, slots=True)
class StoredKeyVault:
    user_id: str
    rev: str
    blob: str
    created: int
    modified: int


def drop_key_vault_in(conn: Connection, user_id: str) -> None:
    """Within a write transaction: drop the user's vault, if it has one."""
    conn.execute(delete(key_vaults).where(key_vaults.c.user_id == user_id))


class KeyVaultStore:
    """Reads and writes users' key vaults."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def get(self, user_id: str) -> StoredKeyVault | None:
        query = select(key_vaults).where(key_vaults.c.user_id == user_id)
        row = await self.database.run_read(lambda conn: conn.execute(query).one_or_none())
        return None if row is None else StoredKeyVault(*row)

    async def put(self, user_id: str, blob: str, rev: str | None) -> StoredKeyVault:
        """Store the user's first vault (`rev` None) or replace the one at `rev`; ConflictError, with nothing
        changed, when the user has a vault and `rev` is not its revision, or has none and `rev` is given."""
        now = int(time.time() * 1000)
        new_rev = next_rev(rev)

        def transaction(conn: Connection) -> StoredKeyVault:
            if rev is None:
                values = {"user_id": user_id, "rev": new_rev, "blob": blob, "created": now, "modified": now}
                insert = backend_of(conn).upsert(key_vaults).values(**values)
                if conn.execute(insert.on_conflict_do_nothing(index_elements=[key_vaults.c.user_id])).rowcount == 1:
                    return StoredKeyVault(user_id, new_rev, blob, now, now)
                raise ConflictError("a key vault is stored already: send its rev to replace it")
            statement = (
                update(key_vaults)
                .where(key_vaults.c.user_id == user_id, key_vaults.c.rev == rev)
                .values(rev=new_rev, blob=blob, modified=now)
                .returning(key_vaults.c.created)
            )
            created = conn.execute(statement).scalar_one_or_none()
            if created is None:
                raise ConflictError(f"no key vault at rev {rev}: it was replaced or deleted; read it again")
            return StoredKeyVault(user_id, new_rev, blob, int(created), now)

        return await self.database.run_write(transaction)

    async def delete(self, user_id: str) -> bool:
        """Drop the user's vault; whether it had one."""
        statement = delete(key_vaults).where(key_vaults.c.user_id == user_id)
        return await self.database.run_write(lambda conn: conn.execute(statement).rowcount == 1)
