"""Login, token refresh and expiry, the SDK's own token renewal, login slow-down, and what answers without a token."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url

from medstream.demo import start_server
from medstream.errors import UnavailableError
from medstream.model import HealthcareProfessional, Patient
from medstream.server import security
from medstream.server.settings import Settings
from medstream.store.database import Database
from tests.conftest import ProfessionalFactory, RunningServer, database_url_for, drop_pg_database
from tests.integration.kinds import expired_access_token, jwt_secret

LOGIN = "/rest/v1/auth/login"
REFRESH = "/rest/v1/auth/refresh"
OPEN_PATHS = {"/health", "/rest/v1/crypto/configuration", LOGIN, REFRESH}


@pytest_asyncio.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url) as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == error and body["message"]
    return body


async def test_login_gives_an_access_and_a_refresh_token_that_work(
    client: httpx.AsyncClient, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()

    response = await client.post(LOGIN, json={"username": doctor.login, "password": doctor.password})

    assert response.status_code == 200, response.text
    pair = response.json()
    assert pair["tokenType"] == "Bearer" and pair["expiresIn"] > 0 and pair["token"] != pair["refreshToken"]
    me = await client.get("/rest/v1/users/current", headers=bearer(pair["token"]))
    assert me.status_code == 200 and me.json()["login"] == doctor.login

    refreshed = await client.post(REFRESH, json={"refreshToken": pair["refreshToken"]})
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["token"] != pair["token"]
    me = await client.get("/rest/v1/users/current", headers=bearer(refreshed.json()["token"]))
    assert me.status_code == 200 and me.json()["login"] == doctor.login

    by_header = await client.post(REFRESH, headers={"Refresh-Token": refreshed.json()["refreshToken"]})
    assert by_header.status_code == 200, by_header.text


async def test_login_with_a_wrong_password_or_unknown_login_is_401(
    client: httpx.AsyncClient, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    wrong = await client.post(LOGIN, json={"username": doctor.login, "password": "not-the-password"})
    unknown = await client.post(LOGIN, json={"username": f"nobody-{uuid.uuid4()}", "password": doctor.password})
    # Each answer names its own request (`requestId`); apart from that they are the same.
    wrong_body, unknown_body = assert_error(wrong, 401, "unauthorized"), assert_error(unknown, 401, "unauthorized")
    assert wrong_body.pop("requestId") != unknown_body.pop("requestId")
    assert wrong_body == unknown_body, "the answer does not tell whether the login exists"


async def test_an_access_token_with_exp_in_the_past_is_401_saying_it_expired(
    server: RunningServer, client: httpx.AsyncClient, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    me = await doctor.api.user_api.get_logged_user()
    now = int(time.time())
    claims = {"sub": me.id, "do": doctor.id, "adm": False, "typ": "access", "iat": now - 120, "exp": now - 60}
    expired = jwt.encode(claims, await jwt_secret(server.database_url), "HS256")
    assert jwt.encode({**claims, "exp": now + 60}, await jwt_secret(server.database_url), "HS256") != expired

    response = await client.get("/rest/v1/users/current", headers=bearer(expired))

    body = assert_error(response, 401, "unauthorized")
    assert "expired" in body["message"]
    assert response.headers["WWW-Authenticate"] == "Bearer"
    fresh = jwt.encode({**claims, "exp": now + 60}, await jwt_secret(server.database_url), "HS256")
    assert (await client.get("/rest/v1/users/current", headers=bearer(fresh))).status_code == 200, (
        "the same claims, unexpired, are accepted: the 401 is about expiry"
    )


async def test_a_refresh_token_is_not_an_access_token_and_vice_versa(
    client: httpx.AsyncClient, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    pair = (await client.post(LOGIN, json={"username": doctor.login, "password": doctor.password})).json()

    as_access = await client.get("/rest/v1/users/current", headers=bearer(pair["refreshToken"]))
    as_refresh = await client.post(REFRESH, json={"refreshToken": pair["token"]})

    assert "access token" in assert_error(as_access, 401, "unauthorized")["message"]
    assert "refresh token" in assert_error(as_refresh, 401, "unauthorized")["message"]


async def test_a_tampered_or_foreign_token_is_401(
    client: httpx.AsyncClient, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    token = await doctor.api.transport.access_token()
    header, _payload, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    admin_claims = jwt.encode({**claims, "adm": True}, "k" * 32, "HS256").split(".")[1]
    forged = f"{header}.{admin_claims}.{signature}"
    foreign = jwt.encode(claims, "another server's key, just as long as ours", "HS256")

    for bad in (forged, foreign, "not-a-jwt", token[:-4]):
        response = await client.get("/rest/v1/patients", headers=bearer(bad))
        assert "invalid" in assert_error(response, 401, "unauthorized")["message"]
    assert (await client.get("/rest/v1/patients", headers=bearer(token))).status_code == 200


async def test_the_sdk_renews_an_expired_access_token_on_its_own(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    transport = doctor.api.transport
    expired = await expired_access_token(server.database_url, await transport.access_token())
    transport._token = expired

    patient = await doctor.api.patient_api.create_or_modify_patient(Patient(first_name="Renewed"))

    assert patient.responsible == doctor.id
    assert transport._token not in (None, expired)


async def test_the_sdk_logs_in_again_when_its_refresh_token_is_refused_too(
    new_professional: ProfessionalFactory,
) -> None:
    doctor = await new_professional()
    transport = doctor.api.transport
    transport._token, transport._refresh_token = "expired-access", "expired-refresh"

    owner = await doctor.api.get_data_owner()

    assert owner.data_owner.id == doctor.id
    assert transport._refresh_token != "expired-refresh"


async def test_repeated_failed_logins_are_slowed_down_even_for_the_right_password(
    client: httpx.AsyncClient, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    wrong = {"username": doctor.login, "password": "wrong-password"}
    for _ in range(5):
        assert_error(await client.post(LOGIN, json=wrong), 401, "unauthorized")

    throttled = await client.post(LOGIN, json=wrong)
    right_too_soon = await client.post(LOGIN, json={"username": doctor.login, "password": doctor.password})

    body = assert_error(throttled, 429, "too_many_attempts")
    assert int(throttled.headers["Retry-After"]) >= 1
    assert_error(right_too_soon, 429, "too_many_attempts")
    other = await new_professional()  # another login is not slowed down
    assert (await client.post(LOGIN, json={"username": other.login, "password": other.password})).status_code == 200

    await asyncio.sleep(body["details"][0]["retryAfter"] + 0.05)
    after_wait = await client.post(LOGIN, json={"username": doctor.login, "password": doctor.password})
    assert after_wait.status_code == 200, after_wait.text
    assert (await client.post(LOGIN, json=wrong)).status_code == 401, "a success resets the count"


async def test_failed_logins_sent_all_at_once_get_no_more_guesses_than_one_after_another(
    client: httpx.AsyncClient, new_professional: ProfessionalFactory
) -> None:
    """An attempt counts from the moment it is let through, not only once its password is found wrong: 30 wrong
    passwords sent together get the 5 free guesses and 429 for the rest, as they would one after another."""
    doctor = await new_professional()
    wrong = {"username": doctor.login, "password": "wrong-password"}
    answers = await asyncio.gather(*(client.post(LOGIN, json=wrong) for _ in range(30)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [401] * 5 + [429] * 25, f"{statuses.count(401)} guesses, {statuses.count(429)} refused"
    right_too_soon = await client.post(LOGIN, json={"username": doctor.login, "password": doctor.password})
    assert_error(right_too_soon, 429, "too_many_attempts")


async def test_many_correct_logins_of_one_user_sent_at_once_all_succeed(
    client: httpx.AsyncClient, new_professional: ProfessionalFactory
) -> None:
    """Attempts beyond the free ones wait for those in flight rather than count them as failures: an app that
    opens several sessions at start got 429 for all but five."""
    doctor = await new_professional()
    right = {"username": doctor.login, "password": doctor.password}
    answers = await asyncio.gather(*(client.post(LOGIN, json=right) for _ in range(20)))
    assert [answer.status_code for answer in answers] == [200] * 20, [a.text for a in answers if a.status_code != 200]


async def test_an_unknown_login_costs_a_password_check_as_a_wrong_password_does(
    client: httpx.AsyncClient, new_professional: ProfessionalFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the check an unknown login would be answered sooner than a known one, telling who has an account."""
    checked: list[str] = []
    real = security._hasher

    class Counting:
        def verify(self, password_hash: str, password: str) -> bool:
            checked.append(password)
            return real.verify(password_hash, password)

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    doctor = await new_professional()
    monkeypatch.setattr(security, "_hasher", Counting())
    unknown = {"username": f"nobody-{uuid.uuid4().hex[:8]}", "password": "guess-1"}
    assert_error(await client.post(LOGIN, json=unknown), 401, "unauthorized")
    assert_error(await client.post(LOGIN, json={"username": doctor.login, "password": "guess-2"}), 401, "unauthorized")
    assert checked == ["guess-1", "guess-2"]


async def test_get_data_owner_returns_the_professional(new_professional: ProfessionalFactory) -> None:
    doctor = await new_professional("Gregory", "House")

    owner = await doctor.api.get_data_owner()

    assert owner.type == "HealthcareProfessional"
    assert isinstance(owner.data_owner, HealthcareProfessional)
    assert owner.data_owner.id == doctor.id and owner.data_owner.last_name == "House"


async def test_health_reports_the_database_without_a_token(server: RunningServer, client: httpx.AsyncClient) -> None:
    response = await client.get("/health")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["status"] == "ok"
    assert body["database"]["dialect"] == server.backend
    assert isinstance(body["database"]["lastSeq"], int) and body["database"]["epoch"]


async def test_health_and_every_call_answer_503_when_the_postgresql_database_is_gone(tmp_path: Path) -> None:
    async with database_url_for("postgresql", tmp_path) as database_url:
        settings = Settings(port=0, database_url=database_url, admin_login="admin", admin_password="admin-password")
        uvicorn_server, task, url = await start_server(settings)
        try:
            async with httpx.AsyncClient(base_url=url) as client:
                assert (await client.get("/health")).status_code == 200
                pair = (await client.post(LOGIN, json={"username": "admin", "password": "admin-password"})).json()
                await drop_pg_database(make_url(database_url).database or "")

                health = await client.get("/health")
                listing = await client.get("/rest/v1/patients", headers=bearer(pair["token"]))
                login = await client.post(LOGIN, json={"username": "admin", "password": "admin-password"})
        finally:
            uvicorn_server.should_exit = True
            await task

    assert health.status_code == 503, health.text
    assert health.json()["status"] == "degraded" and health.json()["database"]["status"] == "unavailable"
    assert "does not exist" in health.json()["database"]["error"]
    for response in (listing, login):
        assert_error(response, 503, "unavailable")


async def test_a_database_that_cannot_be_reached_is_unavailable_not_an_internal_error() -> None:
    database = Database("postgresql://postgres@127.0.0.1:1/nowhere")
    try:
        with pytest.raises(UnavailableError):
            await database.ping()
        with pytest.raises(UnavailableError):
            await database.run_write(lambda conn: None)
    finally:
        await database.close()


async def test_docs_and_openapi_answer_without_a_token(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    openapi = await client.get("/openapi.json")

    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert openapi.status_code == 200 and openapi.json()["info"]["title"] == "Medstream"


async def test_every_write_route_documents_its_body_with_a_schema_that_exists(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    documented = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method == "post" and (path.endswith("/batch") or path.endswith("/data-samples") or path.count("/") == 3):
                schema = operation["requestBody"]["content"]["application/json"]["schema"]
                reference = schema.get("items", schema)["$ref"]
                assert reference.removeprefix("#/components/schemas/") in schemas, (path, reference)
                documented[path] = (schema.get("type"), reference.rsplit("/", 1)[1])
    assert documented["/rest/v1/patients/{patient_id}/data-samples/batch"] == ("array", "DataSample")
    assert documented["/rest/v1/users"] == (None, "User")
    assert len(documented) == 2 * 9 + 2  # create and batch of each of the nine kinds, and a patient's samples
    assert schemas["Patient"]["properties"]["firstName"]["anyOf"][0]["type"] == "string"


async def test_every_other_route_answers_401_without_a_token(client: httpx.AsyncClient) -> None:
    paths: dict[str, dict[str, Any]] = (await client.get("/openapi.json")).json()["paths"]
    assert set(paths) >= OPEN_PATHS
    checked = []
    for path, operations in paths.items():
        if path in OPEN_PATHS:
            continue
        url = re.sub(r"\{[^}]+\}", "some-id", path)
        for method in operations:
            body = {} if method == "post" else None
            for headers in ({}, bearer("not-a-token"), {"Authorization": "Basic YWRtaW46YWRtaW4="}):
                response = await client.request(method.upper(), url, json=body, headers=headers)
                assert response.status_code == 401, f"{method.upper()} {path} with {headers}: {response.text}"
                assert response.json()["error"] == "unauthorized"
            checked.append(f"{method} {path}")
    assert len(checked) >= 8 * 9, "every entity collection's routes were found"
