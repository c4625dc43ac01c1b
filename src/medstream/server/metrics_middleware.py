"""The pure ASGI middleware that counts every HTTP request and event socket for the metrics (server/metrics.py).

A request is counted under its route's template (`/rest/v1/patients/{entity_id}`), never its path, and under a
known method, so that what a client sends cannot make new series: a path no route serves is `unmatched`, a
method outside HTTP's usual ones `other`. The router records the route it chose in the request's scope; a
request answered before routing (a body over its bound) is matched against the routes afterwards.

An event socket is counted when it is accepted, and closed with the code of the first close: the server's close
frame, or the client's close (or its connection's end, 1006) as the server receives it; 1006 too when the
endpoint ends with neither.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medstream.errors import CloseCode
from medstream.server.metrics import Metrics

UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_CLOSE_CODES = frozenset(int(code) for code in CloseCode)


def route_templates(routes: Sequence[BaseRoute], prefix: str = "") -> dict[int, str]:
    """The path template of every route (by the route's id), Mounts walked into."""
    templates: dict[int, str] = {}
    for route in routes:
        if isinstance(route, Mount) and route.routes:
            templates |= route_templates(route.routes, prefix + route.path)
        elif isinstance(route, Mount):  # an app of its own (the docs' static files): one template for all it serves
            templates[id(route)] = prefix + route.path + "/{path}"
        elif hasattr(route, "path"):
            templates[id(route)] = prefix + route.path if route.path != "/" or not prefix else prefix
    return templates


def close_code_label(code: int) -> str:
    return str(code) if code in _CLOSE_CODES else "other"


class MetricsMiddleware:
    """Counts and times HTTP requests by route template, method and status; counts event sockets opened and
    closed by close code."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.templates = route_templates(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500  # an exception that leaves here unanswered is answered 500 further out

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.request(self._template(scope), method, status, time.perf_counter() - started)

    def _template(self, scope: Scope) -> str:
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
            return self.templates.get(id(route))
        return None

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self.metrics
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
            await self.app(scope, counted_receive, counted_send)
        finally:
            if accepted and not closed:  # the app ended without a close either way: the connection is dropped
                close(CloseCode.ABNORMAL_CLOSURE, "server")
