"""A raw websocket client of the live-events protocol (docs/protocol.md), for tests that speak it frame by frame.

No SDK in between: what these clients send is exactly what a test writes, and what they receive is every frame
the server sent, so protocol tests see close codes, error frames and pings as they are on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from medstream.sdk import MedTechApi
from medstream.server.runner import MedstreamServer, start_server
from medstream.server.settings import Settings
from medstream.server.websocket import EventHub
from tests.conftest import ADMIN_LOGIN, ADMIN_PASSWORD

EVENTS_PATH = "/ws/v1/events"
WAIT = 10.0  # the bound on every wait for something that must happen

Frame = dict[str, Any]


def ws_url(http_url: str) -> str:
    return http_url.replace("http", "ws", 1) + EVENTS_PATH


async def login(http_url: str, username: str, password: str) -> dict[str, Any]:
    """A token pair from POST /rest/v1/auth/login."""
    async with httpx.AsyncClient(base_url=http_url) as http:
        response = await http.post("/rest/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    pair: dict[str, Any] = response.json()
    return pair


async def create_patients(
    http_url: str, token: str, count: int = 1, *, note: str | None = None, ids: list[str] | None = None
) -> list[dict[str, Any]]:
    """`count` patients created in one REST call (a batch when more than one), as the server stored them."""
    ids = ids or [str(uuid.uuid4()) for _ in range(count)]
    bodies = [{"id": i, "firstName": "Test", "lastName": i[:8], "note": note} for i in ids]
    async with httpx.AsyncClient(base_url=http_url, timeout=30) as http:
        headers = {"Authorization": f"Bearer {token}"}
        if len(bodies) == 1:
            response = await http.post("/rest/v1/patients", json=bodies[0], headers=headers)
        else:
            response = await http.post("/rest/v1/patients/batch", json=bodies, headers=headers)
    assert response.status_code == 200, response.text
    stored = response.json()
    return stored if isinstance(stored, list) else [stored]


class RawClient:
    """One socket; `frames` keeps every frame received, in order."""

    def __init__(self, websocket: ClientConnection) -> None:
        self.websocket = websocket
        self.frames: list[Frame] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(
        cls, http_url: str, token: str | None = None, *, sock: socket.socket | None = None, max_size: int | None = None
    ) -> AsyncIterator[RawClient]:
        """A socket to the server's events endpoint, authenticated first when `token` is given."""
        extra: dict[str, Any] = {"sock": sock} if sock is not None else {}
        async with connect(
            ws_url(http_url),
            proxy=None,
            compression=None,
            max_size=max_size or 64 * 1024 * 1024,
            open_timeout=WAIT,
            close_timeout=2,
            **extra,
        ) as websocket:
            client = cls(websocket)
            if token is not None:
                await client.send({"type": "auth", "token": token})
            yield client

    async def send(self, message: Frame | str | bytes) -> None:
        await self.websocket.send(orjson.dumps(message).decode() if isinstance(message, dict) else message)

    async def recv(self, within: float = WAIT) -> Frame:
        frame: Frame = orjson.loads(await asyncio.wait_for(self.websocket.recv(), within))
        self.frames.append(frame)
        return frame

    async def recv_until(self, predicate: Callable[[Frame], bool], within: float = WAIT) -> Frame:
        """The first frame that satisfies `predicate`; frames before it stay in `frames`."""
        async with asyncio.timeout(within):
            while True:
                frame = await self.recv(within)
                if predicate(frame):
                    return frame

    async def subscribe(
        self,
        subscription_id: str,
        entity: str = "Patient",
        events: tuple[str, ...] = ("CREATE",),
        filter: Frame | None = None,
        **resume: Any,
    ) -> Frame:
        """Subscribe and wait for the answer (`subscribed`, or an `error` for this id)."""
        await self.send(
            {"type": "subscribe", "id": subscription_id, "entity": entity, "events": list(events), "filter": filter}
            | resume
        )
        return await self.recv_until(lambda f: f.get("id") == subscription_id and f["type"] in {"subscribed", "error"})

    async def event_for(self, subscription_id: str, entity_id: str, within: float = WAIT) -> Frame:
        """The event of `entity_id` on `subscription_id`: received already, or waited for."""
        for frame in self.events(subscription_id):
            if frame["entity"]["id"] == entity_id:
                return frame
        return await self.recv_until(
            lambda f: f["type"] == "event" and f["id"] == subscription_id and f["entity"]["id"] == entity_id, within
        )

    def events(self, subscription_id: str) -> list[Frame]:
        return [f for f in self.frames if f["type"] == "event" and f["id"] == subscription_id]

    async def closed(self, within: float = WAIT) -> tuple[int | None, str]:
        """Read until the server closes the socket; its close code and reason."""
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(within):
                while True:
                    await self.recv(within)
        return self.websocket.close_code, self.websocket.close_reason or ""


def small_receive_buffer_socket(http_url: str, size: int = 4096) -> socket.socket:
    """A TCP socket connected to the server with a small receive buffer: a client that stops reading makes the
    server's writes back up after a few KiB instead of the megabytes loopback autotuning would allow."""
    parts = urlsplit(http_url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)  # before connect: it sets the advertised window
    sock.connect((parts.hostname, parts.port))
    sock.setblocking(False)
    return sock


@dataclass
class DedicatedServer:
    """An in-process server of a test's own, with settings of its own."""

    server: MedstreamServer
    url: str
    database_url: str

    @property
    def hub(self) -> EventHub:
        hub: EventHub = self.server.app.state.medstream.hub
        return hub

    def limit_send_buffers(self, size: int) -> None:
        """Give the sockets the server accepts from now on a small kernel send buffer (Linux copies it from the
        listening socket), as a slow network would: a client that reads slowly backs the server up sooner."""
        for listening in self.server.servers[0].sockets:
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)

    async def admin_api(self) -> MedTechApi:
        builder = MedTechApi.builder().with_url(self.url)
        return await builder.with_username(ADMIN_LOGIN).with_password(ADMIN_PASSWORD).build()

    async def admin_token(self) -> str:
        token: str = (await login(self.url, ADMIN_LOGIN, ADMIN_PASSWORD))["token"]
        return token


@contextlib.asynccontextmanager
async def dedicated_server(directory: Path, **overrides: Any) -> AsyncIterator[DedicatedServer]:
    """A server on its own SQLite file in `directory`, with `overrides` of the default settings; it takes clear
    payloads unless `require_encryption=True` is among them."""
    database_url = f"sqlite:///{directory / f'dedicated-{uuid.uuid4().hex[:8]}.db'}"
    settings = Settings(
        host="127.0.0.1",
        port=0,
        database_url=database_url,
        admin_login=ADMIN_LOGIN,
        admin_password=ADMIN_PASSWORD,
        # These tests exercise the event protocol and the server with clear payloads (`create_patients`).
        **({"require_encryption": False} | overrides),
    )
    server, task, url = await start_server(settings)
    try:
        yield DedicatedServer(server, url, database_url)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)
