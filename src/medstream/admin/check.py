"""`medstream check`: the configuration, the database reachable, its migrations current, and its event log's
size, age, retention and lag, read without changing anything (a missing SQLite file is reported, not made)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from rich.console import Console
from sqlalchemy import Connection, func, select

from medstream.admin.exits import CommandError, Exit
from medstream.admin.opening import OPEN_ERRORS, open_database, shown_url, unreachable
from medstream.server.settings import Settings
from medstream.store import outbox
from medstream.store.schema import outbox as outbox_table
from medstream.store.upgrade import MIGRATIONS_DIR


@dataclass(frozen=True)
class LogStats:
    head: outbox.LogHead
    count: int
    unnumbered: int
    oldest: tuple[int, int] | None  # (seq, created ms) of the oldest numbered event
    newest: tuple[int, int] | None
    past_retention: int  # events older than the retention period, still there


def newest_migration() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def current_migrations(conn: Connection) -> tuple[str, ...]:
    return MigrationContext.configure(conn).get_current_heads()


def log_stats(conn: Connection, created_before: int) -> LogStats:
    """The log's head (from its tail row, as any reader sees it, whether a dispatcher runs or not) and rows."""
    table = outbox_table
    count, unnumbered = conn.execute(select(func.count(table.c.seq), func.count() - func.count(table.c.seq))).one()
    numbered = select(table.c.seq, table.c.created).where(table.c.seq.is_not(None)).limit(1)
    ends = [conn.execute(numbered.order_by(order)).one_or_none() for order in (table.c.seq, table.c.seq.desc())]
    old = conn.execute(select(func.count()).where(table.c.created < created_before)).scalar_one()
    oldest, newest = (None if end is None else (int(end[0]), int(end[1])) for end in ends)
    return LogStats(outbox.head(conn), int(count), int(unnumbered), oldest, newest, int(old))


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def describe_log(stats: LogStats, settings: Settings) -> list[str]:
    head = stats.head
    lines = [f"event log: head {head.last_seq}, floor {head.floor_seq}, epoch {head.epoch}, {stats.count} events"]
    if stats.oldest is not None and stats.newest is not None:
        lines.append(f"  oldest: {stats.oldest[0]} at {_when(stats.oldest[1])}")
        age = max(0.0, time.time() - stats.newest[1] / 1000)
        lines.append(f"  newest: {stats.newest[0]} at {_when(stats.newest[1])} ({age:.0f} s ago)")
    lines.append(
        f"  lag: {stats.unnumbered} committed events without a position yet"
        + (" (a running server gives them theirs)" if stats.unnumbered else "")
    )
    lines.append(
        f"  retention: {settings.retention_seconds:.0f} s and {settings.retention_max_events} newest events; "
        f"{stats.past_retention} older events left (a running server trims every "
        f"{settings.retention_interval_seconds:.0f} s)"
    )
    return lines


async def check(settings: Settings, say: Callable[[str], None]) -> None:
    """Say what was found, a line each; CommandError for the first problem (its exit code says which)."""
    url = settings.database_url
    say(f"configuration: valid; database {shown_url(url)}")
    database = await open_database(url, migrate=False)
    console = Console(stderr=True)
    try:
        with console.status("reading the database"):
            say(f"database: reachable ({database.backend.name})")
            current = await database.run_read(current_migrations)
            newest = newest_migration()
            if current != (newest,):
                at = ", ".join(current) or "none (an empty database)"
                raise CommandError(
                    Exit.CHECK_FAILED,
                    f"migrations not current: the database is at {at}, this version's newest is {newest} "
                    "(`medstream serve` migrates on start; a newer version's database needs that version)",
                )
            say(f"migrations: current ({newest})")
            cutoff = int((time.time() - settings.retention_seconds) * 1000)
            stats = await database.run_read(lambda conn: log_stats(conn, cutoff))
        for line in describe_log(stats, settings):
            say(line)
    except OPEN_ERRORS as exc:
        raise unreachable(url, exc) from exc
    finally:
        await database.close()
