"""Shared fixtures: a real server on a real database (SQLite and PostgreSQL), reached over real sockets."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from argon2 import PasswordHasher

from medstream.model import HealthcareProfessional, User
from medstream.sdk import MedTechApi
from medstream.server import security
from medstream.server.runner import start_server
from medstream.server.settings import Settings
from tests.locks import machine_slot

PG_HOST = os.environ.get("MEDSTREAM_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("MEDSTREAM_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("MEDSTREAM_TEST_PG_USER", "postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"
ADMIN_LOGIN = "admin"
ADMIN_PASSWORD = "admin-password-for-tests"

_pg_unreachable: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "exclusive: runs while no other test of any worker (or of another run on the machine) runs (tests/locks.py)",
    )


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """Each test holds the machine's test slot from its setup to its teardown (the fixtures of wider scope that
    it starts or ends included): shared, or whole for a test marked `exclusive`."""
    with machine_slot(exclusive=item.get_closest_marker("exclusive") is not None):
        yield


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    """Argon2 at its production cost takes about 0.1 s per hash or check, and the suite creates and logs in
    hundreds of users: the in-process test servers hash with the cheapest parameters instead. The hashing logic
    is unchanged (and a hash made at any cost still verifies); only its cost is not under test here."""
    saved = security._hasher
    security._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    security._hasher = saved


@pytest.fixture(scope="session", autouse=True)
def key_stores_in_a_temporary_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every SDK a test logs in as a data owner makes or opens its key store in the default place
    (`$XDG_DATA_HOME/medstream/keys/...`): a directory of this run, never the home directory's."""
    saved = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data"))
    yield
    if saved is None:
        os.environ.pop("XDG_DATA_HOME", None)
    else:
        os.environ["XDG_DATA_HOME"] = saved


def unused_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for servers a test starts and restarts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _pg_admin_connection() -> asyncpg.Connection:
    return await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres", timeout=5)


async def create_pg_database() -> str:
    """A fresh PostgreSQL database for this test run; skips (or fails in CI) when PostgreSQL is down."""
    global _pg_unreachable
    if _pg_unreachable is None:
        try:
            conn = await _pg_admin_connection()
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            _pg_unreachable = f"PostgreSQL unreachable at {PG_HOST}:{PG_PORT}: {exc!r}"
        else:
            await conn.close()
            _pg_unreachable = ""
    if _pg_unreachable:
        if IN_CI:
            pytest.fail(f"{_pg_unreachable} (CI=true: PostgreSQL tests must run)")
        pytest.skip(_pg_unreachable)
    name = f"medstream_test_{uuid.uuid4().hex[:12]}"
    conn = await _pg_admin_connection()
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_pg_database(name: str) -> None:
    conn = await _pg_admin_connection()
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def terminate_medstream_backends(database_url: str) -> int:
    """Kill every PostgreSQL backend Medstream holds on the database of `database_url`, as a restart or a proxy
    dropping idle connections would; how many were killed."""
    conn = await _pg_admin_connection()
    try:
        killed: int = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = $1 AND application_name = 'medstream'",
            database_url.rsplit("/", 1)[1],
        )
    finally:
        await conn.close()
    return killed


@contextlib.asynccontextmanager
async def database_url_for(backend: str, directory: Path) -> AsyncIterator[str]:
    """A database URL on `backend` ("sqlite" or "postgresql") that is dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / f'medstream-{uuid.uuid4().hex[:8]}.db'}"
        return
    name = await create_pg_database()
    try:
        yield f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        await drop_pg_database(name)


@dataclass(frozen=True)
class RunningServer:
    url: str
    database_url: str
    backend: str
    admin_login: str = ADMIN_LOGIN
    admin_password: str = ADMIN_PASSWORD

    async def api(self, login: str, password: str) -> MedTechApi:
        return await MedTechApi.builder().with_url(self.url).with_username(login).with_password(password).build()


@contextlib.asynccontextmanager
async def serve(backend: str, directory: Path, **settings: object) -> AsyncIterator[RunningServer]:
    """A server on a new database of `backend`, with the test admin and `settings` beyond the defaults."""
    async with database_url_for(backend, directory) as database_url:
        configured = Settings(
            host="127.0.0.1",
            port=0,
            database_url=database_url,
            admin_login=ADMIN_LOGIN,
            admin_password=ADMIN_PASSWORD,
            **settings,  # type: ignore[arg-type]
        )
        uvicorn_server, task, url = await start_server(configured)
        try:
            yield RunningServer(url=url, database_url=database_url, backend=backend)
        finally:
            uvicorn_server.should_exit = True
            await task


@pytest_asyncio.fixture(scope="session", params=["sqlite", "postgresql"])
async def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    """One server per database backend, shared by every integration test of the session."""
    backend: str = request.param
    # These tests exercise REST, filters and the event protocol with clear payloads (raw HTTP, raw sockets, the
    # admin's SDK, which holds no keys); the end-to-end encryption tests run servers that require encryption.
    async with serve(backend, tmp_path_factory.mktemp(backend), require_encryption=False) as running:
        yield running


@pytest_asyncio.fixture
async def admin_api(server: RunningServer) -> AsyncIterator[MedTechApi]:
    api = await server.api(server.admin_login, server.admin_password)
    yield api
    await api.close()


@dataclass(frozen=True)
class Doctor:
    id: str
    login: str
    password: str

    def config(self, server: RunningServer, storage: Path, encryption: str = "server") -> dict[str, Any]:
        return {"url": server.url, "login": self.login, "password": self.password, "storage": str(storage),
                "encryption": encryption}  # fmt: skip


async def new_doctor(server: RunningServer) -> Doctor:
    """A professional and their user, made by the admin the Medstream way (on a server of a test's own, where the
    `new_professional` fixture's session server is not the one)."""
    admin = await server.api(server.admin_login, server.admin_password)
    try:
        hcp = await admin.healthcare_professional_api.create_or_modify_healthcare_professional(
            HealthcareProfessional(first_name="Jane", last_name="Doe")
        )
        assert hcp.id is not None
        login, password = f"hcp-{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
        await admin.user_api.create_or_modify_user(User(login=login, healthcare_party_id=hcp.id, password=password))
    finally:
        await admin.close()
    return Doctor(hcp.id, login, password)


@dataclass
class Professional:
    """A healthcare professional with a logged-in SDK acting as them."""

    api: MedTechApi
    hcp: HealthcareProfessional
    login: str
    password: str

    @property
    def id(self) -> str:
        assert self.hcp.id is not None
        return self.hcp.id


ProfessionalFactory = Callable[..., Awaitable[Professional]]


@pytest_asyncio.fixture
async def new_professional(server: RunningServer, admin_api: MedTechApi) -> AsyncIterator[ProfessionalFactory]:
    """Factory: a new professional, their user, and an SDK logged in as them (closed after the test)."""
    made: list[MedTechApi] = []

    async def make(first_name: str = "Jane", last_name: str = "Doe") -> Professional:
        hcp = await admin_api.healthcare_professional_api.create_or_modify_healthcare_professional(
            HealthcareProfessional(first_name=first_name, last_name=last_name)
        )
        login, password = f"hcp-{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
        await admin_api.user_api.create_or_modify_user(User(login=login, healthcare_party_id=hcp.id, password=password))
        api = await server.api(login, password)
        made.append(api)
        return Professional(api=api, hcp=hcp, login=login, password=password)

    yield make
    for api in made:
        await api.close()
