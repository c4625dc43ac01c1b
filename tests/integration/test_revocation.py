"""A token stops working within seconds when its user is deleted or its roles or data owner change."""

from __future__ import annotations

import asyncio

import httpx
import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from medstream.sdk import MedTechApi
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
