"""/openapi.json describes exactly the routes the app serves, with their bodies, answers, the bearer scheme, and
the error statuses each answers with the error body."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from medstream import __version__
from medstream.server.app import DESCRIPTION, MedstreamApp, api_collections, create_app
from medstream.server.collection_routes import CollectionRoutes
from medstream.server.openapi import openapi_document
from medstream.server.settings import Settings

# The documentation's own routes, and the operator's scrape of metrics, which are not part of the API it documents.
DOCS_PATHS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/metrics"}
DOCS_MOUNT = "/docs-assets"
# iCure's API, for iCure's clients: described by iCure's own documentation and docs/icure.md, not by this document.
ICURE_MOUNT = "/rest/v2"


@pytest.fixture
def app(tmp_path: Path) -> MedstreamApp:
    return create_app(Settings(database_url=f"sqlite:///{tmp_path / 'openapi.db'}"))


def _served(routes: Sequence[BaseRoute], prefix: str = "") -> set[tuple[str, str]]:
    """(path, method) of every HTTP route, Mounts and collection routes walked into; HEAD goes with GET and is
    not listed."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, CollectionRoutes):  # routes with their full paths
            found |= _served(route.routes, prefix)
        elif isinstance(route, Mount):
            if prefix + route.path not in (DOCS_MOUNT, ICURE_MOUNT):
                found |= _served(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            path = prefix + route.path if route.path != "/" or not prefix else prefix
            if path not in DOCS_PATHS:
                found |= {(path, method) for method in route.methods or () if method != "HEAD"}
        else:
            assert isinstance(route, WebSocketRoute), route  # the events sockets, which OpenAPI does not describe
    return found


def _documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, operations in document["paths"].items() for method in operations}


def test_every_served_route_is_documented_and_every_documented_one_served(app: MedstreamApp) -> None:
    served, documented = _served(app.routes), _documented(app.openapi())

    assert served == documented, (served - documented, documented - served)
    assert ("/rest/v1/patients/{entity_id}", "DELETE") in served and ("/health", "GET") in served
    assert len(served) >= 7 * 10


def test_calls_that_need_a_token_say_so_with_the_bearer_scheme(app: MedstreamApp) -> None:
    document = app.openapi()
    schemes = document["components"]["securitySchemes"]
    (name,) = schemes
    assert schemes[name] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    open_calls = set()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if "security" in operation:
                assert operation["security"] == [{name: []}]
                assert "401" in operation["responses"], (method, path)
            else:
                open_calls.add(f"{method.upper()} {path}")
    assert open_calls == {
        "GET /health",
        "GET /rest/v1/crypto/configuration",
        "POST /rest/v1/auth/login",
        "POST /rest/v1/auth/refresh",
    }


def test_every_route_documents_its_answer_and_its_errors_with_the_error_body(app: MedstreamApp) -> None:
    document = app.openapi()
    schemas = document["components"]["schemas"]
    assert set(schemas["Error"]["required"]) == {"error", "message"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            responses = operation["responses"]
            if "204" in responses:  # done, nothing to answer
                assert "content" not in responses["204"] and "200" not in responses, where
            else:
                assert "schema" in responses["200"]["content"]["application/json"], where
            for status, response in responses.items():
                if status == "204":
                    continue
                schema = response["content"]["application/json"]["schema"]
                reference = schema.get("items", schema).get("$ref", "")
                assert reference.removeprefix("#/components/schemas/") in schemas or not reference, where
                if status not in ("200", "204") and path != "/health":
                    assert schema == {"$ref": "#/components/schemas/Error"}, (where, status)
            if "requestBody" in operation:
                assert {"400", "413"} <= set(responses), where
            if "{" in path:
                assert "400" in responses and all(p["in"] == "path" for p in operation["parameters"][:1]), where
    login = document["paths"]["/rest/v1/auth/login"]["post"]["responses"]
    assert set(login) == {"200", "400", "401", "413", "429", "503"}
    assert "Retry-After" in login["429"]["headers"]
    get_one = document["paths"]["/rest/v1/patients/{entity_id}"]["get"]["responses"]
    assert set(get_one) == {"200", "400", "401", "404", "503"}
    assert document["paths"]["/health"]["get"]["responses"]["503"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Health"
    }


def test_parameters_are_documented_as_they_are_validated(app: MedstreamApp) -> None:
    document = app.openapi()
    listing = {p["name"]: p for p in document["paths"]["/rest/v1/patients"]["get"]["parameters"]}
    assert listing["limit"]["in"] == "query" and listing["limit"]["schema"]["maximum"] == 10_000
    assert listing["startAfter"]["required"] is False
    (entity_id,) = document["paths"]["/rest/v1/users/{entity_id}/access"]["post"]["parameters"]
    assert entity_id["required"] is True and entity_id["schema"]["pattern"].startswith("^[A-Za-z0-9]")
    refresh = document["paths"]["/rest/v1/auth/refresh"]["post"]
    assert refresh["parameters"][0]["name"] == "Refresh-Token" and refresh["requestBody"]["required"] is False


async def test_the_document_served_is_the_apps(app: MedstreamApp) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://docs") as http:
        served = await http.get("/openapi.json")
    assert served.status_code == 200 and served.json() == app.openapi()


async def test_the_app_serves_the_document_of_its_collections_and_names_a_proxys_root_path(app: MedstreamApp) -> None:
    expected = openapi_document(
        title="Medstream", version=__version__, description=DESCRIPTION, collections=api_collections()
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://docs") as http:
        served = await http.get("/openapi.json")
    proxied = httpx.ASGITransport(app=app, root_path="/medstream")
    async with httpx.AsyncClient(transport=proxied, base_url="http://docs/medstream") as http:
        behind_proxy = await http.get("/openapi.json")

    assert served.status_code == 200 and served.headers["content-type"] == "application/json"
    assert served.json() == expected
    # Behind a proxy's root path, the same document with that path as its server, so that its calls work there.
    assert behind_proxy.json() == {**expected, "servers": [{"url": "/medstream"}]}
