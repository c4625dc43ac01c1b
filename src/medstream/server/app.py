"""The ASGI application: `create_app(settings)` wires store, auth, routes and error handling."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast
from urllib.parse import urlsplit

from fastapi import FastAPI, WebSocket
from starlette.middleware.cors import CORSMiddleware

from medstream import __version__
from medstream.access import Actor
from medstream.errors import CloseCode, ConflictError
from medstream.model.entities import KIND_BY_NAME
from medstream.model.user import User
from medstream.server.actors import ActorValidator
from medstream.server.dispatcher import Dispatcher
from medstream.server.docs import docs_routes
from medstream.server.errors import BodySizeLimit, install_error_handlers
from medstream.server.login_throttle import LoginThrottle, PasswordCheckGate
from medstream.server.metrics import Metrics
from medstream.server.metrics_middleware import MetricsMiddleware
from medstream.server.openapi import openapi_document
from medstream.server.request_ids import RequestIds
from medstream.server.rest import routes_of
from medstream.server.retention import run_retention
from medstream.server.routes.auth import auth
from medstream.server.routes.crypto import crypto
from medstream.server.routes.entities import entity_collections, write_entities
from medstream.server.routes.health import checks
from medstream.server.routes.me import me
from medstream.server.routes.metrics import metrics_route
from medstream.server.security import TokenIssuer
from medstream.server.session_upkeep import run_session_expiry, run_session_watch
from medstream.server.settings import Settings
from medstream.server.state import ServerState, state_of
from medstream.server.websocket import EventHub, WebSocketLimits
from medstream.store.database import Database
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


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics() if settings.metrics else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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
            await state.dispatcher.stop()
            await state.database.close()

    description = "Medical data with live entity events. Authenticate with POST /rest/v1/auth/login."
    app = FastAPI(
        title="Medstream",
        version=__version__,
        description=description,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url=None,  # server/docs.py serves /docs and /redoc offline
        redoc_url=None,
        telemetry={
            "tracing": settings.opentelemetry,
            "metrics": settings.opentelemetry,
            "logs": settings.opentelemetry,
        },
    )
    # The router tries routes in order: entity collections first (most requests), `me` before the users
    # collection (whose Mount would take its paths), the documentation's routes last.
    entities = entity_collections()
    users = next(i for i, collection in enumerate(entities) if collection.tag == "User")
    collections = [*entities[:users], me, *entities[users:], auth, crypto, checks]
    app.router.routes[:0] = routes_of(collections)
    if metrics is not None:
        app.router.routes.append(metrics_route(metrics, settings))
    app.router.routes.extend(docs_routes(app.title, "/openapi.json"))
    document = openapi_document(title=app.title, version=app.version, description=description, collections=collections)

    def openapi() -> dict[str, Any]:
        return cast(dict[str, Any], document)

    app.openapi = openapi  # type: ignore[method-assign]
    install_error_handlers(app)
    origins = settings.cors_origins

    async def events_endpoint(websocket: WebSocket) -> None:
        """The live-events websocket (docs/protocol.md); a browser page of an origin not allowed is refused."""
        origin = websocket.headers.get("origin")
        if not origin_allowed(origin, websocket.headers.get("host"), origins):
            await websocket.accept()
            await websocket.close(CloseCode.FORBIDDEN, f"origin {origin} not allowed"[:120])
            return
        await state_of(websocket).hub.serve(websocket)

    app.add_api_websocket_route("/ws/v1/events", events_endpoint, name="events")
    # Pure ASGI middleware only, run on every route, added innermost first: CORS outside the body bound, so that
    # its 413 carries CORS's headers.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Refresh-Token"],
            max_age=600,
        )
    if metrics is not None:  # outside CORS and the body bound: a request they answer is counted too
        app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.router.routes)
    # Outermost of all: every answer, CORS's and the 413's included, carries its request's id, and so does every
    # line logged while serving it (server/request_ids.py).
    app.add_middleware(RequestIds)
    return app
