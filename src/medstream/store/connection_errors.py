"""Which database errors mean "no usable database here" (an UnavailableError, a 503) rather than a failed
transaction, on either database."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, OperationalError

from medstream.errors import UnavailableError

# PostgreSQL SQLSTATEs that mean "no usable database here": connection exceptions (08), operator intervention
# such as a shutdown or a dropped database (57P), no such database (3D000), too many connections (53300) and
# refused authorization (28). asyncpg reports them as plain DBAPIErrors, not OperationalErrors.
_UNAVAILABLE_SQLSTATES = ("08", "57P", "3D000", "53300", "28")


def is_connection_error(exc: DBAPIError) -> bool:
    sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
    return (
        bool(exc.connection_invalidated)
        or sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
        or (isinstance(exc, OperationalError) and not _is_lock_error(exc))
    )


def _is_lock_error(exc: DBAPIError) -> bool:
    message = str(exc.orig).lower()
    return "locked" in message or "lock timeout" in message


def translate(exc: BaseException) -> BaseException:
    """`exc`, or the UnavailableError it means (caused by it)."""
    if isinstance(exc, OperationalError | DBAPIError) and is_connection_error(exc):
        unavailable = UnavailableError(f"database unavailable: {exc.orig}")
        unavailable.__cause__ = exc
        return unavailable
    return exc
