"""`medstream user add | list | set-password | disable | enable | delete`: users written straight to the database.

Users are entities: every change here goes through the repository, as a write through the API does, so it is
in the event log and each server's re-check of its users sees it within seconds (a disabled or deleted user's
tokens and sockets stop working; server/actors.py).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pydantic

from medstream.admin.environment import USER_PASSWORD_VARIABLE
from medstream.admin.exits import CommandError, Exit
from medstream.admin.opening import open_database
from medstream.errors import NotFoundError
from medstream.model.entities import KIND_BY_NAME
from medstream.model.user import User
from medstream.server.app import SYSTEM_ACTOR
from medstream.server.security import hash_password
from medstream.store.repository import EntityRepository

USERS = KIND_BY_NAME["User"]
# The flag of each data owner a user may act as, and the kind of entity it names.
OWNER_KINDS = {"healthcare_party_id": "HealthcareProfessional", "patient_id": "Patient", "device_id": "MedicalDevice"}


@asynccontextmanager
async def users_of(database_url: str, *, create: bool = False) -> AsyncIterator[EntityRepository]:
    """The repository of the database at `database_url`, closed afterwards."""
    database = await open_database(database_url, create=create)
    try:
        yield EntityRepository(database)
    finally:
        await database.close()


def read_password(given: str | None) -> str:
    return given or os.environ.get(USER_PASSWORD_VARIABLE) or getpass.getpass("password: ")


def valid_user(**fields: object) -> User:
    """The user, or a CommandError naming what is wrong; a password is never echoed (the User hides its input)."""
    try:
        return User.model_validate(fields)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'user'}: {e['msg']}" for e in exc.errors())
        raise CommandError(Exit.FAILED, f"invalid user: {problems}") from None


async def find(users: EntityRepository, login: str) -> User:
    found = await users.find_user_by_login(login, with_disabled=True)
    if found is None:
        raise CommandError(Exit.FAILED, f"no user with login {login!r}")
    return found[0]


async def check_data_owner(users: EntityRepository, user: User) -> None:
    """CommandError unless the data owner the user acts as, if any, exists and is not deleted."""
    for field, kind in OWNER_KINDS.items():
        owner_id = getattr(user, field)
        if owner_id is None:
            continue
        try:
            owner = await users.get(KIND_BY_NAME[kind], owner_id, SYSTEM_ACTOR)
        except NotFoundError:
            owner = None
        if owner is None or owner.is_deleted:
            flag = "--" + field.replace("_", "-")
            raise CommandError(Exit.FAILED, f"no {kind} with id {owner_id} ({flag}): create it first")


async def write(users: EntityRepository, user: User) -> User:
    """Create or update the user, hashing its new password if it has one."""
    hashes = [await hash_password(user.password) if user.password else None]
    (stored,) = await users.create_or_modify_stored(USERS, [user], SYSTEM_ACTOR, password_hashes=hashes)
    assert isinstance(stored.entity, User)
    return stored.entity


async def add_user(
    database_url: str,
    *,
    login: str,
    password: str | None,
    name: str | None,
    admin: bool,
    owner: dict[str, str | None],
) -> str:
    user = valid_user(
        login=login, name=name, password=read_password(password), roles={"ADMIN"} if admin else set(), **owner
    )
    async with users_of(database_url, create=True) as users:
        await check_data_owner(users, user)
        stored = await write(users, user)
    return f"created user {login} ({stored.id})"


async def list_users(database_url: str) -> list[str]:
    """A header line, then one tab-separated line per live user, by id."""
    lines = ["\t".join(("id", "login", "name", "roles", "data owner", "status"))]
    async with users_of(database_url) as users:
        async for user in _all(users):
            owner = next((f"{OWNER_KINDS[f]} {getattr(user, f)}" for f in OWNER_KINDS if getattr(user, f)), "-")
            status = "disabled" if user.disabled else "enabled"
            fields = (str(user.id), user.login or "-", user.name or "-", ",".join(sorted(user.roles)) or "-")
            lines.append("\t".join((*fields, owner, status)))
    return lines


async def _all(users: EntityRepository) -> AsyncIterator[User]:
    after: str | None = None
    while True:
        page = await users.list_readable(USERS, SYSTEM_ACTOR, start_after=after, limit=1000)
        for user in page:
            assert isinstance(user, User)
            yield user
        if len(page) < 1000:
            return
        after = page[-1].id


async def set_password(database_url: str, login: str, password: str | None) -> str:
    async with users_of(database_url) as users:
        user = await find(users, login)
        await write(users, valid_user(**user.to_json_dict(), password=read_password(password)))
    return f"changed the password of {login}"


async def set_disabled(database_url: str, login: str, *, disabled: bool) -> str:
    """Disable (or enable) the user: a disabled user cannot log in, and its tokens and sockets stop working."""
    async with users_of(database_url) as users:
        user = await find(users, login)
        if bool(user.disabled) != disabled:
            await write(users, user.model_copy(update={"disabled": True if disabled else None}))
    return f"{'disabled' if disabled else 'enabled'} user {login}"


async def delete_user(database_url: str, login: str) -> str:
    async with users_of(database_url) as users:
        user = await find(users, login)
        assert user.id is not None
        await users.delete(USERS, [user.id], SYSTEM_ACTOR)
    return f"deleted user {login} ({user.id})"
