"""The server's log lines, read from a real `medstream serve` process: one format for Medstream's and uvicorn's
lines with time, level, logger and request id (text or JSON), the request id shared by the answer's header, the
access line and an error's body, the access log hidden below `info`, and no secret in any line, at `debug`."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from medstream.server.app import create_app
from medstream.server.log_format import RequestIdFilter
from medstream.server.settings import Settings
from tests.integration.cli_support import cli_env
from tests.integration.logged_server import serving

TEXT_LINE = re.compile(
    r"(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"(?P<logger>\S+) \[(?P<requestId>[^\]]+)\] (?P<message>.*)"
)
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
GENERATED_ID = re.compile(r"[0-9a-f]{16}")


def records(output: str, log_format: str) -> list[dict[str, Any]]:
    """Every line of `output` as a record (time, level, logger, requestId, message); each line must be one."""
    parsed = []
    for line in output.splitlines():
        if log_format == "json":
            record = json.loads(line)
        else:
            match = TEXT_LINE.fullmatch(line)
            assert match is not None, f"not a log line: {line!r}"
            record = match.groupdict()
            record["requestId"] = None if record["requestId"] == "-" else record["requestId"]
        assert TIME.fullmatch(record["time"]), record
        assert record["level"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}, record
        assert record["logger"], record
        parsed.append(record)
    return parsed


@pytest.mark.parametrize(
    ("log_format", "options", "env"),
    [("text", ("--log-format", "text"), {}), ("json", (), {"MEDSTREAM_LOG_FORMAT": "json"})],
)
async def test_every_line_has_time_level_logger_and_the_request_id_its_answer_carries(
    tmp_path: Path, log_format: str, options: tuple[str, ...], env: dict[str, str]
) -> None:
    insane = [b"two words", b"x" * 129, b"<b>id</b>", "id\u00e9".encode(), b"line\tbreak"]
    async with serving(tmp_path, *options, env=cli_env(**env)) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            kept = await client.get("/health", headers={"X-Request-ID": "order-7f3a:retry.2"})
            replaced = [await client.get("/health", headers={"X-Request-ID": value}) for value in insane]
            generated = await client.get("/health")
            refused = await client.get("/rest/v1/patients/some-id")
        ws_url = server.url.replace("http", "ws") + "/ws/v1/events"
        async with connect(ws_url, additional_headers={"X-Request-ID": "socket-9"}) as socket:
            await socket.send(json.dumps({"type": "auth", "token": "not a token"}))
            with pytest.raises(ConnectionClosed):
                await socket.recv()

    assert kept.headers["X-Request-ID"] == "order-7f3a:retry.2"
    for answer in replaced:
        assert GENERATED_ID.fullmatch(answer.headers["X-Request-ID"]), answer.headers
    assert GENERATED_ID.fullmatch(generated.headers["X-Request-ID"])
    assert refused.status_code == 401
    assert refused.json()["requestId"] == refused.headers["X-Request-ID"], "the error body names the request"

    lines = records(server.output, log_format)
    access = {r["requestId"]: r for r in lines if r["logger"] == "uvicorn.access"}
    for answer in [kept, *replaced, generated, refused]:
        line = access[answer.headers["X-Request-ID"]]
        assert line["level"] == "INFO"
        assert f'"GET {answer.url.path} HTTP/1.1" {answer.status_code}' in line["message"]
        if log_format == "json":
            assert (line["method"], line["path"], line["status"]) == ("GET", answer.url.path, answer.status_code)
    for value in insane:
        assert value.decode() not in server.output, "an insane X-Request-ID is replaced, never logged"
    accepted = [r for r in lines if "WebSocket /ws/v1/events" in r["message"] and "accepted" in r["message"]]
    assert [r["requestId"] for r in accepted] == ["socket-9"], "a websocket's lines carry its connection's id"
    started = [r for r in lines if r["message"].startswith("Application startup complete")]
    assert len(started) == 1 and started[0]["logger"] == "uvicorn.error" and started[0]["requestId"] is None


async def test_below_info_the_access_log_is_hidden(tmp_path: Path) -> None:
    env = cli_env(MEDSTREAM_LOG_LEVEL="WARNING")
    async with serving(tmp_path, env=env) as server, httpx.AsyncClient(base_url=server.url) as client:
        answer = await client.get("/health", headers={"X-Request-ID": "quiet-request-1"})

    assert answer.status_code == 200 and answer.headers["X-Request-ID"] == "quiet-request-1"
    assert "quiet-request-1" not in server.output
    assert "uvicorn.access" not in server.output and " INFO " not in server.output


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(RequestIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_an_unexpected_error_names_its_request_in_its_answer_and_its_log_line(tmp_path: Path) -> None:
    """The 500 is answered outside every middleware (Starlette's handler of any exception): it still carries the
    request's id, and so does the line that logs the error."""
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}"))

    async def broken(_request: Request) -> Response:
        raise RuntimeError("a defect")

    app.add_route("/broken", broken)
    collected = Collected()
    logging.getLogger("medstream.server").addHandler(collected)
    try:
        transport = httpx.ASGITransport(app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            # A task of its own, as uvicorn runs each request: the request's id ends with it.
            answer = await asyncio.create_task(client.get("/broken", headers={"X-Request-ID": "bug-report-1"}))
    finally:
        logging.getLogger("medstream.server").removeHandler(collected)

    assert answer.status_code == 500
    assert answer.headers["X-Request-ID"] == "bug-report-1"
    assert answer.json()["requestId"] == "bug-report-1"
    logged = [(r.getMessage(), getattr(r, "request_id", None)) for r in collected.records]
    assert logged == [("unexpected error", "bug-report-1")]


PASSWORD = 'Pässwörd "quoted" \\ back/slash & more=7f3a'
WRONG_PASSWORD = 'Wröng "password" \\ 91c2'
LOGIN = "log-scenario-admin"


def written_forms(secret: str) -> set[str]:
    """The ways a secret could be written into a log: as it is, JSON-escaped (ASCII or not), as a Python repr
    shows it, percent-encoded in a URL."""
    return {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret),
    }


def token_pieces(token: str, size: int = 16) -> set[str]:
    """Every `size`-character piece of a JWT's claims and signature (its header is the same in every token): a
    log that shortens a token (`eyJhbGciOi...nrIBvVgD0`) still shows one."""
    _header, claims, signature = token.split(".")
    return {part[i : i + size] for part in (claims, signature) for i in range(len(part) - size + 1)}


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_no_secret_is_logged_at_debug(tmp_path: Path, log_format: str) -> None:
    options = ("--log-level", "debug", "--log-format", log_format, "--admin-login", LOGIN)
    secrets = [PASSWORD, WRONG_PASSWORD]
    served = serving(tmp_path, *options, "--admin-password", PASSWORD)
    async with served as server, httpx.AsyncClient(base_url=server.url) as client:
        login = await client.post("/rest/v1/auth/login", json={"username": LOGIN, "password": PASSWORD})
        assert login.status_code == 200, login.text
        first = login.json()
        by_body = await client.post("/rest/v1/auth/refresh", json={"refreshToken": first["refreshToken"]})
        second = by_body.json()
        by_header = await client.post("/rest/v1/auth/refresh", headers={"Refresh-Token": second["refreshToken"]})
        third = by_header.json()
        assert by_body.status_code == by_header.status_code == 200
        token = third["token"]
        secrets += [first["token"], first["refreshToken"], second["token"], second["refreshToken"], token]
        secrets.append(third["refreshToken"])

        bad_login = await client.post("/rest/v1/auth/login", json={"username": LOGIN, "password": WRONG_PASSWORD})
        cut_login = await client.post(
            "/rest/v1/auth/login",
            content=json.dumps({"username": LOGIN, "password": WRONG_PASSWORD})[:-2],
            headers={"Content-Type": "application/json"},
        )
        assert (bad_login.status_code, cut_login.status_code) == (401, 400)

        auth = {"Authorization": f"Bearer {token}"}
        ws_url = server.url.replace("http", "ws") + "/ws/v1/events"
        # Some clients send the token in the handshake's headers too; the server reads only the auth frame.
        async with connect(ws_url, additional_headers=auth) as socket:
            await socket.send(json.dumps({"type": "auth", "token": token}))
            subscribe = {"type": "subscribe", "id": "s1", "entity": "HealthcareProfessional", "events": ["CREATE"]}
            await socket.send(json.dumps({**subscribe, "filter": None}))
            assert json.loads(await socket.recv())["type"] == "subscribed"
            created = await client.post("/rest/v1/healthcare-professionals", json={"lastName": "Control"}, headers=auth)
            assert created.status_code == 200, created.text
            event = json.loads(await socket.recv())
            assert event["type"] == "event" and event["entity"]["id"] == created.json()["id"]
        entity_id = created.json()["id"]

        # A refresh token offered as an access token, on a socket and on a route: refused, and not logged.
        async with connect(ws_url) as refused_socket:
            await refused_socket.send(json.dumps({"type": "auth", "token": third["refreshToken"]}))
            with pytest.raises(ConnectionClosed):
                await refused_socket.recv()
        wrong_kind = await client.get(
            "/rest/v1/users/current", headers={"Authorization": f"Bearer {third['refreshToken']}"}
        )
        assert wrong_kind.status_code == 401
        # Tokens and a password in a query string, which the server ignores but uvicorn's access line shows.
        queried = await client.get(
            f"/rest/v1/healthcare-professionals/{entity_id}",
            params={"access_token": token, "password": PASSWORD, "note": first["token"], "limit": "3"},
            headers=auth,
        )
        assert queried.status_code == 200
        logout = await client.post("/rest/v1/auth/logout", headers=auth)
        assert logout.status_code == 204
        after_logout = await client.get("/rest/v1/users/current", headers=auth)
        assert after_logout.status_code == 401

    with sqlite3.connect(server.database) as db:
        keys = [str(value) for (value,) in db.execute("SELECT value FROM server_keys")]
        hashes = [
            str(value) for (value,) in db.execute("SELECT password_hash FROM users WHERE password_hash IS NOT NULL")
        ]
    assert keys and hashes
    secrets += keys + hashes

    output = server.output
    for secret in secrets:
        for form in written_forms(secret):
            assert form not in output, f"a secret is in the log ({secret[:6]}..., written {form[:12]}...)"
    for issued in (s for s in secrets if s.startswith("eyJ")):
        for piece in token_pieces(issued):
            assert piece not in output, f"a piece of a token is in the log: {piece}"
    # Controls: what is not secret is there, so the output searched is the server's whole log.
    assert LOGIN in output and entity_id in output
    assert "access_token=REDACTED" in output and "limit=3" in output
