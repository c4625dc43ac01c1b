"""CORS (MEDSTREAM_CORS_ORIGINS): browsers of the configured origins may call the REST routes and open the events
websocket; a browser page of any other origin may not. Clients that are not browsers send no Origin and are
served as always."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from medstream.server.settings import Settings
from tests.integration.raw_events import WAIT, DedicatedServer, dedicated_server, ws_url

ALLOWED = "https://clinic.example"
OTHER = "https://elsewhere.example"


@pytest_asyncio.fixture
async def cors_server(tmp_path: Path) -> AsyncIterator[DedicatedServer]:
    async with dedicated_server(tmp_path, cors_origins=(ALLOWED, "https://second.example")) as server:
        yield server


async def _socket_answer(url: str, origin: str | None, token: str) -> tuple[str, Any]:
    """Open the events socket with `origin`, authenticate and subscribe: ("subscribed", frame) or ("closed",
    (code, reason))."""
    try:
        async with connect(
            ws_url(url), origin=Origin(origin) if origin else None, proxy=None, open_timeout=WAIT
        ) as websocket:
            await websocket.send(orjson.dumps({"type": "auth", "token": token}).decode())
            subscribe = {"type": "subscribe", "id": "s1", "entity": "Patient", "events": ["CREATE"], "filter": None}
            await websocket.send(orjson.dumps(subscribe).decode())
            while True:
                frame = orjson.loads(await websocket.recv())
                if frame.get("id") == "s1":
                    return "subscribed", frame
    except ConnectionClosed as closed:
        assert closed.rcvd is not None
        return "closed", (closed.rcvd.code, closed.rcvd.reason)


async def test_a_preflight_from_an_allowed_origin_is_answered_and_another_is_refused(
    cors_server: DedicatedServer,
) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    async with httpx.AsyncClient(base_url=cors_server.url) as http:
        allowed = await http.options("/rest/v1/patients", headers={"Origin": ALLOWED, **preflight})
        refused = await http.options("/rest/v1/patients", headers={"Origin": OTHER, **preflight})

    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers


async def test_a_preflight_for_an_icure_clients_put_is_answered(cors_server: DedicatedServer) -> None:
    preflight = {
        "Origin": ALLOWED,
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "authorization",
    }
    async with httpx.AsyncClient(base_url=cors_server.url) as http:
        answer = await http.options("/rest/v2/patient", headers=preflight)
    assert answer.status_code == 200, answer.text
    assert "PUT" in answer.headers["access-control-allow-methods"]


async def test_a_cross_origin_request_on_an_entity_route_carries_the_cors_headers(
    cors_server: DedicatedServer,
) -> None:
    token = await cors_server.admin_token()
    async with httpx.AsyncClient(base_url=cors_server.url, headers={"Authorization": f"Bearer {token}"}) as http:
        created = await http.post("/rest/v1/patients", json={"firstName": "Cors"}, headers={"Origin": ALLOWED})
        other = await http.get(f"/rest/v1/patients/{created.json()['id']}", headers={"Origin": OTHER})
        error = await http.get("/rest/v1/patients/no-such-id", headers={"Origin": ALLOWED})

    assert created.status_code == 200, created.text
    assert created.headers["access-control-allow-origin"] == ALLOWED
    # The request id, which the page quotes to the operator, is readable by the page.
    assert (
        created.headers["x-request-id"] and "x-request-id" in created.headers["access-control-expose-headers"].lower()
    )
    # A simple request of another origin is served (CORS is the browser's rule), without the header that
    # would let its page read the answer.
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
    assert error.status_code == 404 and error.headers["access-control-allow-origin"] == ALLOWED


async def test_a_websocket_from_an_allowed_origin_is_served_and_from_another_refused(
    cors_server: DedicatedServer,
) -> None:
    token = await cors_server.admin_token()

    assert (await _socket_answer(cors_server.url, ALLOWED, token))[1]["type"] == "subscribed"
    assert (await _socket_answer(cors_server.url, None, token))[1]["type"] == "subscribed"
    outcome, (code, reason) = await _socket_answer(cors_server.url, OTHER, token)
    assert outcome == "closed" and code == 4003 and OTHER in reason


async def test_without_cors_origins_only_clients_without_origin_and_the_servers_own_pages_connect(
    tmp_path: Path,
) -> None:
    async with dedicated_server(tmp_path) as server:
        token = await server.admin_token()
        async with httpx.AsyncClient(base_url=server.url) as http:
            preflight = await http.options(
                "/rest/v1/patients", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST"}
            )
        own_origin = server.url  # a page the server itself serves, such as /docs

        assert (await _socket_answer(server.url, None, token))[1]["type"] == "subscribed"
        assert (await _socket_answer(server.url, own_origin, token))[1]["type"] == "subscribed"
        outcome, (code, _reason) = await _socket_answer(server.url, ALLOWED, token)
    assert outcome == "closed" and code == 4003
    assert preflight.status_code == 405 and "access-control-allow-origin" not in preflight.headers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ()),
        ("", ()),
        (f"{ALLOWED}, https://second.example ,", (ALLOWED, "https://second.example")),
        (f'["{ALLOWED}"]', (ALLOWED,)),
    ],
)
def test_cors_origins_come_from_a_comma_separated_variable(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: tuple[str, ...]
) -> None:
    if value is None:
        monkeypatch.delenv("MEDSTREAM_CORS_ORIGINS", raising=False)
    else:
        monkeypatch.setenv("MEDSTREAM_CORS_ORIGINS", value)
    assert Settings().cors_origins == expected
