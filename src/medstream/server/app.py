"""The ASGI application: `create_app(settings)` wires store, auth, routes, middleware and error handling."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Lifespan
from starlette.websockets import WebSocket

from medstream import __version__
from medstream.access import Actor
from medstream.errors import CloseCode, ConflictError, ValidationError
from medstream.icure.reconnects import ReconnectMemory
from medstream.model.entities import KIND_BY_NAME
from medstream.model.user import User
from medstream.server import security
from medstream.server.actors import ActorValidator
from medstream.server.body_limit import BodySizeLimit
from medstream.server.dispatcher import Dispatcher
from medstream.server.docs import docs_routes
from medstream.server.edge import Edge
from medstream.server.errors import install_error_handlers
from medstream.server.icure.routes import rest_routes as icure_rest_routes
from medstream.server.icure.socket import IcureSockets
from medstream.server.login_throttle import LoginThrottle, PasswordCheckGate
from medstream.server.metrics import Metrics
from medstream.server.openapi import openapi_document
from medstream.server.rest import Collection, routes_of
from medstream.server.retention import run_retention
from medstream.server.routes.auth import auth
from medstream.server.routes.crypto import crypto
from medstream.server.routes.entities import entity_collections, write_entities
from medstream.server.routes.health import checks
from medstream.server.routes.key_vault import key_vault
from medstream.server.routes.me import me
from medstream.server.routes.metrics import metrics_route
from medstream.server.security import TokenIssuer
from medstream.server.session_upkeep import run_session_expiry, run_session_watch
from medstream.server.settings import Settings
from medstream.server.state import ServerState, state_of
from medstream.server.websocket import EventHub, WebSocketLimits
from medstream.store.database import Database
from medstream.store.key_vaults import KeyVaultStore
from medstream.store.keys import read_key
from medstream.store.repository import EntityRepository
from medstream.store.sessions import SessionStore

log = logging.getLogger("medstream.server")

# The actor of the server's own bootstrap writes (the first admin).
SYSTEM_ACTOR = Actor(user_id="system", data_owner_id=None, is_admin=True)


async def open_state(settings: Settings) -> ServerState:
    database = Database(
        settings.database_url,
        notify_interval=settings.pg_notify_interval_seconds,
        listen_check_interval=settings.pg_listen_check_seconds,
    )
    await database.migrate()
    secret = await read_key(database, "jwt_secret")
    tokens = TokenIssuer(
        secret, access_seconds=settings.access_token_seconds, refresh_seconds=settings.refresh_token_seconds
    )
    poll = settings.dispatcher_poll_seconds or database.backend.dispatcher_poll_seconds
    dispatcher = Dispatcher(database, poll_interval=poll)
    limits = WebSocketLimits(
        heartbeat_interval=settings.ws_heartbeat_seconds,
        heartbeat_timeout=settings.ws_heartbeat_timeout_seconds,
        send_queue=settings.ws_send_queue,
        subscriptions=settings.ws_max_subscriptions,
        sockets_per_user=settings.ws_max_sockets_per_user,
        subscriptions_per_user=settings.ws_max_subscriptions_per_user,
        filter_bytes_per_user=settings.ws_max_filter_bytes_per_user,
        unauthenticated_per_peer=settings.ws_max_unauthenticated_per_peer,
    )
    repository = EntityRepository(database)
    sessions = SessionStore(database)
    actors = ActorValidator(repository, sessions)
    state = ServerState(
        settings=settings,
        database=database,
        repository=repository,
        tokens=tokens,
        throttle=LoginThrottle(free_attempts=settings.login_free_attempts, max_delay=settings.login_max_delay_seconds),
        peer_throttle=LoginThrottle(
            free_attempts=settings.login_peer_free_attempts, max_delay=settings.login_max_delay_seconds
        ),
        password_checks=PasswordCheckGate(
            concurrency=settings.login_password_checks, queue=settings.login_password_check_queue
        ),
        sessions=sessions,
        key_vaults=KeyVaultStore(database),
        dispatcher=dispatcher,
        hub=EventHub(dispatcher, tokens, actors, limits, require_encryption=settings.require_encryption),
        actors=actors,
    )
    dispatcher.on_user_write(state.actors.forget)
    dispatcher.on_user_write(state.hub.revalidate_user)
    if settings.admin_login and settings.admin_password:
        await ensure_admin(state, settings.admin_login, settings.admin_password)
    return state


async def ensure_admin(state: ServerState, login: str, password: str) -> None:
    """Create the admin user if no user has this login; an existing one is left as it is."""
    if await state.repository.find_user_by_login(login, with_disabled=True) is not None:
        return
    admin = User(login=login, name="Administrator", roles={"ADMIN"}, password=password)
    try:
        await write_entities(state, KIND_BY_NAME["User"], [admin], SYSTEM_ACTOR)
    except ConflictError:
        # Nodes starting together on one new database all find no admin; one creates it, the others' inserts
        # hit the unique login and must not fail their start.
        if await state.repository.find_user_by_login(login, with_disabled=True) is None:
            raise
        return
    log.info("created admin user %s", login)


def origin_allowed(origin: str | None, host: str | None, allowed: Sequence[str]) -> bool:
    """May a websocket from a page of `origin` connect? Clients that are not browsers send no Origin; a browser
    page may connect from the server's own origin, or from one of the configured CORS origins."""
    if origin is None or "*" in allowed or origin in allowed:
        return True
    return host is not None and urlsplit(origin).netloc == host


DESCRIPTION = "Medical data with live entity events. Authenticate with POST /rest/v1/auth/login."
OPENAPI_URL = "/openapi.json"


def api_collections() -> list[Collection]:
    """The REST API's collections, in the order the router tries them: entity collections first (most requests),
    `me` before the users collection (whose Mount would take its paths), then login, the encryption
    configuration, the key vault and health."""
    entities = entity_collections()
    users = next(i for i, collection in enumerate(entities) if collection.tag == "User")
    return [*entities[:users], me, *entities[users:], auth, crypto, key_vault, checks]


class MedstreamApp(Starlette):
    """The ASGI application: a plain Starlette app (its middleware stack on every route, its router trying the
    routes in order), with its title, version and OpenAPI document."""

    def __init__(
        self,
        *,
        title: str,
        version: str,
        document: dict[str, Any],
        routes: Sequence[BaseRoute],
        middleware: Sequence[Middleware],
        lifespan: Lifespan[MedstreamApp],
    ) -> None:
        super().__init__(routes=routes, middleware=middleware, lifespan=lifespan)
        self.title = title
        self.version = version
        self.document = document

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document of the routes served (server/openapi.py), as `/openapi.json` serves it."""
        return self.document


async def serve_openapi(request: Request) -> Response:
    """`/openapi.json`; behind a proxy's root path, the document names it as its first server, as FastAPI does."""
    app = request.app
    assert isinstance(app, MedstreamApp)
    document = app.openapi()
    root_path = request.scope.get("root_path", "").rstrip("/")
    if root_path and root_path not in {server.get("url") for server in document.get("servers", [])}:
        document = {**document, "servers": [{"url": root_path}, *document.get("servers", [])]}
    return JSONResponse(document)


def telemetry_middleware() -> Middleware:
    """OpenTelemetry's ASGI middleware (the `opentelemetry` extra): a server span and the HTTP server metrics of
    every request and socket, through the providers an operator set up (for instance with
    `opentelemetry-instrument`)."""
    try:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    except ImportError as exc:
        raise ValidationError(
            "MEDSTREAM_OPENTELEMETRY needs OpenTelemetry's ASGI instrumentation: "
            'pip install "medstream[opentelemetry]"'
        ) from exc
    # One span per request or socket, not one per ASGI message on top of it.
    return Middleware(OpenTelemetryMiddleware, exclude_spans=["receive", "send"])


def create_app(settings: Settings | None = None) -> MedstreamApp:
    settings = settings or Settings()
    metrics = Metrics() if settings.metrics else None
    icure_sockets = IcureSockets(
        ReconnectMemory(window=settings.icure_resume_window_seconds, capacity=settings.icure_resume_max_sockets)
    )

    @asynccontextmanager
    async def lifespan(app: MedstreamApp) -> AsyncIterator[None]:
        await asyncio.to_thread(security.unknown_login_hash)  # the first unknown login waits for no extra hash
        state = await open_state(settings)
        if metrics is not None:
            metrics.bind(state)
        await state.dispatcher.start()
        retention = asyncio.create_task(
            run_retention(
                state.database,
                max_age_seconds=settings.retention_seconds,
                max_events=settings.retention_max_events,
                interval=settings.retention_interval_seconds,
            ),
            name="medstream-retention",
        )
        expiry = asyncio.create_task(
            run_session_expiry(state.sessions, interval=settings.retention_interval_seconds),
            name="medstream-session-expiry",
        )
        # Session ends made on other nodes reach this one's sockets as soon as its cache of users would see them.
        watch = asyncio.create_task(
            run_session_watch(state.sessions, state.hub, state.actors, interval=state.actors.ttl),
            name="medstream-session-watch",
        )
        app.state.medstream = state
        try:
            yield
        finally:
            watch.cancel()
            expiry.cancel()
            retention.cancel()
            state.hub.close_all()
            icure_sockets.close_all()
            await state.dispatcher.stop()
            await state.database.close()

    origins = settings.cors_origins

    async def events_endpoint(websocket: WebSocket) -> None:
        """The live-events websocket (docs/protocol.md); a browser page of an origin not allowed is refused."""
        origin = websocket.headers.get("origin")
        if not origin_allowed(origin, websocket.headers.get("host"), origins):
            await websocket.accept()
            await websocket.close(CloseCode.FORBIDDEN, f"origin {origin} not allowed"[:120])
            return
        await state_of(websocket).hub.serve(websocket)

    async def icure_endpoint(websocket: WebSocket) -> None:
        """iCure's notification socket (docs/icure.md), with the same origin rule."""
        origin = websocket.headers.get("origin")
        if not origin_allowed(origin, websocket.headers.get("host"), origins):
            await websocket.accept()
            await websocket.close(CloseCode.FORBIDDEN, f"origin {origin} not allowed"[:120])
            return
        await icure_sockets.serve(websocket)

    title = "Medstream"
    collections = api_collections()
    routes = [
        *routes_of(collections),
        WebSocketRoute("/ws/v1/events", events_endpoint, name="events"),
        # iCure's clients (docs/icure.md): an adapter over the same store and dispatcher.
        *icure_rest_routes(),
        WebSocketRoute("/ws/v2/notification/subscribe", icure_endpoint, name="icure-events"),
        *([metrics_route(metrics, settings)] if metrics is not None else []),
        Route(OPENAPI_URL, serve_openapi, methods=["GET"], name="openapi", include_in_schema=False),
        *docs_routes(title, OPENAPI_URL),
    ]
    # Pure ASGI middleware only, run on every route inside Starlette's own two (server errors outermost, the
    # exception handlers innermost), outermost first: the edge (server/edge.py: the request id, so that every
    # answer, CORS's and the 413's included, carries it and so does every line logged while serving it; the
    # metrics, so that a request CORS or the body bound answers is counted too); OpenTelemetry when asked for;
    # CORS, so that every answer carries its headers; the body bound, which the edge applies itself when
    # nothing stands between it and the routes.
    inner: list[Middleware] = []
    if settings.opentelemetry:
        inner.append(telemetry_middleware())
    if origins:
        inner.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(origins),
                allow_methods=["GET", "POST", "PUT", "DELETE"],  # PUT: iCure's clients' /rest/v2 updates
                allow_headers=["Authorization", "Content-Type", "Refresh-Token"],
                expose_headers=["X-Request-ID"],  # what a page quotes to the operator about a failed request
                max_age=600,
            )
        )
    if inner:
        inner.append(Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes))
    edge_bound = None if inner else settings.max_body_bytes
    middleware = [Middleware(Edge, metrics=metrics, routes=routes, max_body_bytes=edge_bound), *inner]
    document = openapi_document(title=title, version=__version__, description=DESCRIPTION, collections=collections)
    app = MedstreamApp(
        title=title, version=__version__, document=document, routes=routes, middleware=middleware, lifespan=lifespan
    )
    install_error_handlers(app)
    return app
