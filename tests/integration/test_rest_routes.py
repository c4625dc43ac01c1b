"""The REST routes are plain routes of the app (server/rest.py), behind its whole middleware stack: they answer
under a proxy's root_path, locate validation errors under `body`, `path` or `query`, check the token before
looking at the body, and answer every error as JSON."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medstream.server.app import MedstreamApp, create_app
from medstream.server.settings import Settings

ADMIN = ("admin", "admin-password-for-rest-routes")
ROOT = "/medstream"


@pytest_asyncio.fixture
async def app(tmp_path: Path) -> AsyncIterator[MedstreamApp]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'routes.db'}", admin_login=ADMIN[0], admin_password=ADMIN[1]
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@contextlib.asynccontextmanager
async def _client(app: MedstreamApp, root_path: str = "") -> AsyncIterator[httpx.AsyncClient]:
    """A client logged in as the admin, of the app mounted under `root_path` by a proxy."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://rest{root_path}") as http:
        login = await http.post("/rest/v1/auth/login", json={"username": ADMIN[0], "password": ADMIN[1]})
        assert login.status_code == 200, login.text
        http.headers["Authorization"] = f"Bearer {login.json()['token']}"
        yield http


@pytest_asyncio.fixture
async def http(app: MedstreamApp) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app) as client:
        yield client


async def test_the_routes_answer_under_a_proxys_root_path(app: MedstreamApp) -> None:
    async with _client(app, ROOT) as http:
        created = await http.post("/rest/v1/patients", json={"dateOfBirth": 19850730})
        read = await http.get(f"/rest/v1/patients/{created.json()['id']}")
        sample = await http.post(f"/rest/v1/patients/{created.json()['id']}/data-samples", json={})
        missing = await http.get("/rest/v1/patients/no-such-id")
        docs = await http.get("/docs")

    assert created.status_code == 200 and read.json()["dateOfBirth"] == 19850730
    assert sample.status_code == 200 and sample.json()["patientId"] == created.json()["id"]
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert f"{ROOT}/openapi.json" in docs.text and f"{ROOT}/docs-assets/swagger-ui-bundle.js" in docs.text


async def test_validation_errors_are_located_under_body_path_and_query(http: httpx.AsyncClient) -> None:
    wrong_type = await http.post("/rest/v1/patients", json={"firstName": 3})
    unknown_field = await http.post("/rest/v1/patients/by-ids", json={"ids": [], "extra": 1})
    empty = await http.post("/rest/v1/patients/by-ids", content=b"")
    malformed = await http.post("/rest/v1/patients", content=b"{not json")
    bad_id = await http.get("/rest/v1/patients/not an id!")
    bad_page = await http.get("/rest/v1/patients", params={"limit": "many", "startAfter": "x" * 200})

    def paths(response: httpx.Response) -> list[str]:
        assert response.status_code == 400 and response.json()["error"] == "validation_error", response.text
        return [detail["path"] for detail in response.json()["details"]]

    assert paths(wrong_type) == ["body.firstName"]
    assert paths(unknown_field) == ["body.extra"]
    assert paths(empty) == ["body"]
    assert malformed.json()["message"] == "malformed JSON in the request body" and paths(malformed) == ["body"]
    assert paths(bad_id) == ["path.entity_id"]
    assert sorted(paths(bad_page)) == ["query.limit", "query.startAfter"]


async def test_a_request_without_a_valid_token_is_a_401_whatever_its_body(http: httpx.AsyncClient) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer not-a-token"}):
        malformed = await http.post("/rest/v1/patients", content=b"{not json", headers=headers)
        invalid = await http.post("/rest/v1/patients/batch", json=[{"firstName": 3}], headers=headers)
        bad_path = await http.get("/rest/v1/patients/not an id!", headers=headers)
        for response in (malformed, invalid, bad_path):
            assert response.status_code == 401 and response.json()["error"] == "unauthorized", response.text
            assert response.headers["www-authenticate"] == "Bearer"


async def test_the_middleware_stack_answers_for_every_route(http: httpx.AsyncClient) -> None:
    too_large = await http.post("/rest/v1/data-samples/batch", content=b"x" * (Settings().max_body_bytes + 1))
    no_route = await http.get("/rest/v1/no-such-collection")
    no_sub_route = await http.get("/rest/v1/patients/some-id/no-such-thing")

    assert too_large.status_code == 413 and too_large.json()["error"] == "payload_too_large"
    for response in (no_route, no_sub_route):
        assert response.status_code == 404 and response.json()["error"] == "not_found", response.text


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.mark.parametrize("cors", [False, True], ids=["bound-at-the-edge", "bound-inside-cors"])
async def test_the_body_bound_answers_413_with_the_request_id_and_lets_a_body_at_the_bound_through(
    tmp_path: Path, cors: bool
) -> None:
    # Without CORS or OpenTelemetry the edge bounds the body; with either, the bound sits inside them. Either
    # way a body over the bound, declared or streamed in chunks, is answered 413 with the request's id (and
    # CORS's headers), and one at the bound reaches the route.
    origin = "https://clinic.example"
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'bound.db'}",
        admin_login=ADMIN[0],
        admin_password=ADMIN[1],
        max_body_bytes=1024,
        cors_origins=(origin,) if cors else (),
        require_encryption=False,  # its bodies carry a patient's note in clear: what is tested is their size
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app), _client(app) as http:
        http.headers["Origin"] = origin
        at_bound = b'{"note":"' + b"x" * (1024 - 11) + b'"}'
        assert len(at_bound) == 1024
        answers = {
            "declared": await http.post("/rest/v1/patients", content=at_bound + b" "),
            "streamed": await http.post("/rest/v1/patients", content=_chunks(at_bound[:600], at_bound[600:], b" ")),
            "given id": await http.post("/rest/v1/patients", content=at_bound + b" ", headers={"X-Request-ID": "r-1"}),
        }
        at_bound_declared = await http.post("/rest/v1/patients", content=at_bound)
        at_bound_streamed = await http.post("/rest/v1/patients", content=_chunks(at_bound[:600], at_bound[600:]))

    for how, response in answers.items():
        assert response.status_code == 413 and response.json()["error"] == "payload_too_large", how
        assert response.headers["x-request-id"] == response.json()["requestId"], how
        assert (response.headers.get("access-control-allow-origin") == origin) is cors, how
    assert answers["given id"].headers["x-request-id"] == "r-1"
    assert answers["streamed"].request.headers["transfer-encoding"] == "chunked"
    for response in (at_bound_declared, at_bound_streamed):
        assert response.status_code == 200 and response.json()["note"] == "x" * (1024 - 11), response.text


class Recorder:
    """A pure ASGI middleware, as an operator would add one: it records each HTTP request and the status answered."""

    def __init__(self, app: ASGIApp, seen: list[tuple[str, str, int]]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.seen.append((scope["method"], scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, recording)


async def test_a_middleware_added_to_the_app_sees_every_entity_request(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'stack.db'}", admin_login=ADMIN[0], admin_password=ADMIN[1]
    )
    app = create_app(settings)
    seen: list[tuple[str, str, int]] = []
    app.add_middleware(Recorder, seen=seen)
    async with app.router.lifespan_context(app), _client(app) as http:
        created = await http.post("/rest/v1/patients", json={"dateOfBirth": 19850730})
        patient = created.json()["id"]
        sample = await http.post(f"/rest/v1/patients/{patient}/data-samples", json={})
        read = await http.get(f"/rest/v1/data-samples/{sample.json()['id']}")
        missing = await http.get("/rest/v1/patients/no-such-id")
        unauthenticated = await http.get(f"/rest/v1/patients/{patient}", headers={"Authorization": ""})

    assert [created.status_code, sample.status_code, read.status_code] == [200, 200, 200]
    assert [missing.status_code, unauthenticated.status_code] == [404, 401]
    # Login, then each request: the successes, the handlers' errors, on the Mounts and on the collection roots.
    assert seen == [
        ("POST", "/rest/v1/auth/login", 200),
        ("POST", "/rest/v1/patients", 200),
        ("POST", f"/rest/v1/patients/{patient}/data-samples", 200),
        ("GET", f"/rest/v1/data-samples/{sample.json()['id']}", 200),
        ("GET", "/rest/v1/patients/no-such-id", 404),
        ("GET", f"/rest/v1/patients/{patient}", 401),
    ]


async def test_an_unexpected_error_is_a_json_500_without_its_text(
    app: MedstreamApp, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("the disk caught fire")

    monkeypatch.setattr(app.state.medstream.repository, "get_json", broken)
    response = await http.get("/rest/v1/patients/some-id")
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert "fire" not in response.text  # an unexpected error's text stays in the server's log


async def test_head_answers_as_get_without_a_body(http: httpx.AsyncClient) -> None:
    created = await http.post("/rest/v1/notifications", json={})
    head = await http.head(f"/rest/v1/notifications/{created.json()['id']}")
    assert head.status_code == 200 and head.content == b""
