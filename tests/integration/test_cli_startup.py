"""Start-up with a bad configuration: the real `medstream` command prints one line naming the problem and the
setting, and exits with the code of that kind of problem (docs/deploy.md), with no traceback."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from medstream.admin.exits import Exit
from tests.conftest import PG_HOST, PG_USER, unused_port
from tests.integration.cli_support import MEDSTREAM, cli_env, medstream, one_line


@pytest.mark.parametrize(
    ("args", "code", "mentions"),
    [
        (["--database", "mysql://db.example/x"], Exit.INVALID_SETTING, ["database_url", "--database", "mysql"]),
        (["--database", "not a url"], Exit.INVALID_SETTING, ["database_url", "MEDSTREAM_DATABASE_URL"]),
        (["--port", "eighty"], Exit.INVALID_SETTING, ["port", "--port"]),
        (["--prot", "8080"], Exit.USAGE, ["unrecognized arguments: --prot"]),
        (["--database", "sqlite:///{tmp}/no/such/dir/m.db"], Exit.DATABASE_MISSING, ["directory", "{tmp}/no/such"]),
        (
            ["--database", f"postgresql://{PG_USER}@{PG_HOST}:{{closed}}/medstream"],
            Exit.DATABASE_UNREACHABLE,
            ["cannot open the database", "Connection refused", "database_url"],
        ),
    ],
)
async def test_serve_with_a_bad_setting_says_which_in_one_line(
    args: list[str], code: Exit, mentions: list[str], tmp_path: Path
) -> None:
    closed = unused_port()  # nothing listens there: PostgreSQL there is unreachable
    filled = [a.format(tmp=tmp_path, closed=closed) for a in args]

    exit_code, _out, err = await medstream("serve", "--port", "0", *filled)

    line = one_line(err)
    assert exit_code == code, err
    for mention in mentions:
        assert mention.format(tmp=tmp_path) in line, line
    assert not (tmp_path / "no").exists()


async def test_a_medstream_variable_that_names_no_setting_is_refused(tmp_path: Path) -> None:
    env = cli_env(MEDSTREAM_WS_SEND_QUEUES="5")  # a typo of MEDSTREAM_WS_SEND_QUEUE

    exit_code, _out, err = await medstream("serve", "--database", f"sqlite:///{tmp_path / 'm.db'}", env=env)

    assert exit_code == Exit.USAGE
    assert "MEDSTREAM_WS_SEND_QUEUES" in one_line(err)
    assert not (tmp_path / "m.db").exists()


async def test_serve_on_a_port_in_use_says_so(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        exit_code, _out, err = await medstream(
            "serve", "--host", "127.0.0.1", "--port", str(port), "--database", f"sqlite:///{tmp_path / 'm.db'}"
        )

    assert exit_code == Exit.CANNOT_LISTEN
    line = one_line(err)
    assert f"127.0.0.1:{port}" in line and "in use" in line and "--port" in line
    assert not (tmp_path / "m.db").exists(), "nothing is created for a server that cannot start"


async def test_debug_log_level_prints_the_traceback(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'no' / 'm.db'}"

    exit_code, _out, err = await medstream("serve", "--port", "0", "--log-level", "debug", "--database", database)

    assert exit_code == Exit.DATABASE_MISSING
    assert "Traceback" in err and "the directory of the SQLite database" in err


async def test_serve_creates_a_missing_sqlite_database_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    process = await asyncio.create_subprocess_exec(
        MEDSTREAM,
        "serve",
        "--port",
        "0",
        "--database",
        f"sqlite:///{path}",
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        env=cli_env(),
    )
    assert process.stderr is not None
    try:
        first = (await asyncio.wait_for(process.stderr.readline(), timeout=60)).decode()
        started = ""
        while "Application startup complete" not in started:
            started = (await asyncio.wait_for(process.stderr.readline(), timeout=60)).decode()
            assert started, "the server stopped before it started"
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=30)

    assert "no SQLite database at" in first and str(path) in first and "creating" in first
    assert path.is_file()


async def test_check_never_creates_a_missing_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"

    exit_code, _out, err = await medstream("check", "--database", f"sqlite:///{path}")

    assert exit_code == Exit.DATABASE_MISSING
    assert f"no SQLite database at {path}" in one_line(err)
    assert not path.exists()


async def test_a_file_that_is_not_a_database_is_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database, but an operator's notes\n" * 200)

    exit_code, _out, err = await medstream("serve", "--port", "0", "--database", f"sqlite:///{path}")

    assert exit_code == Exit.DATABASE_UNREACHABLE
    assert "file is not a database" in one_line(err)
    assert path.read_text() == "not a database, but an operator's notes\n" * 200
