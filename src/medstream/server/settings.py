"""Server settings: command-line options override MEDSTREAM_* environment variables, which override defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from medstream.store.database import DEFAULT_DATABASE_URL


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"MEDSTREAM_{name}", default)


def _flag(value: str | None, default: bool) -> bool:
    if value is None or not value.strip():
        return default
    if value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if value.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected a boolean (1/0, true/false, on/off), got {value!r}")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = DEFAULT_DATABASE_URL
    admin_login: str | None = None
    admin_password: str | None = None
    access_token_seconds: int = 15 * 60
    refresh_token_seconds: int = 14 * 24 * 3600
    max_body_bytes: int = 8 * 1024 * 1024
    max_batch_size: int = 10_000
    login_free_attempts: int = 5
    login_max_delay_seconds: float = 60.0
    # Failed logins in a row from one peer address (whatever the logins) before its attempts are slowed down as
    # one login's are; a success from the address starts its count again.
    login_peer_free_attempts: int = 20
    # How long a login attempt beyond the free ones may wait for the attempts in flight of its login or address
    # to end (if they succeed it goes through) before it is refused with 429.
    login_wait_seconds: float = 10.0
    # Password checks (argon2, ~0.1 s of a core each) run at once, and how many more may wait their turn; a
    # login beyond them is refused with 429 and Retry-After at once.
    login_password_checks: int = 1
    login_password_check_queue: int = 32
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    # How often the dispatcher polls the outbox tail for other nodes' writes (local commits wake it at once);
    # None: 5 ms on PostgreSQL (several nodes), 50 ms on SQLite (other processes only).
    dispatcher_poll_seconds: float | None = None
    ws_heartbeat_seconds: float = 20.0
    ws_heartbeat_timeout_seconds: float = 60.0
    ws_send_queue: int = 10_000
    ws_max_subscriptions: int = 1_000
    # After the server sends a close frame, how long the client has to answer it before the connection is
    # dropped (TCP abort): a client that stopped reading never reads the close, and its socket would stay open.
    ws_close_timeout_seconds: float = 10.0
    # permessage-deflate on event sockets: frames up to 3-4x smaller, but the server compresses every frame once
    # per socket: off by default (bench/README.md has the figures).
    ws_per_message_deflate: bool = False
    # With deflate on: keep each socket's compression context between messages (RFC 7692 context takeover), for
    # the best ratio on small frames, at ~40 KB per connection. Off, no zlib state outlives a message.
    ws_deflate_context_takeover: bool = False
    # FastAPI's own OpenTelemetry spans and metrics, for an operator who sets up OpenTelemetry providers (for
    # instance with opentelemetry-instrument). Off, FastAPI does not look for providers on every request: that
    # look-up was 7% of a write's time on the event loop.
    opentelemetry: bool = False
    # Outbox retention: events older than this, or beyond this many, are trimmed every interval.
    retention_seconds: float = 7 * 24 * 3600
    retention_max_events: int = 10_000_000
    retention_interval_seconds: float = 60.0

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from MEDSTREAM_* variables; keyword arguments that are not None win."""
        values: dict[str, object] = {
            "host": _env("HOST", cls.host),
            "port": int(_env("PORT", str(cls.port)) or cls.port),
            "database_url": _env("DATABASE_URL", DEFAULT_DATABASE_URL),
            "admin_login": _env("ADMIN_LOGIN"),
            "admin_password": _env("ADMIN_PASSWORD"),
            "access_token_seconds": int(_env("ACCESS_TOKEN_SECONDS", str(cls.access_token_seconds)) or 0),
            "login_peer_free_attempts": int(_env("LOGIN_PEER_FREE_ATTEMPTS", str(cls.login_peer_free_attempts)) or 0),
            "login_wait_seconds": float(_env("LOGIN_WAIT_SECONDS", str(cls.login_wait_seconds)) or 0),
            "login_password_checks": int(_env("LOGIN_PASSWORD_CHECKS", str(cls.login_password_checks)) or 1),
            "login_password_check_queue": int(
                _env("LOGIN_PASSWORD_CHECK_QUEUE", str(cls.login_password_check_queue)) or 0
            ),
            "max_body_bytes": int(_env("MAX_BODY_BYTES", str(cls.max_body_bytes)) or 0),
            "ws_heartbeat_seconds": float(_env("WS_HEARTBEAT_SECONDS", str(cls.ws_heartbeat_seconds)) or 0),
            "ws_send_queue": int(_env("WS_SEND_QUEUE", str(cls.ws_send_queue)) or 0),
            "ws_heartbeat_timeout_seconds": float(
                _env("WS_HEARTBEAT_TIMEOUT_SECONDS", str(cls.ws_heartbeat_timeout_seconds)) or 0
            ),
            "ws_max_subscriptions": int(_env("WS_MAX_SUBSCRIPTIONS", str(cls.ws_max_subscriptions)) or 0),
            "ws_close_timeout_seconds": float(_env("WS_CLOSE_TIMEOUT_SECONDS", str(cls.ws_close_timeout_seconds)) or 0),
            "ws_per_message_deflate": _flag(_env("WS_PER_MESSAGE_DEFLATE"), cls.ws_per_message_deflate),
            "ws_deflate_context_takeover": _flag(_env("WS_DEFLATE_CONTEXT_TAKEOVER"), cls.ws_deflate_context_takeover),
            "opentelemetry": _flag(_env("OPENTELEMETRY"), cls.opentelemetry),
            "retention_seconds": float(_env("RETENTION_SECONDS", str(cls.retention_seconds)) or 0),
            "retention_max_events": int(_env("RETENTION_MAX_EVENTS", str(cls.retention_max_events)) or 0),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
