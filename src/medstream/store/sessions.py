"""Token state kept server-side: each user's session generation, and each login's refresh-token family.

A token carries the session generation of its user when it was issued; ending a user's sessions (a password,
role or data-owner change, a logout, a deletion) moves the generation on and drops the user's refresh-token
families, so that the user's older access tokens no longer stand and their refresh tokens no longer refresh.
A user without a row is at generation 0.

A login starts a family; each refresh replaces the family's one current refresh token by a new one. A refresh
token that is not its family's current one was used already: it was stolen or replayed, and the whole family
is dropped, so neither the thief nor the owner can refresh with it again (the owner logs in again).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Connection, Index, String, Table, delete, select, update

from medstream.errors import AuthenticationError
from medstream.store.backend import backend_of
from medstream.store.database import Database
from medstream.store.schema import metadata

user_sessions = Table(
    "user_sessions",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("generation", BigInteger(), nullable=False),
    # When the sessions were last ended (unix ms, by the clock of the node that ended them): every node reads the
    # recent ones to close the sockets it holds for them.
    Column("ended", BigInteger(), nullable=False, server_default="0"),
    Index("ix_user_sessions_ended", "ended"),
)

refresh_families = Table(
    "refresh_families",
    metadata,
    Column("family", String(64), primary_key=True),
    Column("user_id", String(128), nullable=False),
    Column("generation", BigInteger(), nullable=False),
    Column("current_jti", String(64), nullable=False),
    Column("expires", BigInteger(), nullable=False),  # unix seconds: the family's newest refresh token's expiry
    Index("ix_refresh_families_user", "user_id"),
)


def generation_in(conn: Connection, user_id: str) -> int:
    query = select(user_sessions.c.generation).where(user_sessions.c.user_id == user_id)
    value = conn.execute(query).scalar_one_or_none()
    return int(value) if value is not None else 0


def end_sessions_in(conn: Connection, user_id: str) -> None:
    """Within a write transaction: move `user_id`'s generation on and drop its refresh-token families."""
    ended = int(time.time() * 1000)
    upsert = backend_of(conn).upsert(user_sessions).values(user_id=user_id, generation=1, ended=ended)
    conn.execute(
        upsert.on_conflict_do_update(
            index_elements=[user_sessions.c.user_id],
            set_={"generation": user_sessions.c.generation + 1, "ended": ended},
        )
    )
    conn.execute(delete(refresh_families).where(refresh_families.c.user_id == user_id))


@dataclass(frozen=True)
class Rotation:
    """A refresh: the family and the refresh token it presents, and the refresh token that replaces it."""

    family: str
    user_id: str
    generation: int
    presented_jti: str
    new_jti: str
    new_expires: int


class SessionStore:
    """Reads and writes the token state of users."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def generation(self, user_id: str) -> int:
        return await self.database.run_read(lambda conn: generation_in(conn, user_id))

    async def start_family(self, family: str, user_id: str, generation: int, jti: str, expires: int) -> None:
        """Record a login's refresh-token family, whose tokens carry the user's session `generation`."""
        values = {"family": family, "user_id": user_id, "generation": generation, "current_jti": jti}
        statement = refresh_families.insert().values(**values, expires=expires)
        await self.database.run_write(lambda conn: conn.execute(statement))

    async def rotate(self, rotation: Rotation, now: int) -> None:
        """Make `rotation.new_jti` the family's current refresh token, or raise AuthenticationError: the family
        was ended, or the token presented was already used (then the family is ended now)."""

        def transaction(conn: Connection) -> str | None:
            table = refresh_families
            query = select(table.c.current_jti, table.c.generation, table.c.expires).where(
                table.c.family == rotation.family, table.c.user_id == rotation.user_id
            )
            query = query.with_for_update()  # SQLite has no FOR UPDATE (its writers are serialised): left out there
            row = conn.execute(query).one_or_none()
            if row is not None and row.generation != generation_in(conn, rotation.user_id):
                conn.execute(delete(table).where(table.c.family == rotation.family))
                row = None  # made in a generation since ended
            if row is None or row.expires < now or row.generation != rotation.generation:
                return "this refresh token was revoked (logout, or a password or role change): log in again"
            if row.current_jti != rotation.presented_jti:
                conn.execute(delete(table).where(table.c.family == rotation.family))
                return "this refresh token was used already; its session is ended: log in again"
            conn.execute(
                update(table)
                .where(table.c.family == rotation.family)
                .values(current_jti=rotation.new_jti, expires=rotation.new_expires)
            )
            return None

        refused = await self.database.run_write(transaction)
        if refused is not None:
            raise AuthenticationError(refused)

    async def check_standing(self, family: str, user_id: str, generation: int, jti: str, now: int) -> None:
        """AuthenticationError unless `jti` is its family's current refresh token, in a session not ended: the
        check of a refresh that does not rotate (iCure's clients keep their refresh token, docs/icure.md)."""
        table = refresh_families
        query = select(table.c.current_jti, table.c.generation, table.c.expires).where(
            table.c.family == family, table.c.user_id == user_id
        )

        def read(conn: Connection) -> bool:
            row = conn.execute(query).one_or_none()
            return (
                row is not None
                and row.current_jti == jti
                and row.expires >= now
                and row.generation == generation == generation_in(conn, user_id)
            )

        if not await self.database.run_read(read):
            raise AuthenticationError(
                "this refresh token was revoked (logout, or a password or role change): log in again"
            )

    async def end_sessions(self, user_id: str) -> None:
        await self.database.run_write(lambda conn: end_sessions_in(conn, user_id))

    async def ended_since(self, since_ms: int) -> dict[str, int]:
        """The generation of each user whose sessions were ended at or after `since_ms` (unix ms), by user id."""
        query = select(user_sessions.c.user_id, user_sessions.c.generation).where(user_sessions.c.ended >= since_ms)
        rows = await self.database.run_read(lambda conn: conn.execute(query).all())
        return {str(user_id): int(generation) for user_id, generation in rows}

    async def drop_expired(self, now: int) -> int:
        """Drop the families whose newest refresh token has expired; how many."""
        statement = delete(refresh_families).where(refresh_families.c.expires < now)
        return await self.database.run_write(lambda conn: int(conn.execute(statement).rowcount))
