"""Server settings: one model, read from command-line options, MEDSTREAM_* environment variables and defaults, in
that order of precedence. `medstream serve --help` and the table in docs/deploy.md are generated from it."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from medstream.server.log_format import LogFormat, LogLevel
from medstream.store.database import DEFAULT_DATABASE_URL

ENV_PREFIX = "MEDSTREAM_"


class Settings(BaseSettings):
    """Every field is a flag of `medstream serve` and `demo` (`--ws-send-queue`) and an environment variable
    (`MEDSTREAM_WS_SEND_QUEUE`); `Settings(port=0, ...)` sets fields in code, over both."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, extra="forbid")

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8080, ge=0, le=65535, description="port to listen on (0 picks a free one)")
    database_url: str = Field(DEFAULT_DATABASE_URL, description="`sqlite:///path` or `postgresql://user@host:port/db`")
    admin_login: str | None = Field(None, description="an admin made at start if no user has this login")
    admin_password: str | None = Field(None, description="that admin's password")
    access_token_seconds: int = Field(15 * 60, gt=0, description="access token lifetime")
    refresh_token_seconds: int = Field(14 * 24 * 3600, gt=0, description="refresh token lifetime (14 days by default)")
    max_body_bytes: int = Field(8 * 1024 * 1024, gt=0, description="request body bound, 8 MiB by default (413 above)")
    max_batch_size: int = Field(10_000, gt=0, description="entities in one batch request at most")
    login_free_attempts: int = Field(
        5, ge=0, description="failed logins of one login name before each further attempt is delayed"
    )
    login_max_delay_seconds: float = Field(60.0, ge=0, description="the longest delay of a throttled login")
    login_peer_free_attempts: int = Field(
        20,
        ge=0,
        description="failed logins in a row from one client address (whatever the logins) before its further "
        "attempts are delayed as one login's are; a success from the address starts the count again",
    )
    login_wait_seconds: float = Field(
        10.0,
        ge=0,
        description="how long a login attempt beyond the free ones waits for the attempts in flight of its login "
        "or address (if they succeed it goes through) before it is answered 429",
    )
    login_password_checks: int = Field(
        1,
        gt=0,
        description="password checks (argon2, about 0.1 s of a core each) a node runs at once: a login flood costs "
        "the node at most these, not the other requests' CPU",
    )
    login_password_check_queue: int = Field(
        32,
        ge=0,
        description="logins that may wait for a password check; beyond them a login is answered 429 with "
        "`Retry-After: 1` at once",
    )
    require_encryption: bool = Field(
        True,
        description="refuse a write that carries an encrypted field (GET /rest/v1/crypto/configuration lists them) "
        "in clear, and a filter or subscription that reads one: end-to-end encryption is mandatory for every client. "
        "On by default; `--no-require-encryption` or `MEDSTREAM_REQUIRE_ENCRYPTION=false` turns it off, for clients "
        "that do not encrypt (the server then stores what they send in clear)",
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="origins whose browser pages may call the REST routes and open the events websocket (CORS), "
        "comma-separated: `https://app.example,https://admin.example` (a JSON list works too); none by default",
    )
    dispatcher_poll_seconds: float | None = Field(
        None,
        gt=0,
        description="how often the dispatcher polls the event log for writes it was not told of (local commits "
        "wake it at once, and on PostgreSQL other nodes' commits too, through `LISTEN`/`NOTIFY`: the poll is the "
        "safety net for a notice lost while the listening connection was down); unset: 1 s on PostgreSQL, 50 ms "
        "on SQLite (for other processes' writes)",
    )
    pg_notify_interval_seconds: float = Field(
        0.005,
        ge=0,
        description="PostgreSQL: the shortest time between two notices (`NOTIFY`) by which a node tells the others "
        "that it committed events; the commits of a burst share one notice, sent after them",
    )
    pg_listen_check_seconds: float = Field(
        30.0,
        gt=0,
        description="PostgreSQL: how often a node checks (`SELECT 1`) its connection listening for other nodes' "
        "notices, so that one that died without a word is replaced (its end is noticed at once otherwise)",
    )
    http_head_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="a connection that has not sent a complete request head this long after it opened (or after "
        "its next request began) is closed",
    )
    http_keep_alive_seconds: int = Field(
        5, gt=0, description="an HTTP connection idle this long after a response is closed"
    )
    max_connections: int | None = Field(
        None,
        gt=0,
        description="connections held at once, websockets included; past it a new one is answered 503 and closed. "
        "Unset, or above what the open-file limit allows: that limit (raised to its hard limit at start) less 256 "
        "kept for the database and the server's own files",
    )
    max_connections_per_address: int = Field(
        1_000,
        ge=0,
        description="connections held at once from one peer address, websockets included; past it a new one from "
        "that address is answered 503 and closed. 0: no cap (behind a reverse proxy every client has its address)",
    )
    ws_heartbeat_seconds: float = Field(
        20.0,
        gt=0,
        description="the server pings an event socket silent this long (a `ping` message; uvicorn's own "
        "protocol-level keepalive is off); an iCure socket (docs/icure.md) is pinged this often, at most every 10 s",
    )
    ws_heartbeat_timeout_seconds: float = Field(
        60.0, gt=0, description="an event socket (or an iCure socket) silent this long is closed with 4408"
    )
    ws_send_queue: int = Field(
        10_000, gt=0, description="messages queued for one socket before it is closed with 4429 (too slow)"
    )
    ws_max_subscriptions: int = Field(1_000, gt=0, description="subscriptions on one socket at most")
    ws_max_sockets_per_user: int = Field(
        100, gt=0, description="event sockets one user holds open on this node; past it a new one is closed with 4429"
    )
    ws_max_subscriptions_per_user: int = Field(
        10_000,
        gt=0,
        description="subscriptions one user holds on this node, over all its sockets; past it a subscribe gets an "
        "`error`",
    )
    ws_max_filter_bytes_per_user: int = Field(
        64 * 1024 * 1024,
        gt=0,
        description="the weight of one user's subscription filters on this node, an estimate of the bytes they hold "
        "(64 MiB by default); past it a subscribe gets an `error`",
    )
    ws_max_unauthenticated_per_peer: int = Field(
        100,
        gt=0,
        description="event sockets of one peer address that have not authenticated yet; past it a new one is closed "
        "with 4429",
    )
    ws_close_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="how long a client has to answer the server's close frame (or to read what is buffered "
        "before it) before its connection is dropped: a client that stopped reading never reads the close",
    )
    ws_per_message_deflate: bool = Field(
        False,
        description="negotiate permessage-deflate on event sockets, for slow links. By default without context "
        "takeover (RFC 7692): each message is compressed on its own and no zlib state outlives it, so an idle "
        "socket costs no more memory than without compression; an event frame shrinks about 1.5x alone, 3.5x in a "
        "batched frame. The server compresses every frame once per socket, which costs fan-out throughput",
    )
    ws_deflate_context_takeover: bool = Field(
        False,
        description="with deflate on, keep each socket's compression context between messages: about 3.4x "
        "smaller single event frames, for about 40 KB more server memory per connection",
    )
    icure_resume_window_seconds: float = Field(
        60.0,
        ge=0,
        description="an iCure client's socket (docs/icure.md) that reconnects within this long after its previous "
        "socket dropped, with a token of the same login session and the same subscription, first receives the "
        "events it missed; this node remembers where each dropped socket left off for this long. 0: no replay",
    )
    icure_resume_max_sockets: int = Field(
        10_000,
        ge=0,
        description="dropped iCure sockets this node remembers for their reconnect at most; past it the oldest is "
        "forgotten (its reconnect replays nothing)",
    )
    opentelemetry: bool = Field(
        False,
        description="OpenTelemetry's ASGI middleware on every route: a server span and the HTTP server metrics of "
        "each request and socket, through the providers an operator sets up (for instance with "
        '`opentelemetry-instrument`). Needs the `opentelemetry` extra (`pip install "medstream[opentelemetry]"`). '
        "Off, the middleware is not in the stack at all",
    )
    metrics: bool = Field(
        True,
        description="serve Prometheus metrics at `GET /metrics` (HTTP requests, event sockets, events, the database, "
        'logins: docs/deploy.md, "Metrics"). Off: no `/metrics` route, and requests and transactions are not '
        "timed",
    )
    metrics_token: str | None = Field(
        None,
        min_length=16,
        description="the bearer token that lets a client scrape `/metrics` from another host (`Authorization: Bearer "
        "...`; 16 characters at least). Unset: only clients on loopback may scrape",
    )
    metrics_loopback: bool = Field(
        True,
        description="clients on loopback (127.0.0.0/8, ::1) may scrape `/metrics` without the token. Turn it off "
        "when a proxy on this host forwards requests without `X-Forwarded-For` (every client would be on loopback)",
    )
    retention_seconds: float = Field(
        7 * 24 * 3600, gt=0, description="events older than this are trimmed (7 days by default)"
    )
    retention_max_events: int = Field(10_000_000, gt=0, description="and all but this many newest")
    retention_interval_seconds: float = Field(60.0, gt=0, description="how often the outbox is trimmed")
    log_level: LogLevel = Field(
        "info",
        description="the lowest level of Medstream's and uvicorn's log lines: `debug`, `info` (with an access line "
        "per request), `warning` (no access lines), `error`; other libraries log warnings and errors only. `debug` "
        "also prints the traceback of a command's error",
    )
    log_format: LogFormat = Field(
        "text",
        description='`text`, one line per record; or `json`, one JSON object per line for log collectors ("Logs" '
        "in docs/deploy.md)",
    )

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        """`INFO` is `info`, as operators often spell a level."""
        return value.lower() if isinstance(value, str) else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins_list(cls, value: Any) -> Any:
        """A comma-separated string of origins (or a JSON list) is the tuple of its origins."""
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else tuple(o.strip() for o in text.split(",") if o.strip())
        return value


def flag_of(name: str) -> str:
    """The command-line flag of a field: `ws_send_queue` is `--ws-send-queue`."""
    return "--" + name.replace("_", "-")


def env_of(name: str) -> str:
    """The environment variable of a field: `ws_send_queue` is `MEDSTREAM_WS_SEND_QUEUE`."""
    return ENV_PREFIX + name.upper()


def describe_settings_error(error: ValidationError | SettingsError) -> str:
    """One line naming each setting that is not valid, its flag and variable, and what is wrong with it."""
    if isinstance(error, SettingsError):  # a value that could not even be decoded (a list that is not JSON)
        text = f"{error}: {error.__cause__}" if error.__cause__ else str(error)
        named = [n for n in Settings.model_fields if f'"{n}"' in text or f" {n}:" in text]
        where = ", ".join(f"{n} ({flag_of(n)}, {env_of(n)})" for n in named) or "settings"
        return f"invalid setting {where}: {' '.join(text.split())}"
    problems = []
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else ""
        if name in Settings.model_fields:
            where = f"{name} ({flag_of(name)}, {env_of(name)})"
            shown = "" if "password" in name or "token" in name else f", got {item['input']!r}"
        else:
            where, shown = name or "settings", ""
        problems.append(f"{where}: {item['msg']}{shown}")
    return "invalid setting " + "; ".join(problems)
