"""DirectRoute: a route that FastAPI documents from its endpoint's signature, but that runs without FastAPI's
per-request dependency machinery; and DirectRouter, which finds a request's DirectRoute in one regular
expression match, so that the app can run it without the middleware stack and the router's linear scan.

At every request FastAPI solves the endpoint's signature again: exit stacks, a dependency cache, a
sub-response, telemetry hooks, the body parsed by `json.loads` and then validated as Python objects. Under a
steady stream of writes that machinery took more of the server's event loop than the write itself
(bench.latency, profiled with py-spy). A DirectRoute plans each parameter once, when the route is made, and
at a request only does what the plan says. What it accepts is what Medstream's routes use, and it refuses
anything else when the route is made, not at a request:

- dependencies that are coroutine functions of the request alone (`current_actor`, `server_state`),
  solved first and in order, as FastAPI does, so that a request without a valid token is a 401 before its
  body is read;
- path, query and header parameters, validated by FastAPI's own `request_params_to_args`, so their errors
  are FastAPI's;
- at most one body parameter, validated by pydantic straight from the request's bytes (whatever its
  content type), with errors located under `body` as FastAPI's are;
- an endpoint that returns a `Response`.

Errors are raised, not answered: the app's exception handlers (server/errors.py) answer them, as for any
other route.

Starlette's router tries each route in turn (a regular expression and a few dictionaries each), behind six
layers of middleware; together a tenth of a write's time on the event loop. DirectRouter compiles the app's
routes into one alternation per method, in the app's order, so the first match is the route Starlette would
have picked; the app (server/app.py) runs a DirectRoute it finds with the same body limit and exception
handlers as the middleware would apply, and leaves everything else to FastAPI.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import pydantic
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter
from pydantic_core import PydanticUndefined
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send


@dataclass(frozen=True)
class _Body:
    """The one body parameter: its name, validator, and default (PydanticUndefined when it is required)."""

    name: str
    adapter: TypeAdapter[Any]
    default: Any


@dataclass(frozen=True)
class _Plan:
    endpoint: Callable[..., Awaitable[Any]]
    dependencies: Sequence[tuple[str, Callable[[Request], Awaitable[Any]]]]
    parameters: Sequence[tuple[Sequence[Any], Callable[[Request], Mapping[str, Any]]]]
    body: _Body | None
    request_name: str | None


class DirectRoute(APIRoute):
    """An APIRoute (documented by FastAPI as usual) whose requests run through `_Plan` instead of FastAPI's
    request handler. Use it as an APIRouter's `route_class`."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.app = _direct_app(_plan(self.dependant, path))


def _plan(dependant: Dependant, path: str) -> _Plan:
    def refuse(what: str) -> TypeError:
        return TypeError(f"DirectRoute {path}: {what} is not supported; use a plain APIRoute")

    if not inspect.iscoroutinefunction(dependant.call):
        raise refuse("an endpoint that is not a coroutine function")
    unsupported = (
        dependant.cookie_params,
        dependant.websocket_param_name,
        dependant.http_connection_param_name,
        dependant.response_param_name,
        dependant.background_tasks_param_name,
        dependant.security_scopes_param_name,
    )
    if any(unsupported):
        raise refuse("a cookie, websocket, connection, response, background-tasks or security-scopes parameter")
    dependencies = []
    for sub in dependant.dependencies:
        takes_only_the_request = sub.request_param_name is not None and not (
            sub.dependencies or sub.path_params or sub.query_params or sub.header_params or sub.cookie_params
        )
        if sub.name is None or not takes_only_the_request or not inspect.iscoroutinefunction(sub.call):
            raise refuse(f"dependency {sub.call!r}, which is not a coroutine function of the request alone")
        dependencies.append((sub.name, sub.call))
    if len(dependant.body_params) > 1:
        raise refuse("more than one body parameter")
    body = None
    if dependant.body_params:
        field = dependant.body_params[0]
        info = field.field_info
        annotation: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        default = PydanticUndefined if field.field_info.is_required() else field.field_info.get_default()
        body = _Body(field.name, TypeAdapter(annotation), default)
    parameters = [
        (fields, received)
        for fields, received in (
            (dependant.path_params, _path_params),
            (dependant.query_params, _query_params),
            (dependant.header_params, _headers),
        )
        if fields
    ]
    assert dependant.call is not None
    return _Plan(dependant.call, dependencies, parameters, body, dependant.request_param_name)


def _path_params(request: Request) -> Mapping[str, Any]:
    return request.path_params


def _query_params(request: Request) -> Mapping[str, Any]:
    return request.query_params


def _headers(request: Request) -> Mapping[str, Any]:
    return request.headers


def _direct_app(plan: _Plan) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        values: dict[str, Any] = {}
        for name, dependency in plan.dependencies:
            values[name] = await dependency(request)
        errors: list[Any] = []
        for fields, received in plan.parameters:
            found, failed = request_params_to_args(fields, received(request))
            values.update(found)
            errors += failed
        if plan.body is not None:
            found_body, body_errors = _validated_body(plan.body, await request.body())
            values[plan.body.name] = found_body
            errors += body_errors
        if errors:
            raise RequestValidationError(errors)
        if plan.request_name is not None:
            values[plan.request_name] = request
        response = await plan.endpoint(**values)
        if not isinstance(response, Response):
            raise TypeError(f"a DirectRoute endpoint must return a Response, not {type(response).__name__}")
        await response(scope, receive, send)

    return app


def _validated_body(body: _Body, raw: bytes) -> tuple[Any, list[Any]]:
    """The body parameter's value from the request's bytes, or the errors that say why not."""
    if not raw:
        if body.default is PydanticUndefined:
            return None, [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        return body.default, []
    try:
        return body.adapter.validate_json(raw), []
    except pydantic.ValidationError as exc:
        return None, [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]


class DirectRouter:
    """The route of an HTTP request among `routes`, as Starlette's router picks it (the first whose path and
    method match), when that route is a DirectRoute; None otherwise (another route, none, or a method that
    does not match: FastAPI answers those, with its 404 and 405)."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        by_method: dict[str, list[tuple[int, Route]]] = {}
        self._routes: list[Route] = []
        self.complete = True  # False when a route of another kind (a Mount) could match: then nothing is direct
        for route in routes:
            if isinstance(route, WebSocketRoute):
                continue
            if not isinstance(route, Route) or route.methods is None:
                self.complete = False
                continue
            self._routes.append(route)
            for method in route.methods:
                by_method.setdefault(method, []).append((len(self._routes) - 1, route))
        self._patterns = {method: _alternation(found) for method, found in by_method.items()}

    def match(self, method: str, path: str) -> tuple[DirectRoute, dict[str, Any]] | None:
        pattern = self._patterns.get(method) if self.complete else None
        found = pattern.fullmatch(path) if pattern is not None else None
        if found is None or found.lastgroup is None:
            return None
        route = self._routes[int(found.lastgroup[1:])]
        if not isinstance(route, DirectRoute):
            return None
        prefix = f"{found.lastgroup}_"
        params = {
            name: route.param_convertors[name].convert(found.group(prefix + name)) for name in route.param_convertors
        }
        return route, params


def _alternation(routes: list[tuple[int, Route]]) -> re.Pattern[str]:
    """One pattern for `routes`: route i's path as group `r<i>`, its parameters renamed `r<i>_<name>`. Python
    tries alternatives from the left, so the first route that matches is the one found."""
    parts = []
    for index, route in routes:
        source = route.path_regex.pattern.removeprefix("^").removesuffix("$")
        source = source.replace("(?P<", f"(?P<r{index}_")
        parts.append(f"(?P<r{index}>{source})")
    return re.compile("|".join(parts))


__all__ = ["DirectRoute", "DirectRouter"]
