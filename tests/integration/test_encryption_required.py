"""End-to-end encryption is required by default: a server started with the default settings refuses an encrypted
field sent in clear (a 400 naming it, nothing stored) and says so in its configuration; an operator turns the
requirement off with `MEDSTREAM_REQUIRE_ENCRYPTION=false` or `medstream serve --no-require-encryption`, and the
same write is stored."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.conftest import ADMIN_LOGIN, ADMIN_PASSWORD, RunningServer, serve
from tests.integration.cli_support import cli_env
from tests.integration.logged_server import serving
from tests.integration.raw_events import login

ENV = "MEDSTREAM_REQUIRE_ENCRYPTION"
CONTENT = {"en": {"stringValue": "Hello world"}}


@pytest_asyncio.fixture(scope="module", params=["sqlite", "postgresql"])
async def default_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    """A server with the default settings: nothing sets `require_encryption`, in code or in the environment."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(ENV, raising=False)
        async with serve(request.param, tmp_path_factory.mktemp(f"default-{request.param}")) as running:
            yield running


@pytest.fixture
def encryption_not_required(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's way to turn the requirement off: the servers started in the test read it at start."""
    monkeypatch.setenv(ENV, "false")


async def professional_client(url: str) -> httpx.AsyncClient:
    """An HTTP client logged in as a new healthcare professional's user (made by the admin through REST)."""
    admin = (await login(url, ADMIN_LOGIN, ADMIN_PASSWORD))["token"]
    login_name, password = f"hcp-{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {admin}"}) as http:
        hcp = await http.post("/rest/v1/healthcare-professionals", json={"firstName": "Ada", "lastName": "Clear"})
        assert hcp.status_code == 200, hcp.text
        user = {"login": login_name, "healthcarePartyId": hcp.json()["id"], "password": password}
        assert (await http.post("/rest/v1/users", json=user)).status_code == 200
    token = (await login(url, login_name, password))["token"]
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


async def write_clear_sample(http: httpx.AsyncClient) -> tuple[str, httpx.Response]:
    """A patient with clear fields only (accepted either way), then a data sample of theirs whose `content` is in
    clear: the sample's id and the answer to its write."""
    patient = await http.post("/rest/v1/patients", json={"dateOfBirth": 19850730, "gender": "female"})
    assert patient.status_code == 200, patient.text
    sample_id = str(uuid.uuid4())
    body = {"id": sample_id, "labels": [{"type": "IC-TEST", "code": "TEST"}], "content": CONTENT}
    return sample_id, await http.post(f"/rest/v1/patients/{patient.json()['id']}/data-samples", json=body)


async def configuration(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.get("/rest/v1/crypto/configuration")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_a_default_server_refuses_clear_content_with_a_400_naming_the_field_and_stores_nothing(
    default_server: RunningServer,
) -> None:
    async with await professional_client(default_server.url) as http:
        sample_id, answer = await write_clear_sample(http)

        assert answer.status_code == 400, answer.text
        error = answer.json()
        assert error["error"] == "validation_error", error
        assert "requires encryption" in error["message"] and "content" in error["message"], error
        assert f"DataSample {sample_id}" in error["message"], error
        assert (await http.get(f"/rest/v1/data-samples/{sample_id}")).status_code == 404
        assert (await http.get("/rest/v1/data-samples")).json() == []
    admin = (await login(default_server.url, ADMIN_LOGIN, ADMIN_PASSWORD))["token"]
    async with httpx.AsyncClient(base_url=default_server.url, headers={"Authorization": f"Bearer {admin}"}) as http:
        assert (await http.get(f"/rest/v1/data-samples/{sample_id}")).status_code == 404  # an admin reads all


async def test_the_configuration_of_a_default_server_says_encryption_is_required(
    default_server: RunningServer,
) -> None:
    assert (await configuration(default_server.url))["requireEncryption"] is True


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.usefixtures("encryption_not_required")
async def test_with_the_requirement_turned_off_the_same_write_is_stored_in_clear(backend: str, tmp_path: Path) -> None:
    async with serve(backend, tmp_path) as server:
        assert (await configuration(server.url))["requireEncryption"] is False
        async with await professional_client(server.url) as http:
            sample_id, answer = await write_clear_sample(http)

            assert answer.status_code == 200, answer.text
            assert answer.json()["content"]["en"]["stringValue"] == "Hello world"
            stored = await http.get(f"/rest/v1/data-samples/{sample_id}")
            assert stored.status_code == 200, stored.text
            assert (
                stored.json()["content"]["en"]["stringValue"] == "Hello world" and "encryptedSelf" not in stored.json()
            )


@pytest.mark.parametrize(
    ("options", "environment", "required"),
    [
        ((), {}, True),
        (("--no-require-encryption",), {}, False),
        ((), {ENV: "false"}, False),
        (("--require-encryption",), {ENV: "false"}, True),
    ],
    ids=["default", "negative-flag", "environment-off", "flag-over-environment"],
)
async def test_medstream_serve_requires_encryption_unless_told_otherwise(
    tmp_path: Path, options: tuple[str, ...], environment: dict[str, str], required: bool
) -> None:
    async with serving(tmp_path, *options, env=cli_env(**environment)) as server:
        assert (await configuration(server.url))["requireEncryption"] is required
