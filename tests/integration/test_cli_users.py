"""`medstream user ...` on the database of a running server (SQLite and PostgreSQL): the server sees each change."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from medstream.admin.exits import Exit
from medstream.errors import AuthenticationError, ForbiddenError
from medstream.model import HealthcareProfessional
from medstream.sdk import MedTechApi
from medstream.server.runner import start_server
from medstream.server.settings import Settings
from tests.conftest import ProfessionalFactory, RunningServer
from tests.integration.cli_support import medstream, one_line
from tests.integration.raw_events import RawClient
from tests.integration.raw_events import login as raw_login


async def _user(server: RunningServer, *args: str) -> tuple[int, str, str]:
    command, *rest = args
    return await medstream("user", command, "--database", server.database_url, *rest)


async def _refused_within(seconds: float, attempt: Callable[[], Awaitable[object]]) -> AuthenticationError:
    """The AuthenticationError `attempt` (a coroutine function) raises once the change reached the server."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            await attempt()
        except AuthenticationError as exc:
            return exc
        assert time.monotonic() < deadline, "the change did not reach the server"
        await asyncio.sleep(0.1)


async def test_user_add_refuses_a_data_owner_that_does_not_exist(server: RunningServer, admin_api: MedTechApi) -> None:
    login = f"cli-{uuid.uuid4().hex[:8]}"
    missing = str(uuid.uuid4())

    code, _out, err = await _user(server, "add", "--login", login, "--password", "pw-12345678", "--patient-id", missing)

    assert code == Exit.FAILED
    line = one_line(err)
    assert f"no Patient with id {missing}" in line and "--patient-id" in line
    with pytest.raises(AuthenticationError):
        await server.api(login, "pw-12345678")


async def test_user_add_acts_as_an_existing_professional(server: RunningServer, admin_api: MedTechApi) -> None:
    hcp = await admin_api.healthcare_professional_api.create_or_modify_healthcare_professional(
        HealthcareProfessional(last_name="Known")
    )
    assert hcp.id is not None
    login = f"cli-{uuid.uuid4().hex[:8]}"

    code, _out, err = await _user(
        server, "add", "--login", login, "--password", "pw-12345678", "--healthcare-party-id", hcp.id
    )

    assert code == 0, err
    async with await server.api(login, "pw-12345678") as api:
        assert (await api.user_api.get_logged_user()).healthcare_party_id == hcp.id
    _code, listed, _err = await _user(server, "list")
    row = next(line.split("\t") for line in listed.splitlines() if f"\t{login}\t" in line)
    assert row[4] == f"HealthcareProfessional {hcp.id}" and row[5] == "enabled"


async def test_disable_ends_the_users_session_and_refuses_login_until_enabled(server: RunningServer) -> None:
    login, password = f"cli-{uuid.uuid4().hex[:8]}", "pw-12345678"
    assert (await _user(server, "add", "--login", login, "--password", password))[0] == 0
    api = await server.api(login, password)
    pair = await raw_login(server.url, login, password)
    try:
        async with RawClient.opened(server.url, pair["token"]) as socket:
            assert (await socket.subscribe("s", "Patient"))["type"] == "subscribed"

            code, out, err = await _user(server, "disable", login)

            assert code == 0, err
            assert f"disabled user {login}" in out
            assert (await socket.closed(within=30))[0] == AuthenticationError.close_code
        await _refused_within(30, api.user_api.get_logged_user)
        with pytest.raises(AuthenticationError):
            await server.api(login, password)
        _code, listed, _err = await _user(server, "list")
        assert any(f"\t{login}\t" in line and line.endswith("\tdisabled") for line in listed.splitlines())
    finally:
        await api.close()

    assert (await _user(server, "enable", login))[0] == 0
    async with await server.api(login, password) as again:
        assert (await again.user_api.get_logged_user()).login == login


async def test_set_password_replaces_the_old_one(server: RunningServer) -> None:
    login = f"cli-{uuid.uuid4().hex[:8]}"
    assert (await _user(server, "add", "--login", login, "--password", "old-password"))[0] == 0

    code, out, err = await _user(server, "set-password", login, "--password", "new-password")

    assert code == 0, err
    assert f"changed the password of {login}" in out
    with pytest.raises(AuthenticationError):
        await server.api(login, "old-password")
    async with await server.api(login, "new-password") as api:
        assert (await api.user_api.get_logged_user()).login == login
    short = await _user(server, "set-password", login, "--password", "short")
    assert short[0] == Exit.FAILED and "password" in one_line(short[2]) and "short" not in short[2]


async def test_delete_removes_the_user_and_frees_its_login(server: RunningServer) -> None:
    login = f"cli-{uuid.uuid4().hex[:8]}"
    assert (await _user(server, "add", "--login", login, "--password", "pw-12345678"))[0] == 0
    api = await server.api(login, "pw-12345678")
    try:
        code, out, err = await _user(server, "delete", login)

        assert code == 0, err
        assert f"deleted user {login}" in out
        await _refused_within(30, api.user_api.get_logged_user)
    finally:
        await api.close()
    again = await _user(server, "delete", login)
    assert again[0] == Exit.FAILED and f"no user with login {login!r}" in one_line(again[2])
    assert (await _user(server, "add", "--login", login, "--password", "pw-87654321"))[0] == 0


@pytest.mark.parametrize("command", ["disable", "enable", "set-password", "delete"])
async def test_a_command_on_an_unknown_login_says_so(server: RunningServer, command: str) -> None:
    code, _out, err = await _user(
        server, command, "nobody-has-this-login", *(["--password", "x" * 10] * (command == "set-password"))
    )

    assert code == Exit.FAILED
    assert "no user with login 'nobody-has-this-login'" in one_line(err)


async def test_only_an_admin_disables_or_enables_a_user(new_professional: ProfessionalFactory) -> None:
    professional = await new_professional()
    me = await professional.api.user_api.get_logged_user()

    with pytest.raises(ForbiddenError, match="disabled"):
        await professional.api.user_api.create_or_modify_user(me.model_copy(update={"disabled": True}))


async def test_a_server_starts_with_its_admin_login_held_by_a_disabled_user(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    assert (await medstream("user", "add", "--database", url, "--login", "boss", "--password", "pw-12345678"))[0] == 0
    assert (await medstream("user", "disable", "--database", url, "boss"))[0] == 0

    settings = Settings(host="127.0.0.1", port=0, database_url=url, admin_login="boss", admin_password="pw-other-1")
    uvicorn_server, task, base = await start_server(settings)
    try:
        with pytest.raises(AuthenticationError):
            await MedTechApi.builder().with_url(base).with_username("boss").with_password("pw-12345678").build()
    finally:
        uvicorn_server.should_exit = True
        await task
    _code, listed, _err = await medstream("user", "list", "--database", url)
    assert [line.split("\t")[1] for line in listed.splitlines()[1:]] == ["boss"], "no second user was made"
