"""The command line, run as the subprocess a user runs: `medstream user add` and `medstream demo`."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import pytest

from medstream.demo import start_server
from medstream.errors import AuthenticationError
from medstream.model import HealthcareProfessional
from medstream.sdk import MedTechApi
from medstream.server.settings import Settings
from tests.integration.cli_support import MEDSTREAM, cli_env, medstream


async def test_user_add_makes_an_admin_who_logs_in_through_a_server_on_that_database(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'cli.db'}"

    code, out, err = await medstream(
        "user", "add", "--database", database_url, "--login", "x", "--password", "y-password", "--admin"
    )

    assert code == 0, err
    assert "created user x" in out
    uvicorn_server, task, url = await start_server(Settings(host="127.0.0.1", port=0, database_url=database_url))
    try:
        async with (
            await MedTechApi.builder().with_url(url).with_username("x").with_password("y-password").build() as api
        ):
            me = await api.user_api.get_logged_user()
            assert me.login == "x" and me.roles == {"ADMIN"}
            hcp = await api.healthcare_professional_api.create_or_modify_healthcare_professional(
                HealthcareProfessional(last_name="Made by the CLI admin")
            )
            assert hcp.author == me.id
        with pytest.raises(AuthenticationError):
            await MedTechApi.builder().with_url(url).with_username("x").with_password("wrong-password").build()
    finally:
        uvicorn_server.should_exit = True
        await task


async def test_user_add_refuses_a_duplicate_login_or_a_short_password_with_a_message(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'cli.db'}"
    add = ("user", "add", "--database", database_url)
    assert (await medstream(*add, "--login", "x", "--password", "y-password"))[0] == 0

    duplicate = await medstream(*add, "--login", "x", "--password", "another-password")
    short = await medstream(*add, "--login", "short", "--password", "y")

    for (code, _out, err), mention in ((duplicate, "already exists"), (short, "password")):
        assert code != 0
        assert mention in err and "Traceback" not in err, err
    assert "\ny\n" not in short[2] and "'y'" not in short[2], "the password is not echoed"


def test_demo_runs_the_scenario_and_exits_0(tmp_path: Path) -> None:
    result = subprocess.run(
        [MEDSTREAM, "demo", "--exit", "--port", "0", "--database", f"sqlite:///{tmp_path / 'demo.db'}"],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(),
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "John Snow" in result.stdout
    assert "Hello world" in result.stdout
    stored = re.search(r"stored the data sample with content \{\} and encryptedSelf ([A-Za-z0-9+/]{4})", result.stdout)
    assert stored is not None, result.stdout
    assert base64.b64decode(stored.group(1))[0] == 1, "the server holds suite 1 ciphertext"
    assert (tmp_path / "demo.db").exists()
