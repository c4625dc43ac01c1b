"""`medstream backup PATH`: a consistent copy of a SQLite database while servers keep using it (SQLite's online
backup API), with a progress bar; for PostgreSQL, the `pg_dump` command that does it.

The copy is made in steps, so that the progress bar moves and writers are never held up for long. A write by a
server between two steps makes SQLite start the copy over; if that keeps happening the copy is made in one step
instead (one read transaction, which does not block writers in WAL mode).
"""

from __future__ import annotations

import shlex
import sqlite3
from contextlib import closing
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from sqlalchemy.engine import make_url

from medstream.admin.exits import CommandError, Exit
from medstream.admin.opening import check_sqlite_file, sqlite_file

STEP_PAGES = 4096  # 16 MiB at SQLite's default page size
RESTARTS_BEFORE_ONE_STEP = 3


class _Restarted(Exception):
    """The source changed between steps once too often."""


def backup(database_url: str, target: Path) -> str:
    """Copy the database at `database_url` to `target` (which must not exist); what was done, in one line."""
    source = sqlite_file(database_url)
    if source is None:
        raise CommandError(Exit.FAILED, "no backup made: " + pg_dump_advice(database_url, target))
    check_sqlite_file(database_url, create=False)
    if target.exists():
        raise CommandError(Exit.FAILED, f"{target} exists already: name a new file")
    if not target.parent.is_dir():
        raise CommandError(Exit.FAILED, f"the directory of {target} does not exist")
    try:
        pages = _copy(source, target)
    except sqlite3.Error as exc:
        target.unlink(missing_ok=True)
        raise CommandError(Exit.DATABASE_UNREACHABLE, f"cannot back up {source}: {exc}") from exc
    return f"backed up {source} to {target} ({pages} pages, {target.stat().st_size} bytes)"


def _copy(source: Path, target: Path) -> int:
    """Copy `source` into a new database at `target`; the number of pages copied."""
    with closing(_connect(source)) as origin, closing(sqlite3.connect(target)) as copy:
        try:
            with Progress(
                TextColumn("backing up"),
                BarColumn(),
                TaskProgressColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            ) as progress:
                task = progress.add_task("backup", total=None)
                restarts = 0
                last_remaining: int | None = None

                def report(status: int, remaining: int, total: int) -> None:
                    nonlocal restarts, last_remaining
                    if last_remaining is not None and remaining > last_remaining:
                        restarts += 1
                        if restarts >= RESTARTS_BEFORE_ONE_STEP:
                            raise _Restarted
                    last_remaining = remaining
                    progress.update(task, total=total, completed=total - remaining)

                origin.backup(copy, pages=STEP_PAGES, progress=report)
        except _Restarted:
            origin.backup(copy, pages=-1)
        (pages,) = copy.execute("PRAGMA page_count").fetchone()
    return int(pages)


def _connect(path: Path) -> sqlite3.Connection:
    """The existing database at `path` (never a new one)."""
    return sqlite3.connect(path.resolve().as_uri() + "?mode=rw", uri=True)


def pg_dump_advice(database_url: str, target: Path) -> str:
    """How to back up the PostgreSQL database at `database_url` with pg_dump, its command line included. The
    password is left out: pg_dump reads it from PGPASSWORD or ~/.pgpass."""
    url = make_url(database_url)
    command = ["pg_dump", "--format=custom", f"--file={target}"]
    if url.host:
        command.append(f"--host={url.host}")
    if url.port:
        command.append(f"--port={url.port}")
    if url.username:
        command.append(f"--username={url.username}")
    command.append(url.database or "postgres")
    return f"PostgreSQL is backed up with pg_dump (pg_restore restores it): {shlex.join(command)}"
