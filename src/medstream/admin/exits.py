"""The exit codes of the `medstream` command, one per kind of problem (docs/deploy.md lists them), and the error
that carries one."""

from __future__ import annotations

from enum import IntEnum

from medstream.errors import MedstreamError, ValidationError


class Exit(IntEnum):
    OK = 0
    FAILED = 1
    """The command could not do what it was asked: no such user, a login that exists, an unknown data owner."""
    USAGE = 2
    """An unknown option or MEDSTREAM_* variable, a missing argument (argparse's own code for usage errors)."""
    INVALID_SETTING = 3
    """A setting's value is not valid, a database URL that names no database Medstream supports included."""
    DATABASE_UNREACHABLE = 4
    """The database could not be opened: PostgreSQL refused or did not answer, or the file is not a database."""
    DATABASE_MISSING = 5
    """The SQLite database, or the directory it would be in, does not exist."""
    CANNOT_LISTEN = 6
    """The server cannot listen on its host and port: the port is in use, or the address is not this machine's."""
    CHECK_FAILED = 7
    """`medstream check` found the database's schema behind or ahead of this version's migrations."""
    INTERNAL = 70
    """An unexpected error (EX_SOFTWARE): `--log-level debug` shows its traceback."""


class CommandError(MedstreamError):
    """A problem the command reports in one line, and exits with `exit`."""

    def __init__(self, exit_code: Exit, message: str) -> None:
        super().__init__(message)
        self.exit = exit_code


class InvalidSettingError(ValidationError):
    """A setting's value is not valid (a ValidationError, as for settings given in code)."""

    exit = Exit.INVALID_SETTING
