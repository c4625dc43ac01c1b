"""REST operations as data, and the plain Starlette routes that serve them.

Each route module describes its calls as `Operation`s in a `Collection` (a path prefix and a tag). The same
description gives the app its routes (`routes_of`, here) and its OpenAPI document (server/openapi.py), so the
two cannot drift apart.

A request to an operation is served without per-request dependency machinery, in the order clients rely on:

1. the actor, from the `Authorization: Bearer` header (401 without a valid token, before anything else is
   looked at, so a request without a token is a 401 even when its body is malformed);
2. the path and query parameters, validated by their pydantic models, and the body, validated by pydantic
   straight from the request's bytes (`validate_json`): every error of the three in one 400, each located under
   `path`, `query` or `body`;
3. the operation's handler, which answers a `Response`.

Errors are raised, not answered: the app's exception handlers (server/errors.py) answer them.

Routing: the collections behind one prefix each (`mount`) are served by `CollectionRoutes`
(server/collection_routes.py), which finds a request's collection by its path's prefix and tries only its
routes, as a `Route` for its root and a `Mount` for the rest would serve them. All the methods of a path are
one `Route`, so that a 405 names every method the path allows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic
from pydantic import BaseModel, TypeAdapter
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from medstream.access import Actor
from medstream.errors import AuthenticationError
from medstream.server.collection_routes import CollectionRoutes
from medstream.server.errors import validation_error
from medstream.server.state import ServerState, current_actor, state_of


@dataclass(frozen=True)
class Body:
    """An operation's JSON body: its type, and whether it may be left out (then the handler gets `default`)."""

    type: Any
    required: bool = True
    default: Any = None
    description: str | None = None


@dataclass(frozen=True)
class Header:
    """A request header an operation reads itself (documented, not validated here)."""

    name: str
    description: str


@dataclass(slots=True)
class Call:
    """One request to an operation, with its validated parts."""

    request: Request
    state: ServerState
    body: Any
    path: Any
    query: Any
    known_actor: Actor | None

    @property
    def actor(self) -> Actor:
        """The authenticated actor; only operations with `authenticated=True` have one."""
        if self.known_actor is None:
            raise AuthenticationError("this call needs a bearer token")
        return self.known_actor


Handler = Callable[[Call], Awaitable[Response]]


@dataclass(frozen=True)
class Operation:
    """One method on one path: what it takes, what it answers, and the handler that answers it."""

    method: str
    path: str  # within its collection's prefix: "" for the prefix itself, otherwise starting with "/"
    handler: Handler
    summary: str
    operation_id: str
    answer: Any  # the type of the success answer's body, for the OpenAPI document; None: no body
    errors: tuple[int, ...]  # every error status the operation answers, besides 500
    body: Body | None = None
    path_params: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    headers: tuple[Header, ...] = ()
    authenticated: bool = True
    description: str | None = None
    status: int = 200  # the success answer's status
    # Statuses besides the success's that answer a body of their own (not the error body), with its type.
    other_answers: tuple[tuple[int, Any], ...] = ()


@dataclass(frozen=True)
class Collection:
    """Operations under one path prefix, shown under one tag. `mount`: serve them as a Mount would, every path
    under the prefix being the collection's (only for a prefix that no other collection's path extends)."""

    prefix: str
    tag: str
    operations: Sequence[Operation]
    mount: bool = True
    paths: dict[str, list[Operation]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        paths: dict[str, list[Operation]] = {}
        for operation in self.operations:
            paths.setdefault(operation.path, []).append(operation)
        object.__setattr__(self, "paths", paths)


class _Served:
    """An operation with its validators made once, and its request handling."""

    def __init__(self, operation: Operation) -> None:
        self.operation = operation
        body = operation.body
        self._body = body
        self._body_adapter: TypeAdapter[Any] | None = TypeAdapter(body.type) if body is not None else None

    async def __call__(self, request: Request) -> Response:
        operation = self.operation
        state = state_of(request)
        actor = await current_actor(state, request) if operation.authenticated else None
        errors: list[dict[str, Any]] = []
        path = _validated(operation.path_params, request.path_params, "path", errors)
        query = _validated(operation.query, request.query_params, "query", errors) if operation.query else None
        body = await self._validated_body(request, errors) if self._body is not None else None
        if errors:
            raise validation_error(errors)
        return await operation.handler(Call(request, state, body, path, query, actor))

    async def _validated_body(self, request: Request, errors: list[dict[str, Any]]) -> Any:
        assert self._body is not None and self._body_adapter is not None
        raw = await _body_of(request.receive)
        if not raw:
            if self._body.required:
                errors.append({"type": "missing", "loc": ("body",), "msg": "Field required"})
            return self._body.default
        try:
            return self._body_adapter.validate_json(raw)
        except pydantic.ValidationError as exc:
            errors.extend({**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False))
            return None


async def _body_of(receive: Receive) -> bytes:
    """The request's body, from the server's messages as `Request.body()` reads them, without its stream (an
    async generator and its closing, per request)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _validated(
    model: type[BaseModel] | None, received: Mapping[str, Any], where: str, errors: list[dict[str, Any]]
) -> Any:
    if model is None:
        return None
    try:
        return model.model_validate(received if type(received) is dict else dict(received))
    except pydantic.ValidationError as exc:
        errors.extend({**e, "loc": (where, *e["loc"])} for e in exc.errors(include_url=False))
        return None


class _PathApp:
    """The ASGI app of one path: runs the operation of the request's method (the Route has checked it)."""

    def __init__(self, operations: Sequence[Operation]) -> None:
        self._by_method = {operation.method: _Served(operation) for operation in operations}
        if "GET" in self._by_method:
            self._by_method["HEAD"] = self._by_method["GET"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        served = self._by_method[scope["method"]]
        response = await served(Request(scope, receive, send))
        await response(scope, receive, send)


def _route(path: str, operations: Sequence[Operation]) -> Route:
    return Route(
        path or "/",
        _PathApp(operations),
        methods=[operation.method for operation in operations],
        name=operations[0].operation_id,
    )


def routes_of(collections: Sequence[Collection]) -> list[BaseRoute]:
    """The Starlette routes of `collections`, in their order (the first that matches a request serves it): a
    collection that is not mounted as its paths' routes, and each run of mounted ones as one `CollectionRoutes`."""
    routes: list[BaseRoute] = []
    mounted: list[tuple[str, Route | None, list[Route]]] = []
    for collection in collections:
        paths = collection.paths
        if collection.mount:
            root = _route(collection.prefix, paths[""]) if "" in paths else None
            inner = [_route(collection.prefix + path, operations) for path, operations in paths.items() if path]
            mounted.append((collection.prefix, root, inner))
            continue
        if mounted:
            routes.append(CollectionRoutes(mounted))
            mounted = []
        routes.extend(_route(collection.prefix + path, operations) for path, operations in paths.items())
    if mounted:
        routes.append(CollectionRoutes(mounted))
    return routes


__all__ = ["Body", "Call", "Collection", "Handler", "Header", "Operation", "routes_of"]
