"""`medstream backup` and `medstream check` on the database of a running server (SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from medstream.admin.exits import Exit
from medstream.model import HealthcareProfessional
from medstream.sdk import MedTechApi
from medstream.server.runner import start_server
from medstream.server.settings import Settings
from medstream.store.database import Database
from tests.conftest import PG_HOST, PG_USER, RunningServer, database_url_for, unused_port
from tests.integration.cli_support import medstream, one_line


async def test_backup_copies_a_database_in_use(server: RunningServer, admin_api: MedTechApi, tmp_path: Path) -> None:
    name = f"Backed up {uuid.uuid4().hex[:8]}"
    hcp = await admin_api.healthcare_professional_api.create_or_modify_healthcare_professional(
        HealthcareProfessional(last_name=name)
    )
    target = tmp_path / "copy.db"

    code, out, err = await medstream("backup", "--database", server.database_url, str(target))

    if server.backend == "postgresql":
        assert code == Exit.FAILED and not target.exists()
        line = one_line(err)
        database = server.database_url.rsplit("/", 1)[1]
        for part in ("pg_dump", f"--host={PG_HOST}", f"--username={PG_USER}", f"--file={target}", database):
            assert part in line, line
        return
    assert code == 0, err
    assert f"backed up {server.database_url.removeprefix('sqlite:///')} to {target}" in out
    with sqlite3.connect(target) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    copy_server, task, url = await start_server(Settings(host="127.0.0.1", port=0, database_url=f"sqlite:///{target}"))
    try:
        async with (
            await MedTechApi.builder()
            .with_url(url)
            .with_username(server.admin_login)
            .with_password(server.admin_password)
            .build() as api
        ):
            assert hcp.id is not None
            copied = await api.healthcare_professional_api.get_healthcare_professional(hcp.id)
            assert copied.last_name == name
    finally:
        copy_server.should_exit = True
        await task


async def test_backup_never_overwrites_a_file(server: RunningServer, tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_bytes(b"keep me")

    code, _out, err = await medstream("backup", "--database", server.database_url, str(target))

    # SQLite refuses the existing file; PostgreSQL makes no copy at all (it names the pg_dump command instead).
    assert code == Exit.FAILED
    assert ("exists" if server.backend == "sqlite" else "pg_dump") in one_line(err)
    assert target.read_bytes() == b"keep me"


async def test_check_reports_the_log_of_a_running_servers_database(
    server: RunningServer, admin_api: MedTechApi
) -> None:
    await admin_api.healthcare_professional_api.create_or_modify_healthcare_professional(
        HealthcareProfessional(last_name="Checked")
    )

    code, out, err = await medstream("check", "--database", server.database_url)

    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("configuration: valid")
    assert f"database: reachable ({server.backend})" in lines
    assert any(line.startswith("migrations: current") for line in lines)
    log = next(line for line in lines if line.startswith("event log: head "))
    head = int(log.removeprefix("event log: head ").split(",")[0])
    events = int(log.rsplit(", ", 1)[1].removesuffix(" events"))
    assert head >= 1 and events >= 1
    assert any(line.strip().startswith("newest: ") for line in lines)
    assert any(line.strip().startswith("lag: ") for line in lines)
    assert any(line.strip().startswith("retention: ") for line in lines)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_check_finds_a_schema_behind_this_version(backend: str, tmp_path: Path) -> None:
    async with database_url_for(backend, tmp_path) as url:
        add = await medstream("user", "add", "--database", url, "--login", "x", "--password", "pw-12345678")
        assert add[0] == 0, add[2]
        database = Database(url)
        try:
            await database.run_write(lambda conn: conn.execute(text("UPDATE alembic_version SET version_num = '0003'")))
        finally:
            await database.close()

        code, out, err = await medstream("check", "--database", url)

    assert code == Exit.CHECK_FAILED
    line = one_line(err)
    assert "migrations not current" in line and "0003" in line
    assert "database: reachable" in out


async def test_check_on_an_unreachable_postgresql_says_so() -> None:
    url = f"postgresql://{PG_USER}@{PG_HOST}:{unused_port()}/medstream"

    code, _out, err = await medstream("check", "--database", url)

    assert code == Exit.DATABASE_UNREACHABLE
    assert "cannot open the database" in one_line(err)
