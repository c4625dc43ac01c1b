"""The ASGI application: `create_app(settings)` wires store, auth, routes and error handling."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

from fastapi import APIRouter, FastAPI, WebSocket
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from medstream import __version__
from medstream.access import Actor
from medstream.errors import ConflictError
from medstream.model.entities import KIND_BY_NAME
from medstream.model.user import User
from medstream.server.actors import ActorValidator
from medstream.server.dispatcher import Dispatcher
from medstream.server.errors import BodySizeLimit, install_error_handlers
from medstream.server.login_throttle import LoginThrottle, PasswordCheckGate
from medstream.server.retention import run_retention
from medstream.server.routes import auth, health, me
from medstream.server.routes.entities import all_entity_routers, write_entities
from medstream.server.routing import DirectRouter
from medstream.server.security import TokenIssuer
from medstream.server.session_expiry import run_session_expiry
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
    database = Database(settings.database_url)
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
        hub=EventHub(dispatcher, tokens, actors, limits),
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


async def events_endpoint(websocket: WebSocket) -> None:
    """The live-events websocket (docs/protocol.md)."""
    await state_of(websocket).hub.serve(websocket)


def _add_routes(app: FastAPI, router: APIRouter) -> None:
    """Add `router`'s routes to the app's own list, as they are (their paths and tags already carry the
    router's prefix and tags). FastAPI's `include_router` instead keeps each router behind a wrapper that
    re-derives its routes on every match: 10 us per request for the first router's routes, 64 us for the
    last one's, in a request that costs the server a few hundred."""
    app.router.routes.extend(router.routes)


class MedstreamApp(FastAPI):
    """FastAPI, but for the requests that go to a DirectRoute: those run straight from here (server/routing.py)
    with the body limit and the exception handlers the middleware stack would apply, not through its six
    layers and the router's scan of every route. Off when OpenTelemetry is on: its middleware traces requests."""

    def __init__(self, *, max_body_bytes: int, direct: bool = True, **options: Any) -> None:
        super().__init__(**options)
        self.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
        self._direct_enabled = direct
        self._direct: DirectRouter | None = None
        self._direct_limited = BodySizeLimit(self._run_direct, max_bytes=max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._direct_enabled:
            if self._direct is None:  # routes are all added by now: the first request comes after start-up
                self._direct = DirectRouter(self.router.routes)
            found = self._direct.match(scope["method"], _route_path(scope))
            if found is not None:
                route, path_params = found
                scope["app"] = self
                scope.update(route=route, endpoint=route.endpoint, path_params=path_params)
                await self._direct_limited(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _run_direct(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watched(message: Any) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await scope["route"].app(scope, receive, watched)
        except Exception as exc:
            handler = self._handler_for(exc)
            if started or handler is None:
                raise
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> Callable[[Request, Exception], Awaitable[Response]] | None:
        """The app's handler for `exc`, looked up by class as Starlette's middleware does."""
        for cls in type(exc).__mro__:
            if cls in self.exception_handlers:
                handler: Any = self.exception_handlers[cls]  # every one of ours is a coroutine function
                return cast(Callable[[Request, Exception], Awaitable[Response]], handler)
        return None


def _route_path(scope: Scope) -> str:
    """The request's path within the app: without the `root_path` a proxy may mount it under."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path) and path[len(root_path) : len(root_path) + 1] in ("", "/"):
        return path[len(root_path) :]
    return path


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await open_state(settings)
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
        app.state.medstream = state
        try:
            yield
        finally:
            expiry.cancel()
            retention.cancel()
            state.hub.close_all()
            await state.dispatcher.stop()
            await state.database.close()

    app = MedstreamApp(
        max_body_bytes=settings.max_body_bytes,
        direct=not settings.opentelemetry,
        title="Medstream",
        version=__version__,
        description="Medical data with live entity events. Authenticate with POST /rest/v1/auth/login.",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        # One schema per model, used by request bodies and answers alike (DataSample, not DataSample-Input and
        # DataSample-Output): an entity is sent as it is received.
        separate_input_output_schemas=False,
        telemetry={
            "tracing": settings.opentelemetry,
            "metrics": settings.opentelemetry,
            "logs": settings.opentelemetry,
        },
    )
    install_error_handlers(app)
    for router in [health.router, auth.router, me.router, *all_entity_routers()]:
        _add_routes(app, router)
    app.add_api_websocket_route("/ws/v1/events", events_endpoint, name="events")
    return app
