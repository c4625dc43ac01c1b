"""The edge: Medstream's outermost middleware, one pure ASGI layer that every request and socket passes through
first (inside Starlette's server-error middleware). For an HTTP request it

- sets its request id (server/request_ids.py) and adds `X-Request-ID` to its answer;
- counts and times it for the metrics, under its route's template (server/request_metrics.py), when the app
  has metrics;
- bounds its body (server/body_limit.py) when no other middleware stands between the edge and the routes
  (CORS or OpenTelemetry, when configured, answer inside the edge and outside the bound: the app then puts
  `BodySizeLimit` innermost instead).

For an event socket, it sets the connection's request id and counts the socket for the metrics. The request
headers are read once, for all three. Every answer passes out through the edge, the 413 and CORS's included, so
each carries its request id and is counted.

The id is set and not reset: each request and each connection runs in an asyncio task of its own (uvicorn's),
so it ends with the task, and what is logged after the app returned or raised (uvicorn's "Exception in ASGI
application", the 500 handler outside every middleware) still carries it. The tasks a websocket connection
starts inherit it. A websocket's handshake answer carries no header: its id is for the logs.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medstream.server.body_limit import answer_too_large, bounded_receive, framed_length
from medstream.server.metrics import Metrics
from medstream.server.request_ids import HEADER_KEY, current_request_id, request_id_from, request_id_of
from medstream.server.request_metrics import RouteTemplates, count_socket, method_label


class Edge:
    """Request ids, the metrics' counts (with `metrics`) and the body bound (with `max_body_bytes`), in one
    layer."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics | None,
        routes: Sequence[BaseRoute],
        max_body_bytes: int | None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = RouteTemplates(routes) if metrics is not None else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            current_request_id.set(request_id_of(scope["headers"]))
            if self.metrics is None:
                await self.app(scope, receive, send)
            else:
                await count_socket(self.metrics, self.app, scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self.metrics
        started = time.perf_counter() if metrics is not None else 0.0
        given: bytes | None = None
        declared: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == HEADER_KEY:
                if given is None:
                    given = value
            elif name == b"content-length":
                declared = value
            elif name == b"transfer-encoding":
                chunked = True
        request_id = request_id_from(given)
        current_request_id.set(request_id)
        header = (HEADER_KEY, request_id.encode("ascii"))
        status = 500  # an exception that leaves here unanswered is answered 500 further out

        # A plain function handing on `send`'s awaitable: no coroutine of its own for each message. The start
        # message is the sender's own dict, made for this answer; its header list may be the response's, and
        # is not changed.
        def send_at_edge(message: Message) -> Awaitable[None]:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            return send(message)

        try:
            limit = self.max_body_bytes
            if limit is None:
                await self.app(scope, receive, send_at_edge)
                return
            bounded = await bounded_receive(receive, limit, framed_length(scope, declared, chunked))
            if bounded is None:
                await answer_too_large(limit, scope, receive, send_at_edge)
            else:
                await self.app(scope, bounded, send_at_edge)
        finally:
            if metrics is not None:
                assert self.templates is not None
                template = self.templates.of(scope)
                metrics.request(template, method_label(scope["method"]), status, time.perf_counter() - started)
