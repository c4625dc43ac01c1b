"""What the edge middleware (server/edge.py) counts for the metrics (server/metrics.py): every HTTP request and
event socket.

A request is counted under its route's template (`/rest/v1/patients/{entity_id}`), never its path, and under a
known method, so that what a client sends cannot make new series: a path no route serves is `unmatched`, a
method outside HTTP's usual ones `other`. The router records the route it chose in the request's scope; a
request answered before routing (a body over its bound) is matched against the routes afterwards.

An event socket is counted when it is accepted, and closed with the code of the first close: the server's close
frame, or the client's close (or its connection's end, 1006) as the server receives it; 1006 too when the
endpoint ends with neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medstream.errors import CloseCode
from medstream.server.collection_routes import CollectionRoutes
from medstream.server.metrics import Metrics

UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_CLOSE_CODES = frozenset(int(code) for code in CloseCode)


def route_templates(routes: Sequence[BaseRoute], prefix: str = "") -> dict[int, str]:
    """The path template of every route (by the route's id), Mounts walked into."""
    templates: dict[int, str] = {}
    for route in routes:
        if isinstance(route, CollectionRoutes):  # routes with their full paths
            templates |= route_templates(route.routes, prefix)
        elif isinstance(route, Mount) and route.routes:
            templates |= route_templates(route.routes, prefix + route.path)
        elif isinstance(route, Mount):  # an app of its own (the docs' static files): one template for all it serves
            templates[id(route)] = prefix + route.path + "/{path}"
        elif hasattr(route, "path"):
            templates[id(route)] = prefix + route.path if route.path != "/" or not prefix else prefix
    return templates


def close_code_label(code: int) -> str:
    return str(code) if code in _CLOSE_CODES else "other"


class RouteTemplates:
    """The template each request is counted under: its route's, found by the route the router chose."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self.routes = routes
        self.templates = route_templates(routes)

    def of(self, scope: Scope) -> str:
        template = self.templates.get(id(scope.get("route")))
        if template is not None:
            return template
        return self._match(self.routes, dict(scope)) or UNMATCHED

    def _match(self, routes: Sequence[BaseRoute], scope: dict[str, Any]) -> str | None:
        """The template of the route that serves `scope`, for a request that was answered before routing."""
        for route in routes:
            match, child = route.matches(scope)
            if match is Match.NONE:
                continue
            if isinstance(route, Mount) and route.routes:
                found = self._match(route.routes, {**scope, **child})
                if found is not None:
                    return found
                continue
            if isinstance(route, CollectionRoutes):  # the route it found, or none (a 404 under its prefix)
                found = self.templates.get(id(child["route"]))
                if found is not None:
                    return found
                continue
            return self.templates.get(id(route))
        return None


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


async def count_socket(metrics: Metrics, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run `app` on an event socket, counting it opened when accepted and closed with the code of its first
    close."""
    accepted = closed = False

    def close(code: int, by: str) -> None:
        nonlocal closed
        closed = True
        metrics.ws_open -= 1
        metrics.ws_closed.labels(close_code_label(code), by).inc()

    async def counted_send(message: Message) -> None:
        nonlocal accepted
        kind = message["type"]
        if kind == "websocket.accept":
            accepted = True
            metrics.ws_open += 1
            metrics.ws_opened.inc()
        elif kind == "websocket.close" and accepted and not closed:
            close(message.get("code", CloseCode.NORMAL_CLOSURE), "server")
        await send(message)

    async def counted_receive() -> Message:
        message = await receive()
        if message["type"] == "websocket.disconnect" and accepted and not closed:
            close(message.get("code", CloseCode.NORMAL_CLOSURE), "client")
        return message

    try:
        await app(scope, counted_receive, counted_send)
    finally:
        if accepted and not closed:  # the app ended without a close either way: the connection is dropped
            close(CloseCode.ABNORMAL_CLOSURE, "server")
