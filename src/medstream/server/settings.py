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
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    # How often the dispatcher polls the outbox tail for other nodes' writes (local commits wake it at once);
    # None: 5 ms on PostgreSQL (several nodes), 50 ms on SQLite (other processes only).
    dispatcher_poll_seconds: float | None = None
    ws_heartbeat_seconds: float = 20.0
    ws_heartbeat_timeout_seconds: float = 60.0
    ws_send_queue: int = 10_000
    ws_max_subscriptions: int = 1_000
    # What one user may hold on the sockets of one node: sockets, subscriptions over all of them, and the weight
    # of their filters (an estimate of the bytes they hold, filters/weight.py); past one, 4429 or an `error`.
    ws_max_sockets_per_user: int = 100
    ws_max_subscriptions_per_user: int = 10_000
    ws_max_filter_bytes_per_user: int = 64 * 1024 * 1024
    # Sockets of one peer address that have not authenticated yet (they have no user to count against).
    ws_max_unauthenticated_per_peer: int = 100
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
