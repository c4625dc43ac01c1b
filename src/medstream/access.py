"""Who may read what: the one rule used by queries, REST and event dispatch (docs/architecture.md, "The access
rule")."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from medstream.errors import ForbiddenError

if TYPE_CHECKING:
    from medstream.model.user import User

ADMIN_ROLE = "ADMIN"


@dataclass(frozen=True, slots=True)
class Actor:
    """The authenticated user a request or subscription acts for."""

    user_id: str
    data_owner_id: str | None
    is_admin: bool = False
    # The user's session generation its token was issued in: ending a user's sessions (a password, role or
    # data-owner change, a logout) moves the generation on, and tokens of an older one no longer stand.
    session: int = 0

    def can_read(self, readers: Collection[str]) -> bool:
        """An entity is readable by the data owners it is shared with, and by admins."""
        return self.is_admin or (self.data_owner_id is not None and self.data_owner_id in readers)


def check_user_write(actor: Actor, new: User, current: User | None) -> None:
    """Only admins create users or change who a user is; a user may edit their own profile and password."""
    if actor.is_admin:
        return
    if current is None:
        raise ForbiddenError("only an admin may create users")
    if current.id != actor.user_id:
        raise ForbiddenError("only an admin may modify another user")
    for field in ("login", "roles", "healthcare_party_id", "patient_id", "device_id", "disabled"):
        if getattr(new, field) != getattr(current, field):
            raise ForbiddenError(f"only an admin may change a user's {field}")
