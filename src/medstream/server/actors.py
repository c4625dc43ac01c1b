"""Whether a token's actor still stands: its user exists, with the same data owner and admin role.

A token carries the user's data owner and role when it was issued. A user who is deleted, or whose data owner
or admin role changes, must not keep acting on the old ones until the token expires; this re-reads the user
at most every `ttl` seconds per user and node, so the change takes effect within seconds at the cost of one
primary-key read per active user and interval.
"""

from __future__ import annotations

import time

from medstream.access import Actor
from medstream.errors import AuthenticationError
from medstream.store.repository import EntityRepository


class ActorValidator:
    def __init__(self, repository: EntityRepository, *, ttl: float = 5.0, capacity: int = 100_000) -> None:
        self.repository = repository
        self.ttl = ttl
        self.capacity = capacity
        self._checked: dict[str, tuple[float, Actor | None]] = {}

    def stands(self, actor: Actor) -> bool:
        """True when the actor's user was read within `ttl` and is that actor still; False when it must be
        checked (`check`), which reads the user again if need be and raises if it no longer stands."""
        cached = self._checked.get(actor.user_id)
        return cached is not None and time.monotonic() - cached[0] <= self.ttl and cached[1] == actor

    async def check(self, actor: Actor) -> None:
        """AuthenticationError if the actor's user is gone or is no longer that actor."""
        now = time.monotonic()
        cached = self._checked.get(actor.user_id)
        if cached is None or now - cached[0] > self.ttl:
            user = await self.repository.find_user(actor.user_id)
            current = (
                Actor(user_id=actor.user_id, data_owner_id=user.data_owner_id, is_admin=user.is_admin)
                if user is not None
                else None
            )
            if len(self._checked) >= self.capacity:
                self._checked.clear()
            self._checked[actor.user_id] = cached = (now, current)
        current = cached[1]
        if current is None:
            raise AuthenticationError("the user of this token no longer exists")
        if current != actor:
            raise AuthenticationError("this user's data owner or roles changed: log in again")

    def forget(self, user_id: str) -> None:
        """Re-read this user on the next check (called when a write to the user is seen)."""
        self._checked.pop(user_id, None)
