"""What a write to users does beyond storing them: it ends the sessions of a user whose password, roles or data
owner change (or who is deleted or disabled), drops a deleted user's key vault (which no one could read again),
and it never leaves the database without a live admin."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, select

from medstream.errors import ConflictError
from medstream.model.user import User
from medstream.store.backend import backend_of
from medstream.store.key_vaults import drop_key_vault_in
from medstream.store.schema import ENTITY_TABLES
from medstream.store.sessions import end_sessions_in

# Any fixed key: PostgreSQL transactions that remove an admin take turns on it (see `_check_an_admin_remains`).
_ADMIN_CHANGE_LOCK = 0x6D656473


@dataclass(frozen=True, slots=True)
class UserChange:
    """A user as it was and as a write leaves it; `new_password` when the write sets a password."""

    current: User
    new: User
    new_password: bool = False

    @property
    def ends_sessions(self) -> bool:
        current, new = self.current, self.new
        return (
            self.new_password
            or new.is_deleted
            or new.roles != current.roles
            or new.data_owner_id != current.data_owner_id
            or (bool(new.disabled) and not current.disabled)
        )

    @property
    def removes_an_admin(self) -> bool:
        current, new = self.current, self.new
        was_live = current.is_admin and not current.is_deleted and not current.disabled
        return was_live and (new.is_deleted or not new.is_admin or bool(new.disabled))


def apply_user_changes(conn: Connection, changes: Sequence[UserChange]) -> None:
    """Within the write transaction, after the users' rows are written: end the sessions the changes end, drop
    the key vaults of deleted users, and raise ConflictError (rolling the write back) if they leave no live admin."""
    removed = [str(c.current.id) for c in changes if c.removes_an_admin]
    if removed:
        _check_an_admin_remains(conn, removed)
    for change in changes:
        if change.ends_sessions:
            end_sessions_in(conn, str(change.current.id))
        if change.new.is_deleted and not change.current.is_deleted:
            drop_key_vault_in(conn, str(change.current.id))


def _check_an_admin_remains(conn: Connection, removed: Sequence[str]) -> None:
    # Two transactions that each remove one of two admins must not both see the other still there: the second
    # waits here for the first to commit, and then sees it.
    backend_of(conn).take_turns(conn, _ADMIN_CHANGE_LOCK)
    table = ENTITY_TABLES["User"]
    query = select(table.c.id, table.c.document).where(
        table.c.deleted.is_(None), table.c.document.contains('"ADMIN"'), table.c.id.not_in(list(removed))
    )
    for _id, document in conn.execute(query):
        user = User.model_validate_json(document)
        if user.is_admin and not user.disabled:
            return
    raise ConflictError("this would leave no admin: make another user an admin first")
