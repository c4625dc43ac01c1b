"""`CollectionRoutes` answers every request as the collections' root `Route`s and `Mount`s would: the same route
serves it with the same path parameters, or the same 404, 405 (and `Allow`) or redirect is answered."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from medstream.server.collection_routes import CollectionRoutes


def _endpoint(label: str):  # type: ignore[no-untyped-def]
    async def endpoint(request: Request) -> Response:
        return PlainTextResponse(f"{label} {sorted(request.path_params.items())}")

    return endpoint


# Per collection: its prefix, its root's methods (None: no root route), and its other paths with their methods,
# in the order they are tried (a parameter first, as the entity collections have it).
COLLECTIONS: list[tuple[str, list[str] | None, list[tuple[str, list[str]]]]] = [
    (
        "/rest/v1/patients",
        ["GET", "POST"],
        [
            ("/{entity_id}", ["GET", "DELETE"]),
            ("/{patient_id}/data-samples", ["POST"]),
            ("/filter", ["POST"]),
            ("/batch", ["POST"]),
            ("/{entity_id}/access", ["POST"]),
            ("/{entity_id}/access/{data_owner_id}", ["DELETE"]),
        ],
    ),
    ("/rest/v1/samples", ["POST"], [("/{entity_id}", ["GET"]), ("/by-ids", ["POST"])]),
    ("/rest/v1/auth", None, [("/login", ["POST"]), ("/refresh", ["POST"])]),
]


def _as_mounts() -> list[BaseRoute]:
    routes: list[BaseRoute] = []
    for prefix, root, inner in COLLECTIONS:
        if root is not None:
            routes.append(Route(prefix, _endpoint(prefix), methods=root))
        mounted = [Route(path, _endpoint(prefix + path), methods=methods) for path, methods in inner]
        routes.append(Mount(prefix, routes=mounted))
    return routes


def _as_collection_routes() -> list[BaseRoute]:
    collections = [
        (
            prefix,
            Route(prefix, _endpoint(prefix), methods=root) if root is not None else None,
            [Route(prefix + path, _endpoint(prefix + path), methods=methods) for path, methods in inner],
        )
        for prefix, root, inner in COLLECTIONS
    ]
    return [CollectionRoutes(collections)]


def _app(routes: Sequence[BaseRoute]) -> Starlette:
    # A route after the collections, and one whose path is under no prefix.
    return Starlette(routes=[*routes, Route("/health", _endpoint("/health")), Route("/rest/v1/other", _endpoint("o"))])


MOUNTS, COLLECTION_ROUTES = _app(_as_mounts()), _app(_as_collection_routes())


async def _answers(method: str, path: str, root_path: str = "") -> list[tuple[int, str, str | None, str | None]]:
    answers = []
    for app in (MOUNTS, COLLECTION_ROUTES):
        transport = httpx.ASGITransport(app=app, root_path=root_path)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.request(method, root_path + path)
        answers.append((response.status_code, response.text, response.headers.get("location"),
                        response.headers.get("allow")))  # fmt: skip
    return answers


PATHS = [
    "/rest/v1/patients",
    "/rest/v1/patients/",
    "/rest/v1/patients/p1",
    "/rest/v1/patients/p1/",
    "/rest/v1/patients/p1/data-samples",
    "/rest/v1/patients/p1/data-samples/",
    "/rest/v1/patients/filter",
    "/rest/v1/patients/p1/access/o1",
    "/rest/v1/patients/p1/no-such-thing",
    "/rest/v1/patients/a/b/c/d/e",
    "/rest/v1/samples/s1",
    "/rest/v1/samples/by-ids",
    "/rest/v1/auth",
    "/rest/v1/auth/login",
    "/rest/v1/auth/login/",
    "/rest/v1/other",
    "/rest/v1/nothing/here",
    "/rest/v1",
    "/health",
    "/health/",
    "/",
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "HEAD", "PUT"])
async def test_each_request_is_answered_as_by_routes_and_mounts(method: str, path: str) -> None:
    old, new = await _answers(method, path)
    assert new == old


async def test_behind_a_root_path_too() -> None:
    for path in ("/rest/v1/patients/p1", "/rest/v1/patients", "/rest/v1/patients/p1/", "/rest/v1/samples/x/y"):
        old, new = await _answers("GET", path, root_path="/api")
        assert new == old, path


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["rest", "v1", "patients", "samples", "auth", "p1", "filter", "access", ""]), max_size=6),
    st.sampled_from(["GET", "POST", "DELETE"]),
)
def test_any_path_is_answered_as_by_routes_and_mounts(segments: list[str], method: str) -> None:
    old, new = asyncio.run(_answers(method, "/" + "/".join(segments).lstrip("/")))
    assert new == old


def test_a_path_parameter_over_several_segments_is_refused() -> None:
    with pytest.raises(ValueError, match="one segment each"):
        CollectionRoutes([("/rest/v1/files", None, [Route("/rest/v1/files/{rest:path}", _endpoint("f"))])])


def test_prefixes_of_one_collection_routes_have_as_many_segments() -> None:
    with pytest.raises(ValueError, match="number of segments"):
        CollectionRoutes([("/rest/v1/a", None, []), ("/rest/v2/b/c", None, [])])
