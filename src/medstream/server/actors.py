"""Whether a token's actor still stands: its user exists, with the same data owner and admin role.

A token carries the user's data owner, role and session generation when it was issued. A user who is deleted,
whose data owner or admin role changes, or whose sessions were ended (store/sessions.py) must not keep acting on
the old ones until the token expires; on each node, a request
waits for a new read of its user when the last one is more than `ttl` seconds old, so the change takes effect
within seconds at the cost of two primary-key reads (the user, its generation) per active user every few seconds.

One read per user at a time, whoever asks: without it, every request that arrives while a busy user's entry is
stale reads the user again, each on a database connection of its own (on PostgreSQL, beyond the pool, a new one
every time), a herd every `ttl` seconds that sets PostgreSQL's tail latency. A user whose requests keep coming
is read again in the background once half of `ttl` has passed, so they never wait for it.
"""

from __future__ import annotations

import asyncio
import functools
import time

from medstream.access import Actor
from medstream.errors import AuthenticationError
from medstream.store.repository import EntityRepository
from medstream.store.sessions import SessionStore

SESSION_ENDED = "this session was ended (a logout, or a password or role change): log in again"


class ActorValidator:
    def __init__(
        self, repository: EntityRepository, sessions: SessionStore, *, ttl: float = 5.0, capacity: int = 100_000
    ) -> None:
        self.repository = repository
        self.sessions = sessions
        self.ttl = ttl
        self.capacity = capacity
        self._checked: dict[str, tuple[float, Actor | None]] = {}
        self._reading: dict[str, asyncio.Task[Actor | None]] = {}  # the read of each user in progress

    def stands(self, actor: Actor) -> bool:
        """True when the actor's user was read within `ttl` and is that actor still; False when it must be
        checked (`check`), which reads the user again if need be and raises if it no longer stands."""
        cached = self._checked.get(actor.user_id)
        if cached is None or cached[1] != actor:
            return False
        age = time.monotonic() - cached[0]
        if age > self.ttl:
            return False
        if age > self.ttl / 2 and actor.user_id not in self._reading:
            self._read(actor.user_id)  # ahead of time: this user's requests never wait for it
        return True

    async def check(self, actor: Actor) -> None:
        """AuthenticationError if the actor's user is gone or is no longer that actor."""
        cached = self._checked.get(actor.user_id)
        if cached is None or time.monotonic() - cached[0] > self.ttl:
            reading = self._reading.get(actor.user_id) or self._read(actor.user_id)
            current = await asyncio.shield(reading)  # a caller that gives up leaves the read to the others
        else:
            current = cached[1]
        if current is None:
            raise AuthenticationError("the user of this token no longer exists")
        if current.session != actor.session:
            raise AuthenticationError(SESSION_ENDED)
        if current != actor:
            raise AuthenticationError("this user's data owner or roles changed: log in again")

    def session_moved_on(self, user_id: str, generation: int) -> None:
        """Another node ended this user's sessions (they are at `generation` now): re-read the user at its next
        check if what is cached is of an older generation."""
        cached = self._checked.get(user_id)
        if cached is not None and cached[1] is not None and cached[1].session < generation:
            self.forget(user_id)

    def forget(self, user_id: str) -> None:
        """Re-read this user on the next check (called when a write to the user is seen). A read already in
        progress may have read the user before the write: its result is not kept."""
        self._checked.pop(user_id, None)
        self._reading.pop(user_id, None)

    def _read(self, user_id: str) -> asyncio.Task[Actor | None]:
        task = asyncio.get_running_loop().create_task(self._current(user_id))
        self._reading[user_id] = task
        task.add_done_callback(functools.partial(self._keep, user_id, time.monotonic()))
        return task

    async def _current(self, user_id: str) -> Actor | None:
        user = await self.repository.find_user(user_id)
        if user is None:
            return None
        session = await self.sessions.generation(user_id)
        return Actor(user_id=user_id, data_owner_id=user.data_owner_id, is_admin=user.is_admin, session=session)

    def _keep(self, user_id: str, started: float, task: asyncio.Task[Actor | None]) -> None:
        """The read is done: keep what it found, as of when it started, unless the user was forgotten since."""
        if self._reading.get(user_id) is not task:
            return
        del self._reading[user_id]
        if task.cancelled() or task.exception() is not None:
            return  # the callers waiting for it get its error; the next check reads again
        if len(self._checked) >= self.capacity:
            self._checked.clear()
        self._checked[user_id] = (started, task.result())
