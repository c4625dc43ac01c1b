"""Opening the database a command names, with one clear line for each way it can fail (`exits.Exit`).

A SQLite file that does not exist is created only when the command asks for it (`create`): `serve` does, and
says so; `check` and the commands that read or change what is there report it missing instead, so that a typo
in the path is not silently a new, empty database.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from medstream.admin.exits import CommandError, Exit
from medstream.errors import UnavailableError
from medstream.server.settings import env_of
from medstream.store.database import Database, engine_url

log = logging.getLogger("medstream")

DATABASE_SETTING = f"database_url (--database, {env_of('database_url')})"
_WHERE = f"(setting database_url: --database, {env_of('database_url')})"


def shown_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url)


def sqlite_file(url: str) -> Path | None:
    """The SQLite file `url` names, or None for PostgreSQL. CommandError if it names no database we support."""
    try:
        engine_url(url)
        parsed = make_url(url)
    except (ValueError, ArgumentError) as exc:
        raise CommandError(Exit.INVALID_SETTING, f"invalid setting {DATABASE_SETTING}: {exc}") from exc
    if parsed.get_backend_name() != "sqlite":
        return None
    return Path(str(parsed.database))


def check_sqlite_file(url: str, *, create: bool) -> None:
    """CommandError if `url` is not a database URL, or names a SQLite file that is not there (and `create` is
    off) or whose directory is not there. With `create`, says in one line that a new database is made."""
    path = sqlite_file(url)
    if path is None or path.is_file():
        return
    if not path.parent.is_dir():
        raise CommandError(
            Exit.DATABASE_MISSING,
            f"the directory of the SQLite database {path} does not exist {_WHERE}",
        )
    if path.exists():
        raise CommandError(Exit.DATABASE_UNREACHABLE, f"the SQLite database {path} is not a file {_WHERE}")
    if not create:
        raise CommandError(Exit.DATABASE_MISSING, f"no SQLite database at {path} {_WHERE}")
    log.warning("no SQLite database at %s: creating a new, empty one", path.resolve())


def unreachable(url: str, exc: BaseException) -> CommandError:
    """The one line for a database that could not be reached or used, from what the driver raised."""
    cause = exc
    while True:  # down to the driver's own error: its message is the one that says what is wrong
        if isinstance(cause, DBAPIError) and cause.orig is not None:
            cause = cause.orig
        elif isinstance(cause, UnavailableError) and cause.__cause__ is not None:
            cause = cause.__cause__
        else:
            break
    if isinstance(cause, OSError) and cause.errno and cause.errno > 0:  # "Connect call failed" says less
        reason = os.strerror(cause.errno)
    elif isinstance(cause, OSError) and cause.strerror:  # a name that does not resolve (socket.gaierror)
        reason = cause.strerror
    else:
        reason = " ".join(str(cause).split()) or type(cause).__name__
    return CommandError(Exit.DATABASE_UNREACHABLE, f"cannot open the database {shown_url(url)}: {reason} {_WHERE}")


OPEN_ERRORS = (OSError, TimeoutError, SQLAlchemyError, sqlite3.Error, UnavailableError)


async def open_database(url: str, *, create: bool = False, migrate: bool = True) -> Database:
    """The database, its schema brought to the newest migration (unless `migrate` is off, where only a first
    query is run). CommandError, with the database closed, if it cannot be opened."""
    check_sqlite_file(url, create=create)
    database = Database(url)
    try:
        if migrate:
            await database.migrate()
        else:
            await database.ping()
    except OPEN_ERRORS as exc:
        await database.close()
        raise unreachable(url, exc) from exc
    except BaseException:
        await database.close()
        raise
    return database
