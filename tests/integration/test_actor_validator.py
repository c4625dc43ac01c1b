"""The re-check of a token's user (server/actors.py) against a real repository on SQLite: one read per user at
a time however many requests ask, a busy user re-read before their entry goes stale, and a user written while
a read was in progress read again rather than kept from that read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from medstream.access import Actor
from medstream.errors import AuthenticationError
from medstream.model import KIND_BY_NAME, User
from medstream.server.actors import ActorValidator
from medstream.store.database import Database
from medstream.store.repository import EntityRepository
from medstream.store.sessions import SessionStore

ADMIN = Actor("admin", None, is_admin=True)
USERS = KIND_BY_NAME["User"]
ACTOR = Actor("user-1", None)


class Store:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.repository = EntityRepository(database)
        self.reads = 0
        self.gate = asyncio.Event()  # a read waits for it, when cleared
        self.gate.set()
        self.started = asyncio.Event()  # set when a read begins
        find_user: Callable[[str], Awaitable[User | None]] = self.repository.find_user

        async def counted(user_id: str) -> User | None:  # the real read, counted
            self.reads += 1
            self.started.set()
            await self.gate.wait()
            return await find_user(user_id)

        self.repository.find_user = counted  # type: ignore[method-assign]

    async def delete_user(self) -> None:
        await self.repository.delete(USERS, [ACTOR.user_id], ADMIN)


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    database = Database(f"sqlite:///{tmp_path / 'actors.db'}")
    await database.migrate()
    try:
        store = Store(database)
        await store.repository.create_or_modify(USERS, [User(id=ACTOR.user_id, login="user-1")], ADMIN)
        yield store
    finally:
        await database.close()


async def test_many_requests_that_find_a_user_unchecked_read_it_once(store: Store) -> None:
    validator = ActorValidator(store.repository, SessionStore(store.database), ttl=60)
    await asyncio.gather(*(validator.check(ACTOR) for _ in range(50)))
    assert store.reads == 1
    assert validator.stands(ACTOR)

    await store.delete_user()
    validator.forget(ACTOR.user_id)
    outcomes = await asyncio.gather(*(validator.check(ACTOR) for _ in range(50)), return_exceptions=True)
    assert store.reads == 2
    assert all(isinstance(o, AuthenticationError) and "no longer exists" in o.message for o in outcomes)


async def _reads_done(validator: ActorValidator) -> None:
    await asyncio.gather(*validator._reading.values(), return_exceptions=True)


async def test_a_busy_user_is_read_again_before_their_entry_goes_stale(store: Store) -> None:
    validator = ActorValidator(store.repository, SessionStore(store.database), ttl=2.0)
    await validator.check(ACTOR)
    assert store.reads == 1
    await asyncio.sleep(0.1)
    assert validator.stands(ACTOR) and store.reads == 1  # fresh: nothing read
    await asyncio.sleep(1.0)  # past half of ttl
    assert validator.stands(ACTOR)  # still stands, and reads the user again meanwhile
    await _reads_done(validator)
    assert store.reads == 2
    await asyncio.sleep(1.0)  # 2.1 s after the first read, 1 s after the second
    assert validator.stands(ACTOR)
    await _reads_done(validator)

    await store.delete_user()  # seen by the next read ahead, without forget()
    await asyncio.sleep(1.1)
    assert validator.stands(ACTOR)  # past half of ttl: the read starts
    await _reads_done(validator)
    assert not validator.stands(ACTOR)
    with pytest.raises(AuthenticationError, match="no longer exists"):
        await validator.check(ACTOR)


async def test_a_read_in_progress_when_the_user_is_written_is_not_kept(store: Store) -> None:
    validator = ActorValidator(store.repository, SessionStore(store.database), ttl=60)
    store.gate.clear()
    waiting = asyncio.create_task(validator.check(ACTOR))
    await store.started.wait()  # the read has started, and waits
    validator.forget(ACTOR.user_id)  # the user was written meanwhile
    store.gate.set()
    await waiting  # those already waiting get what the read found
    assert not validator.stands(ACTOR)  # but it is not kept: the next check reads again
    await validator.check(ACTOR)
    assert store.reads == 2 and validator.stands(ACTOR)


async def test_a_caller_that_gives_up_leaves_the_read_to_the_others(store: Store) -> None:
    validator = ActorValidator(store.repository, SessionStore(store.database), ttl=60)
    store.gate.clear()
    first = asyncio.create_task(validator.check(ACTOR))
    second = asyncio.create_task(validator.check(ACTOR))
    await store.started.wait()
    first.cancel()
    await asyncio.sleep(0)
    store.gate.set()
    await second
    assert first.cancelled()
    assert store.reads == 1 and validator.stands(ACTOR)
