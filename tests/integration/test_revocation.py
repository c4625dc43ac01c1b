"""A token stops working within seconds when its user is deleted or its roles or data owner change; a password,
role or data-owner change and a logout end the user's sessions (access and refresh tokens, event sockets);
refresh tokens are used up, and a reused one ends its family."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from medstream.errors import AuthenticationError
from medstream.sdk import MedTechApi
from medstream.store.database import Database
from medstream.store.sessions import Rotation, SessionStore
from tests.conftest import ProfessionalFactory, RunningServer


def _bearer(api: MedTechApi) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.transport._token}"}


async def test_a_deleted_users_token_is_refused(
    server: RunningServer, admin_api: MedTechApi, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    me = await doctor.api.user_api.get_logged_user()
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/rest/v1/users/current", headers=_bearer(doctor.api))).status_code == 200
        await admin_api.user_api.delete_user(str(me.id))
        answer = await client.get("/rest/v1/users/current", headers=_bearer(doctor.api))
    assert answer.status_code == 401
    assert "no longer exists" in answer.json()["message"]


async def test_a_token_issued_before_a_role_change_is_refused(
    server: RunningServer, admin_api: MedTechApi, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    me = await doctor.api.user_api.get_logged_user()
    old_token = _bearer(doctor.api)
    await admin_api.user_api.create_or_modify_user(me.model_copy(update={"roles": {"ADMIN"}}))
    async with httpx.AsyncClient(base_url=server.url) as client:
        answer = await client.get("/rest/v1/users/current", headers=old_token)
    assert answer.status_code == 401 and "log in again" in answer.json()["message"]
    # the SDK logs in again on its own and now acts as an admin
    others = await doctor.api.user_api.get_user(str((await admin_api.user_api.get_logged_user()).id))
    assert others.login == server.admin_login


async def test_deleting_a_user_closes_their_event_sockets_with_4001(
    server: RunningServer, admin_api: MedTechApi, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    me = await doctor.api.user_api.get_logged_user()
    async with connect(server.url.replace("http", "ws", 1) + "/ws/v1/events") as socket:
        await socket.send(orjson.dumps({"type": "auth", "token": doctor.api.transport._token}).decode())
        subscribe = {"type": "subscribe", "id": "s", "entity": "Patient", "events": ["CREATE"]}
        await socket.send(orjson.dumps(subscribe).decode())
        assert orjson.loads(await asyncio.wait_for(socket.recv(), 5))["type"] == "subscribed"
        await admin_api.user_api.delete_user(str(me.id))
        try:
            while True:
                await asyncio.wait_for(socket.recv(), 5)
        except ConnectionClosed:
            pass
        assert socket.close_code == 4001
        assert "no longer exists" in (socket.close_reason or "")


LOGIN = "/rest/v1/auth/login"
REFRESH = "/rest/v1/auth/refresh"
LOGOUT = "/rest/v1/auth/logout"


async def _login(client: httpx.AsyncClient, login: str, password: str) -> dict[str, str]:
    answer = await client.post(LOGIN, json={"username": login, "password": password})
    assert answer.status_code == 200, answer.text
    pair: dict[str, str] = answer.json()
    return pair


async def _refused(client: httpx.AsyncClient, pair: dict[str, str]) -> tuple[int, int]:
    """The status of a read with the pair's access token, and of a refresh with its refresh token."""
    read = await client.get("/rest/v1/users/current", headers={"Authorization": f"Bearer {pair['token']}"})
    refreshed = await client.post(REFRESH, json={"refreshToken": pair["refreshToken"]})
    return read.status_code, refreshed.status_code


async def test_a_password_changed_by_an_admin_ends_the_old_tokens(
    server: RunningServer, admin_api: MedTechApi, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    me = await doctor.api.user_api.get_logged_user()
    async with httpx.AsyncClient(base_url=server.url) as client:
        stolen = await _login(client, doctor.login, doctor.password)
        assert await _refused(client, await _login(client, doctor.login, doctor.password)) == (200, 200)
        await admin_api.user_api.create_or_modify_user(me.model_copy(update={"password": "a-new-password-1"}))
        assert await _refused(client, stolen) == (401, 401)
        assert (
            await client.post(LOGIN, json={"username": doctor.login, "password": doctor.password})
        ).status_code == 401
        assert await _refused(client, await _login(client, doctor.login, "a-new-password-1")) == (200, 200)


async def test_a_password_changed_by_its_user_ends_the_old_tokens_and_sockets(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    async with httpx.AsyncClient(base_url=server.url) as client:
        stolen = await _login(client, doctor.login, doctor.password)
        async with _subscribed(server, stolen["token"]) as socket:
            me = await doctor.api.user_api.get_logged_user()
            await doctor.api.user_api.create_or_modify_user(me.model_copy(update={"password": "a-new-password-2"}))
            assert await _closed_with(socket) == 4001
        assert await _refused(client, stolen) == (401, 401)


async def test_a_role_or_data_owner_change_ends_the_refresh_tokens_too(
    server: RunningServer, admin_api: MedTechApi, new_professional: ProfessionalFactory
) -> None:
    doctor, other = await new_professional(), await new_professional()
    me = await doctor.api.user_api.get_logged_user()
    async with httpx.AsyncClient(base_url=server.url) as client:
        before_role = await _login(client, doctor.login, doctor.password)
        me = await admin_api.user_api.create_or_modify_user(me.model_copy(update={"roles": {"AUDITOR"}}))
        assert await _refused(client, before_role) == (401, 401)
        before_owner = await _login(client, doctor.login, doctor.password)
        await admin_api.user_api.create_or_modify_user(me.model_copy(update={"healthcare_party_id": other.id}))
        assert await _refused(client, before_owner) == (401, 401)


async def test_a_profile_change_without_password_role_or_owner_keeps_the_sessions(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    async with httpx.AsyncClient(base_url=server.url) as client:
        pair = await _login(client, doctor.login, doctor.password)
        me = await doctor.api.user_api.get_logged_user()
        await doctor.api.user_api.create_or_modify_user(me.model_copy(update={"email": "jane@example.org"}))
        assert await _refused(client, pair) == (200, 200)


async def test_logout_ends_every_session_of_the_user_and_closes_its_sockets(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    async with httpx.AsyncClient(base_url=server.url) as client:
        first, second = (
            await _login(client, doctor.login, doctor.password),
            await _login(client, doctor.login, doctor.password),
        )
        async with _subscribed(server, second["token"]) as socket:
            answer = await client.post(LOGOUT, headers={"Authorization": f"Bearer {first['token']}"})
            assert answer.status_code == 204, answer.text
            assert await _closed_with(socket) == 4001
        assert await _refused(client, first) == (401, 401)
        assert await _refused(client, second) == (401, 401)
        assert await _refused(client, await _login(client, doctor.login, doctor.password)) == (200, 200)


async def test_the_sdks_logout_ends_its_tokens_and_other_instances_log_in_again(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    other = await server.api(doctor.login, doctor.password)
    try:
        token = doctor.api.transport._token
        await doctor.api.logout()
        async with httpx.AsyncClient(base_url=server.url) as client:
            read = await client.get("/rest/v1/users/current", headers={"Authorization": f"Bearer {token}"})
        assert read.status_code == 401
        assert (await other.user_api.get_logged_user()).login == doctor.login  # it logged in again
    finally:
        await other.close()


async def test_a_refresh_token_is_used_up_and_a_reused_one_ends_its_family(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    async with httpx.AsyncClient(base_url=server.url) as client:
        pair = await _login(client, doctor.login, doctor.password)
        unrelated = await _login(client, doctor.login, doctor.password)  # another session of the same user
        rotated = await client.post(REFRESH, json={"refreshToken": pair["refreshToken"]})
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["refreshToken"] != pair["refreshToken"]
        replayed = await client.post(REFRESH, json={"refreshToken": pair["refreshToken"]})
        assert replayed.status_code == 401 and "used already" in replayed.json()["message"]
        # the whole family is ended: the thief's replay also kills the refresh token the owner got
        again = await client.post(REFRESH, json={"refreshToken": rotated.json()["refreshToken"]})
        assert again.status_code == 401
        assert await _refused(client, unrelated) == (200, 200)


async def test_the_sdk_keeps_the_rotated_refresh_token(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    transport = doctor.api.transport

    async def no_login() -> None:
        raise AssertionError("the SDK logged in again instead of refreshing")

    transport.login = no_login  # type: ignore[method-assign]
    seen = {transport._refresh_token}
    for _ in range(3):
        transport._expires_at = 0.0  # as if the access token had expired: the next call refreshes
        assert (await doctor.api.user_api.get_logged_user()).login == doctor.login
        seen.add(transport._refresh_token)
    assert len(seen) == 4


@contextlib.asynccontextmanager
async def _subscribed(server: RunningServer, token: str) -> AsyncIterator[ClientConnection]:
    async with connect(server.url.replace("http", "ws", 1) + "/ws/v1/events") as socket:
        await socket.send(orjson.dumps({"type": "auth", "token": token}).decode())
        subscribe = {"type": "subscribe", "id": "s", "entity": "Patient", "events": ["CREATE"]}
        await socket.send(orjson.dumps(subscribe).decode())
        assert orjson.loads(await asyncio.wait_for(socket.recv(), 5))["type"] == "subscribed"
        yield socket


async def _closed_with(socket: ClientConnection) -> int | None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            await asyncio.wait_for(socket.recv(), 10)
    return socket.close_code


async def test_expired_sessions_are_dropped_and_live_ones_kept(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'sessions.db'}")
    await database.migrate()
    try:
        sessions = SessionStore(database)
        now = int(time.time())
        await sessions.start_family("expired", "user-1", 0, "jti-1", now - 1)
        await sessions.start_family("live", "user-1", 0, "jti-2", now + 3600)
        assert await sessions.drop_expired(now) == 1
        await sessions.rotate(Rotation("live", "user-1", 0, "jti-2", "jti-3", now + 3600), now)
        with pytest.raises(AuthenticationError, match="revoked"):
            await sessions.rotate(Rotation("expired", "user-1", 0, "jti-1", "jti-4", now + 3600), now)
    finally:
        await database.close()


async def test_an_sdk_that_changes_its_own_password_goes_on_with_the_new_one(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    me = await doctor.api.user_api.get_logged_user()
    await doctor.api.user_api.create_or_modify_user(me.model_copy(update={"password": "a-new-password-3"}))
    assert (await doctor.api.user_api.get_logged_user()).login == doctor.login  # logged in again, with the new one
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert await _refused(client, await _login(client, doctor.login, "a-new-password-3")) == (200, 200)
