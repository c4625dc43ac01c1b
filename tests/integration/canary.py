"""Canaries: prove that a server never sees a piece of content, by looking for it in everything the server touched.

A canary test writes a *marker* (a random string nobody could guess) through a client, then collects everything
the server touched while it ran and looks for the marker there in every form it could have been written in.

    from tests.integration.canary import canary_server, find, new_marker

    async def test_comments_never_reach_the_server(tmp_path: Path) -> None:
        secret = new_marker("comment") + " é ✓"   # goes into an encrypted field
        control = new_marker("label")              # goes into a field that travels in clear
        async with canary_server("sqlite", tmp_path, require_encryption=True) as server:
            api = await server.admin_api()         # or any user's SDK: drive it as an application would
            ... create a data sample with comment=secret and a label coded `control`, read it back, subscribe ...
            await server.collect()                 # optional: the database as it is now (an SQLite WAL before
                                                   # its checkpoint), besides the snapshots taken at the end
            await api.close()
        assert find(secret, server.captures) == []   # the server never saw it, in any form
        assert find(control, server.captures)        # the harness did see what went in clear

The second assertion is the control without which the first proves nothing: it shows that the captures hold the
writes that carried the secret. Run it on both databases (`"sqlite"` and `"postgresql"`).

What `server.captures` holds once the `async with` block is left (each entry a name and the bytes it holds):

- **the ASGI tap** (`AsgiTap`), a wrapper around the app that uvicorn serves on a real socket: each HTTP request
  (method, path, query string, headers, body) and each response (headers, body), and every websocket
  message in both directions (the bytes and texts of the ASGI `receive` and `send` messages, and the frames the
  server's protocol sends at once through its `send_now` extension, past the ASGI `send`);
- **the server's logs** at debug (`ServerLogs`): every record of every logger, libraries' included, except the
  loggers of the test's own clients in the same process (`CLIENT_LOGGERS`), each written as the server writes its
  lines, as text and as JSON;
- **the database**, read while the server runs (at each `collect()` and at the end of the block) and once it has
  stopped. SQLite: the bytes of the database file and of its `-wal` and `-journal` files (rows deleted or
  rewritten stay there until SQLite reuses their pages), and every table read with `SELECT *` (a value longer
  than a page is split across pages in the file, not in a table's read). PostgreSQL: `pg_dump --inserts` of the
  database and every table read with `SELECT *`, the outbox included.

Not read: PostgreSQL's own files (the row versions an update or delete left behind, its WAL), which belong to the
database server's user and hold what was once visible to `SELECT`; and the server's stdout and stderr, which in
the test's process are the test's own (Medstream writes its lines through logging only).

`forms(marker)` lists the encodings looked for (UTF-8, UTF-16, JSON escapes, base64 at the three byte alignments,
hex); `find(marker, captures)` names each capture and form where the marker was found. A marker is at least 12
bytes of UTF-8, so that the shorter base64 forms cannot match by chance; `new_marker` makes one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medstream.sdk import MedTechApi
from medstream.server.log_format import JsonFormatter, RequestIdFilter, TextFormatter
from medstream.server.runner import make_server
from medstream.server.settings import Settings
from medstream.server.uvicorn_protocols import SEND_NOW
from tests.conftest import ADMIN_LOGIN, ADMIN_PASSWORD, database_url_for

MIN_MARKER_BYTES = 12
# The loggers of the clients a test runs in the server's process: what they log is the client's, not the server's.
CLIENT_LOGGERS = ("medstream.sdk", "httpx", "httpcore", "websockets.client")
STOP_WITHIN = 30.0  # seconds for the server to stop, pg_dump to finish


def new_marker(label: str) -> str:
    """`canary-<label>-<16 random hex digits>`: ASCII, so that it also fits ids, codes and URL paths. Add non-ASCII
    text to a marker meant for free text, so that its JSON and UTF-16 forms differ from its UTF-8 bytes."""
    return f"canary-{label}-{secrets.token_hex(8)}"


def _base64_aligned(data: bytes, encode: Callable[[bytes], bytes]) -> dict[int, bytes]:
    """For each offset 0, 1, 2 (bytes before `data` in the encoded stream, modulo 3): the base64 characters that
    depend on the bytes of `data` only. Character i of an encoding covers bits [6i, 6i + 6) of the stream."""
    aligned = {}
    for offset in range(3):
        encoded = encode(bytes(offset) + data)
        first = -(-8 * offset // 6)  # the first character that starts at or after data's first bit
        end = (8 * (offset + len(data))) // 6  # one past the last character that ends by data's last bit
        aligned[offset] = encoded[first:end]
    return aligned


def byte_forms(data: bytes) -> dict[str, bytes]:
    """Every form bytes could be written in, by name: `raw`, then `base64+0`... and `base64url+0`... (the characters
    that depend on `data` only, at each alignment, as `forms` describes) and `hex`, `HEX`."""
    found = {"raw": data}
    for offset, text in _base64_aligned(data, base64.b64encode).items():
        found[f"base64+{offset}"] = text
    for offset, text in _base64_aligned(data, base64.urlsafe_b64encode).items():
        found[f"base64url+{offset}"] = text
    return {**found, "hex": data.hex().encode(), "HEX": data.hex().upper().encode()}


def forms(marker: str) -> dict[str, bytes]:
    """Every form `marker` could be written in, by name, in this order:

    - `utf-8`, `utf-16-le`, `utf-16-be`: the text as it is;
    - `json`: inside a JSON string as Python's `json.dumps` writes it (ASCII: `\\uXXXX` for anything else);
      `json utf-8`: as orjson or `json.dumps(ensure_ascii=False)` writes it (UTF-8, only quotes, backslashes and
      control characters escaped; `json utf-8 (python)` where `json.dumps` writes it otherwise); `json \\u` and
      `json \\U`: every character as a `\\uXXXX` escape (UTF-16 code units, surrogate pairs beyond the BMP), with
      lower and upper case hex digits;
    - `base64+0`, `base64+1`, `base64+2`: within standard base64 of a byte string where the marker's UTF-8 bytes
      start at an offset of 0, 1 or 2 modulo 3, the characters that depend on the marker only (whatever comes
      before or after it); `base64url+0`... the same in the URL-safe alphabet;
    - `hex`, `HEX`: its UTF-8 bytes in lower and upper case hex.

    A form whose bytes equal an earlier one's is left out (an ASCII marker's `json` is its `utf-8`), so a place is
    reported once, under the plainest name."""
    utf8 = marker.encode()
    if len(utf8) < MIN_MARKER_BYTES:
        raise ValueError(f"a marker needs at least {MIN_MARKER_BYTES} bytes of UTF-8, not {len(utf8)}")
    utf16 = marker.encode("utf-16-be")
    units = [int.from_bytes(utf16[i : i + 2], "big") for i in range(0, len(utf16), 2)]
    candidates: list[tuple[str, bytes]] = [
        ("utf-8", utf8),
        ("utf-16-le", marker.encode("utf-16-le")),
        ("utf-16-be", utf16),
        ("json", json.dumps(marker)[1:-1].encode()),
        ("json utf-8", orjson.dumps(marker)[1:-1]),
        ("json utf-8 (python)", json.dumps(marker, ensure_ascii=False)[1:-1].encode()),
        ("json \\u", "".join(f"\\u{unit:04x}" for unit in units).encode()),
        ("json \\U", "".join(f"\\u{unit:04X}" for unit in units).encode()),
    ]
    candidates += [(name, text) for name, text in byte_forms(utf8).items() if name != "raw"]
    found: dict[str, bytes] = {}
    for name, text in candidates:
        if text not in found.values():
            found[name] = text
    return found


def find(marker: str, captures: Mapping[str, bytes]) -> list[str]:
    """`"<capture>: <form>"` for each capture and each of the marker's forms found in it, in the captures' order;
    empty when the marker is in none of them, in any form."""
    marker_forms = forms(marker)
    return [f"{name}: {form}" for name, data in captures.items() for form, text in marker_forms.items() if text in data]


def _message_bytes(value: Any) -> Iterable[bytes]:
    """Every bytes and str value inside an ASGI message (nested in lists, tuples and dicts), as bytes."""
    if isinstance(value, bytes | bytearray | memoryview):
        yield bytes(value)
    elif isinstance(value, str):
        yield value.encode()
    elif isinstance(value, dict):
        for key, item in value.items():
            if key != "type":
                yield from _message_bytes(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _message_bytes(item)


class AsgiTap:
    """An ASGI app that serves `app` and records what passes: `captures()` holds, in the order they began, each
    HTTP request (its method, path, query string and headers, then every body chunk), each response (its status
    line's headers, then every body chunk), and each websocket message received or sent (sent through the ASGI
    `send` or at once through the server protocol's `send_now` extension), with every bytes and str value each
    message carries. Lifespan messages pass through unrecorded."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._captures: dict[str, bytearray] = {}
        self._connections = 0

    def captures(self) -> dict[str, bytes]:
        return {name: bytes(data) for name, data in self._captures.items()}

    def _record(self, name: str, message: Any) -> None:
        data = self._captures.setdefault(name, bytearray())
        for part in _message_bytes(message):
            data += part + b"\n"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        self._connections += 1
        title = f"tap {self._connections:04d} {scope.get('method', 'WEBSOCKET')} {scope['path']}"
        head = [scope.get("method", ""), scope["path"], scope.get("query_string", b""), scope.get("headers", [])]
        self._record(f"{title} request", head)
        if kind == "http":
            self._captures.setdefault(f"{title} response", bytearray())
            received, sent = f"{title} request", f"{title} response"
        else:
            received, sent = f"{title} received", f"{title} sent"
            extensions = dict(scope.get("extensions") or {})
            send_now = extensions.get(SEND_NOW)
            if send_now is not None:

                def recording_send_now(text: bytes) -> bool:
                    self._record(f"{title} sent at once", text)
                    return bool(send_now(text))

                extensions[SEND_NOW] = recording_send_now
                scope = {**scope, "extensions": extensions}

        async def tapped_receive() -> Message:
            message = await receive()
            self._record(received, message)
            return message

        async def tapped_send(message: Message) -> None:
            self._record(sent, message)
            await send(message)

        await self.app(scope, tapped_receive, tapped_send)


class ServerLogs(logging.Handler):
    """Every log record at debug and above, from every logger but `CLIENT_LOGGERS`, written with the server's own
    text and JSON formats (server/log_format.py); `captures()` holds the lines. `installed()` puts it on the root
    logger with the root and `medstream` loggers at debug, and restores them afterwards."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(RequestIdFilter())
        self._text, self._json = TextFormatter(), JsonFormatter()
        self.text_lines: list[str] = []
        self.json_lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(CLIENT_LOGGERS):
            return
        try:
            self.text_lines.append(self._text.format(record))
            self.json_lines.append(self._json.format(record))
        except Exception:  # a record that cannot be written: logging's own report, as any handler does
            self.handleError(record)

    def captures(self) -> dict[str, bytes]:
        return {
            "server logs (text)": "\n".join(self.text_lines).encode(),
            "server logs (json)": "\n".join(self.json_lines).encode(),
        }

    @contextlib.contextmanager
    def installed(self) -> Iterator[ServerLogs]:
        """On the root logger, with the root and `medstream` loggers at debug; every other logger enabled and
        propagating to the root while it is installed (a server an earlier test ran under uvicorn's own logging
        configuration leaves `uvicorn.access` with a handler of its own and no propagation). Restored after."""
        root, medstream = logging.getLogger(), logging.getLogger("medstream")
        levels = root.level, medstream.level
        others = [logger for logger in logging.root.manager.loggerDict.values() if isinstance(logger, logging.Logger)]
        saved = [(logger, logger.propagate, logger.disabled) for logger in others]
        for logger in others:
            logger.propagate, logger.disabled = True, False
        root.addHandler(self)
        root.setLevel(logging.DEBUG)
        medstream.setLevel(logging.DEBUG)
        try:
            yield self
        finally:
            root.removeHandler(self)
            root.setLevel(levels[0])
            medstream.setLevel(levels[1])
            for logger, propagate, disabled in saved:
                logger.propagate, logger.disabled = propagate, disabled


def _rows_text(rows: Iterable[Iterable[Any]]) -> bytes:
    """Rows as text: one row a line, values separated by tabs; str values as UTF-8, bytes as they are."""
    lines = []
    for row in rows:
        values = [v if isinstance(v, bytes) else b"" if v is None else str(v).encode() for v in row]
        lines.append(b"\t".join(values))
    return b"\n".join(lines)


def sqlite_path(database_url: str) -> Path:
    return Path(database_url.removeprefix("sqlite:///"))


def _sqlite_captures(path: Path, when: str) -> dict[str, bytes]:
    """The database file, its -wal and -journal files (those that exist), then every table through a read-only
    connection (opened after the files are read, so that it cannot change them first)."""
    captured = {}
    for suffix in ("", "-wal", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            captured[f"sqlite file{suffix} ({when})"] = Path(f"{path}{suffix}").read_bytes()
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            rows = connection.execute(f'SELECT * FROM "{table}"').fetchall()  # names from the schema
            captured[f"sqlite table {table} ({when})"] = _rows_text(rows)
    finally:
        connection.close()
    return captured


def pg_dump_command() -> str:
    """The pg_dump on this machine: on the PATH, or the newest under /usr/lib/postgresql/<version>/bin."""
    on_path = shutil.which("pg_dump")
    if on_path:
        return on_path
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"), key=lambda p: int(p.parts[-3]))
    if not installed:
        raise RuntimeError("pg_dump not found (install postgresql-client)")
    return str(installed[-1])


async def _postgresql_captures(database_url: str, when: str) -> dict[str, bytes]:
    """`pg_dump --inserts` of the database, then every table of its schemas read with `SELECT *`."""
    process = await asyncio.create_subprocess_exec(
        pg_dump_command(),
        "--inserts",
        f"--dbname={database_url}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    dump, errors = await asyncio.wait_for(process.communicate(), STOP_WITHIN)
    if process.returncode != 0:
        raise RuntimeError(f"pg_dump failed ({process.returncode}): {errors.decode(errors='replace')}")
    captured = {f"pg_dump ({when})": dump}
    connection = await asyncpg.connect(database_url)
    try:
        tables = await connection.fetch(
            "SELECT schemaname, tablename FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        )
        for schema, table in tables:
            rows = await connection.fetch(f'SELECT * FROM "{schema}"."{table}"')
            captured[f"postgresql table {schema}.{table} ({when})"] = _rows_text(row.values() for row in rows)
    finally:
        await connection.close()
    return captured


async def database_captures(database_url: str, when: str) -> dict[str, bytes]:
    """What the database at `database_url` holds now, in captures named with `when`."""
    if database_url.startswith("sqlite"):
        return await asyncio.to_thread(_sqlite_captures, sqlite_path(database_url), when)
    return await _postgresql_captures(database_url, when)


@dataclass
class CanaryServer:
    """An in-process server that `canary_server` started, and what was captured from it: `captures` is complete
    once the `async with` block is left (the database's last snapshot is taken after the server stopped)."""

    url: str
    database_url: str
    backend: str
    tap: AsgiTap
    logs: ServerLogs
    captures: dict[str, bytes] = field(default_factory=dict)
    snapshots: int = 0
    admin_login: str = ADMIN_LOGIN
    admin_password: str = ADMIN_PASSWORD

    async def api(self, login: str, password: str) -> MedTechApi:
        return await MedTechApi.builder().with_url(self.url).with_username(login).with_password(password).build()

    async def admin_api(self) -> MedTechApi:
        return await self.api(self.admin_login, self.admin_password)

    async def collect(self) -> None:
        """Add a snapshot of the database as it is now (`... (running N)`), and what was tapped and logged so far."""
        self.snapshots += 1
        self.captures.update(await database_captures(self.database_url, f"running {self.snapshots}"))
        self._collect_tap_and_logs()

    def _collect_tap_and_logs(self) -> None:
        self.captures.update(self.tap.captures())
        self.captures.update(self.logs.captures())


@contextlib.asynccontextmanager
async def canary_server(backend: str, directory: Path, **settings: Any) -> AsyncIterator[CanaryServer]:
    """A server on a new database of `backend` ("sqlite", in `directory`, or "postgresql"), with `settings`
    overriding the defaults, served by uvicorn on a real socket through an `AsgiTap`, logging at debug into a
    `ServerLogs`. Leaving the block (without an exception) takes a last snapshot of the database while the server
    runs, stops it, and takes one more after it stopped; a PostgreSQL database is dropped after that."""
    async with database_url_for(backend, directory) as database_url:
        logs = ServerLogs()
        with logs.installed():
            options: dict[str, Any] = {"admin_login": ADMIN_LOGIN, "admin_password": ADMIN_PASSWORD, **settings}
            server = make_server(
                Settings(host="127.0.0.1", port=0, database_url=database_url, **options), log_level="debug"
            )
            tap = AsgiTap(server.app)
            server.config.app = tap  # uvicorn loads its app from the config when it starts serving
            task = asyncio.create_task(server.serve())
            try:
                while not server.started:
                    if task.done():
                        task.result()
                        raise RuntimeError("the server stopped while starting")
                    await asyncio.sleep(0.02)
                host, port = server.servers[0].sockets[0].getsockname()[:2]
                canary = CanaryServer(
                    url=f"http://{host}:{port}",
                    database_url=database_url,
                    backend=backend,
                    tap=tap,
                    logs=logs,
                    admin_login=options["admin_login"],
                    admin_password=options["admin_password"],
                )
                yield canary
                await canary.collect()
            finally:
                server.should_exit = True
                await asyncio.wait_for(task, STOP_WITHIN)
            canary.captures.update(await database_captures(database_url, "stopped"))
            canary._collect_tap_and_logs()
