"""Running the app under uvicorn, with a shutdown that tells websocket clients 1001 (going away) first."""

from __future__ import annotations

import asyncio
import gc
import socket
import time

import uvicorn

from medstream.errors import ServerGoingAway
from medstream.server.app import MedstreamApp, create_app
from medstream.server.connection_limits import ConnectionLimits, connection_cap, raise_open_file_limit
from medstream.server.log_format import LogLevel
from medstream.server.settings import Settings
from medstream.server.uvicorn_protocols import HttpProtocol, WebSocketProtocol

# Middle-generation collections per full one, once start-up is frozen (CPython's default is 10).
FULL_COLLECTION_EVERY = 100


class MedstreamServer(uvicorn.Server):
    """uvicorn closes open websockets with 1012; we close ours with 1001 and a reason before it does."""

    def __init__(self, config: uvicorn.Config, app: MedstreamApp, *, freeze_gc: bool = False) -> None:
        super().__init__(config)
        self.app = app
        self.freeze_gc = freeze_gc

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.freeze_gc:
            # What start-up made (modules, routes, models, migrations, the store) lives as long as the process:
            # frozen out of the collector's generations, it is no longer traversed by every full collection,
            # which cost about a fifth of the CPU of a 1,000-sample batch write (bench.write_path).
            gc.collect()
            gc.freeze()
            # The collector runs a full collection when its oldest generation's survivors since the last one
            # reach a quarter of that generation. Frozen, that generation is nearly empty, so every tenth
            # middle-generation collection became a full one, traversing everything in flight: a batch write's
            # thousand entities, tens of milliseconds a time on a 2-core VM (bench.write_path). One full
            # collection per hundred middle ones instead; the young generations are left as they are.
            young, middle, _ = gc.get_threshold()
            gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        state = getattr(self.app.state, "medstream", None)
        if state is not None:
            state.hub.close_all(ServerGoingAway.close_code, "server going away")
            deadline = time.monotonic() + 2.0
            while state.hub.connections and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded wait
                await asyncio.sleep(0.02)
        await super().shutdown(sockets)


def make_server(settings: Settings, *, log_level: LogLevel | None = None, freeze_gc: bool = False) -> MedstreamServer:
    """`freeze_gc`: freeze what start-up allocated out of the cyclic collector (for a server process of its
    own, as `medstream serve`; not for servers started inside another program, such as tests).

    uvicorn's lines are logged from `log_level` up (`settings.log_level` when None). Where they go and in which
    format is the process's logging configuration, left as it is: `medstream` configures it from the settings
    (server/log_format.py) before anything logs; a program that starts a server inside it keeps its own.

    Raises the process's soft open-file limit to its hard one: connections are capped below it."""
    level = log_level or settings.log_level
    app = create_app(settings)
    limits = ConnectionLimits(
        total=connection_cap(settings.max_connections, raise_open_file_limit()),
        per_address=settings.max_connections_per_address,
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=level,
        access_log=level in {"debug", "info"},  # below "info" uvicorn would build each line, then drop it
        lifespan="on",
        # server/uvicorn_protocols.py: a response's head and body in one write, request heads timed out,
        # connections counted in all and per address.
        http=HttpProtocol.configured(limits, settings.http_head_timeout_seconds),
        timeout_keep_alive=settings.http_keep_alive_seconds,
        ws_max_size=1 << 20,
        # Medstream's own heartbeat (server/websocket.py) pings a silent client and drops one silent too long;
        # uvicorn's protocol-level keepalive would ping every socket every 20 s on top of it.
        ws_ping_interval=None,
        ws_per_message_deflate=settings.ws_per_message_deflate,
        # uvicorn's own protocol keeps a compression context per socket; ours does not, unless asked to.
        ws=WebSocketProtocol.configured(
            close_timeout=settings.ws_close_timeout_seconds,
            context_takeover=settings.ws_deflate_context_takeover,
            limits=limits,
        ),
        timeout_graceful_shutdown=5,
    )
    return MedstreamServer(config, app, freeze_gc=freeze_gc)


async def start_server(
    settings: Settings, *, log_level: LogLevel | None = "warning"
) -> tuple[MedstreamServer, asyncio.Task[None], str]:
    """Start a server in this event loop; returns it, the task serving, and its base URL. uvicorn's lines are
    logged from `log_level` up: warnings by default, so that a test's requests are not each an access line
    (None: `settings.log_level`)."""
    server = make_server(settings, log_level=log_level)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the server stopped while starting")
        await asyncio.sleep(0.02)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    return server, task, f"http://{host}:{port}"
