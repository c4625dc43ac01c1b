"""The ASGI application: `create_app(settings)` wires store, auth, routes and error handling."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, WebSocket

from medstream import __version__
from medstream.access import Actor
from medstream.errors import ConflictError
from medstream.model.entities import KIND_BY_NAME
from medstream.model.user import User
from medstream.server.actors import ActorValidator
from medstream.server.dispatcher import Dispatcher
from medstream.server.errors import BodySizeLimit, install_error_handlers
from medstream.server.retention import run_retention
from medstream.server.routes import auth, health, me
from medstream.server.routes.entities import all_entity_routers, write_entities
from medstream.server.security import LoginThrottle, TokenIssuer
from medstream.server.settings import Settings
from medstream.server.state import ServerState
from medstream.server.websocket import EventHub, WebSocketLimits
from medstream.store.database import Database
from medstream.store.keys import read_key
from medstream.store.repository import EntityRepository

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
    poll = settings.dispatcher_poll_seconds or (0.05 if database.is_sqlite else 0.005)
    dispatcher = Dispatcher(database, poll_interval=poll)
    limits = WebSocketLimits(
        heartbeat_interval=settings.ws_heartbeat_seconds,
        heartbeat_timeout=settings.ws_heartbeat_timeout_seconds,
        send_queue=settings.ws_send_queue,
        subscriptions=settings.ws_max_subscriptions,
    )
    repository = EntityRepository(database)
    actors = ActorValidator(repository)
    state = ServerState(
        settings=settings,
        database=database,
        repository=repository,
        tokens=tokens,
        throttle=LoginThrottle(free_attempts=settings.login_free_attempts, max_delay=settings.login_max_delay_seconds),
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
    if await state.repository.find_user_by_login(login) is not None:
        return
    admin = User(login=login, name="Administrator", roles={"ADMIN"}, password=password)
    try:
        await write_entities(state, KIND_BY_NAME["User"], [admin], SYSTEM_ACTOR)
    except ConflictError:
        # Nodes starting together on one new database all find no admin; one creates it, the others' inserts
        # hit the unique login and must not fail their start.
        if await state.repository.find_user_by_login(login) is None:
            raise
        return
    log.info("created admin user %s", login)


async def events_endpoint(websocket: WebSocket) -> None:
    """The live-events websocket (docs/protocol.md)."""
    state: ServerState = websocket.app.state.medstream
    await state.hub.serve(websocket)


def _add_routes(app: FastAPI, router: APIRouter) -> None:
    """Add `router`'s routes to the app's own list, as they are (their paths and tags already carry the
    router's prefix and tags). FastAPI's `include_router` instead keeps each router behind a wrapper that
    re-derives its routes on every match: 10 us per request for the first router's routes, 64 us for the
    last one's, in a request that costs the server a few hundred."""
    app.router.routes.extend(router.routes)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()

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
        app.state.medstream = state
        try:
            yield
        finally:
            retention.cancel()
            state.hub.close_all()
            await state.dispatcher.stop()
            await state.database.close()

    app = FastAPI(
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
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
