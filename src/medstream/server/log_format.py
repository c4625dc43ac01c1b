"""The server's log lines: one format for Medstream's records (`medstream.*`) and uvicorn's (`uvicorn.error`,
`uvicorn.access`), as text or as one JSON object per line, each with its time, level, logger and request id;
configured with `logging.config.dictConfig(logging_config(level, format))` (docs/deploy.md, "Logs").

Text:  `2026-01-31T09:15:02.481Z INFO uvicorn.access [5f0c2a9be1d47a36] 10.0.0.7:51234 - "GET /health HTTP/1.1" 200`
JSON:  `{"time": "2026-01-31T09:15:02.481Z", "level": "INFO", "logger": "uvicorn.access", "requestId": "5f0c...",
        "message": "...", "client": "10.0.0.7:51234", "method": "GET", "path": "/health", "status": 200}`

Secrets: Medstream logs no password, token or key, and uvicorn's HTTP lines show no headers or bodies. What
remains:
- the query string of a path, which a client may have put a token in: the value of a query parameter named like
  a secret (`token`, `access_token`, `password`, `api_key`, `signature` ...), or shaped like a JWT, is shown as
  `REDACTED` (`RedactQueries`);
- at `debug`, the websockets library logs (as `uvicorn.error`) each handshake's headers and each frame, with the
  `Authorization` header or the `auth` frame's token: those lines are dropped (`NoWebSocketWire`);
- other libraries log at `warning` and above only, whatever the level: at `debug` SQLAlchemy would log
  statements with their parameters.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote_plus

import orjson
import websockets

from medstream.server.request_ids import current_request_id

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["text", "json"]

REDACTED = "REDACTED"
# Query parameter names (lower case, without `-` and `_`) whose values are never shown.
_SECRET_NAME = re.compile(
    r"token|passw|pwd|secret|apikey|accesskey|signature|credential|session|authorization|^auth$|^key$|^sig$|^jwt$"
)
# A JWT: three base64url parts, the first a JSON object's (`{"` is `eyJ`).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
# Where the websockets library's own records come from (its handshake and frame lines at debug).
_WEBSOCKETS_PACKAGE = str(Path(websockets.__file__).parent)
# The arguments of uvicorn's access line: '%s - "%s %s HTTP/%s" %d' (client, method, path, HTTP version, status).
_ACCESS_ARGS = 5


def utc_timestamp(record: logging.LogRecord) -> str:
    """ISO 8601 in UTC with milliseconds: `2026-01-31T09:15:02.481Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class RequestIdFilter(logging.Filter):
    """Puts the id of the request or websocket connection being served on every record (`request_id`, None
    outside of one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True


def redacted_query(path: str) -> str:
    """`path` with the values of its secret-looking query parameters replaced by REDACTED."""
    base, separator, query = path.partition("?")
    if not separator:
        return path
    pairs = []
    for pair in query.split("&"):
        name, equals, value = pair.partition("=")
        key = unquote_plus(name).lower().replace("_", "").replace("-", "")
        if equals and (_SECRET_NAME.search(key) or _JWT.search(unquote_plus(value))):
            pair = f"{name}={REDACTED}"
        pairs.append(pair)
    return f"{base}?{'&'.join(pairs)}"


class RedactQueries(logging.Filter):
    """Redacts the query strings of the paths uvicorn's lines show (access lines, websocket handshakes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("uvicorn") and isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                redacted_query(arg) if isinstance(arg, str) and arg.startswith("/") and "?" in arg else arg
                for arg in record.args
            )
        return True


class NoWebSocketWire(logging.Filter):
    """Drops the websockets library's debug lines: the headers of each handshake and the content of each frame
    (uvicorn hands it its `uvicorn.error` logger), where a client's token is."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.DEBUG and record.pathname.startswith(_WEBSOCKETS_PACKAGE))


class TextFormatter(logging.Formatter):
    """`<time> <LEVEL> <logger> [<request id>|-] <message>`, then the traceback of an exception, if any."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None) or "-"
        line = f"{utc_timestamp(record)} {record.levelname} {record.name} [{request_id}] {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: `time`, `level`, `logger`, `requestId` (null outside of a
    request), `message`; `exception` (the traceback) when there is one; and for an access line its `client`,
    `method`, `path` and `status`."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        entry: dict[str, Any] = {
            "time": utc_timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "requestId": request_id,
            "message": record.getMessage(),
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == _ACCESS_ARGS:
            client, method, path, _version, status = record.args
            entry.update(client=client, method=method, path=path, status=status)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


def logging_config(level: LogLevel, log_format: LogFormat) -> dict[str, Any]:
    """The `logging.config.dictConfig` of a server process: one handler on stderr for every logger, Medstream's
    and uvicorn's at `level`, the other libraries' at warning."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {"()": RequestIdFilter},
            "redact_queries": {"()": RedactQueries},
            "no_websocket_wire": {"()": NoWebSocketWire},
        },
        "formatters": {"line": {"()": JsonFormatter if log_format == "json" else TextFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "line",
                "filters": ["no_websocket_wire", "request_id", "redact_queries"],
            }
        },
        "loggers": {
            "medstream": {"level": level.upper()},
            # uvicorn.Config sets uvicorn.error's and uvicorn.access's levels from the same level (runner.py).
            "uvicorn": {"level": level.upper()},
        },
        "root": {"level": "WARNING", "handlers": ["stderr"]},
    }
