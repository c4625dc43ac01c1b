"""Requests to DirectRoutes skip the middleware stack and the router's scan (server/routing.py): they must go
to the route Starlette would have picked, and be answered as the middleware would have answered them."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from starlette.routing import Match, Route

from medstream.server.app import MedstreamApp, create_app
from medstream.server.routing import DirectRoute, DirectRouter
from medstream.server.settings import Settings

ADMIN = ("admin", "admin-password-for-direct-routes")


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'direct.db'}", admin_login=ADMIN[0], admin_password=ADMIN[1], **overrides
    )


def _starlette_pick(app: MedstreamApp, method: str, path: str) -> tuple[Any, dict[str, Any]] | None:
    """The route Starlette's router would run: the first that matches path and method, in the app's order."""
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
    for route in app.router.routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return route, child.get("path_params", {})
    return None


def _paths(route: Route) -> list[str]:
    concrete = re.sub(r"\{[^}]+\}", "some-id", route.path)
    # Also the literal segments a parameter could swallow ("batch", "filter"...), and near misses.
    return [concrete, re.sub(r"\{[^}]+\}", "batch", route.path), concrete + "/", concrete + "/extra"]


def test_every_request_goes_to_the_route_starlette_would_pick(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path))
    assert isinstance(app, MedstreamApp)
    router = DirectRouter(app.router.routes)
    routes = [r for r in app.router.routes if isinstance(r, Route)]
    direct = 0
    for route in routes:
        for path in _paths(route):
            for method in ("GET", "POST", "DELETE", "PUT", "HEAD"):
                expected = _starlette_pick(app, method, path)
                found = router.match(method, path)
                if expected is not None and isinstance(expected[0], DirectRoute):
                    assert found == expected, (method, path)
                    direct += 1
                else:
                    assert found is None, (method, path, expected)
    assert direct >= 7 * 8, "every entity collection's routes are direct"
    assert router.match("GET", "/docs") is None and router.match("GET", "/no/such/route") is None


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, MedstreamApp]]:
    app = create_app(_settings(tmp_path))
    assert isinstance(app, MedstreamApp)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://direct") as http:
            login = await http.post("/rest/v1/auth/login", json={"username": ADMIN[0], "password": ADMIN[1]})
            http.headers["Authorization"] = f"Bearer {login.json()['token']}"
            yield http, app


async def test_an_unexpected_error_in_a_direct_route_is_a_json_500(
    client: tuple[httpx.AsyncClient, MedstreamApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    http, app = client

    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("the disk caught fire")

    monkeypatch.setattr(app.state.medstream.repository, "get", broken)
    response = await http.get("/rest/v1/patients/some-id")
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert "fire" not in response.text  # an unexpected error's text stays in the server's log


async def test_direct_routes_answer_as_the_middleware_would(client: tuple[httpx.AsyncClient, MedstreamApp]) -> None:
    http, _app = client
    assert (await http.get("/rest/v1/patients/some-id")).json()["error"] == "not_found"
    wrong_method = await http.put("/rest/v1/patients/some-id", json={})
    assert wrong_method.status_code == 405 and "GET" in wrong_method.headers["allow"]
    unauthorised = await http.get("/rest/v1/patients/some-id", headers={"Authorization": "Bearer nope"})
    assert unauthorised.status_code == 401 and unauthorised.headers["www-authenticate"] == "Bearer"
    too_large = await http.post("/rest/v1/patients", content=b"x" * (Settings().max_body_bytes + 1))
    assert too_large.status_code == 413 and too_large.json()["error"] == "payload_too_large"
