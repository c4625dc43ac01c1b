"""The database always keeps a live admin: the last one can neither delete itself, lose its ADMIN role, nor be
disabled."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from medstream.errors import ConflictError
from medstream.model import User
from medstream.sdk import MedTechApi
from medstream.server.runner import start_server
from medstream.server.settings import Settings
from tests.conftest import ADMIN_LOGIN, ADMIN_PASSWORD, RunningServer, database_url_for


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def lone_admin(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MedTechApi]:
    """A server of its own, whose only admin is the one it starts with, and an SDK logged in as that admin."""
    async with database_url_for(request.param, tmp_path) as database_url:
        settings = Settings(port=0, database_url=database_url, admin_login=ADMIN_LOGIN, admin_password=ADMIN_PASSWORD)
        uvicorn_server, task, url = await start_server(settings)
        try:
            api = await RunningServer(url=url, database_url=database_url, backend=request.param).api(
                ADMIN_LOGIN, ADMIN_PASSWORD
            )
            try:
                yield api
            finally:
                await api.close()
        finally:
            uvicorn_server.should_exit = True
            await task


async def test_the_last_admin_cannot_delete_itself_or_drop_its_admin_role(lone_admin: MedTechApi) -> None:
    me = await lone_admin.user_api.get_logged_user()
    assert me.id is not None
    with pytest.raises(ConflictError, match="no admin"):
        await lone_admin.user_api.delete_user(me.id)
    with pytest.raises(ConflictError, match="no admin"):
        await lone_admin.user_api.create_or_modify_user(me.model_copy(update={"roles": {"AUDITOR"}}))
    with pytest.raises(ConflictError, match="no admin"):  # a disabled admin cannot log in: no live admin either
        await lone_admin.user_api.create_or_modify_user(me.model_copy(update={"disabled": True}))
    after = await lone_admin.user_api.get_logged_user()
    assert after.rev == me.rev and after.is_admin and not after.is_deleted and not after.disabled


async def test_an_admin_may_go_once_another_admin_remains(lone_admin: MedTechApi) -> None:
    me = await lone_admin.user_api.get_logged_user()
    assert me.id is not None
    other = await lone_admin.user_api.create_or_modify_user(
        User(login="second-admin", roles={"ADMIN"}, password="second-admin-password")
    )
    assert other.id is not None
    demoted = await lone_admin.user_api.create_or_modify_user(me.model_copy(update={"roles": set()}))
    assert not demoted.is_admin
    second = (
        await MedTechApi.builder()
        .with_url(lone_admin.transport.base_url)
        .with_username("second-admin")
        .with_password("second-admin-password")
        .build()
    )
    try:
        with pytest.raises(ConflictError, match="no admin"):  # now the last one
            await second.user_api.delete_user(other.id)
        await second.user_api.delete_user(str(me.id))  # a user no longer admin goes
    finally:
        await second.close()
