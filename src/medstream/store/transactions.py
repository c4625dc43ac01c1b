"""What a transaction is: a function of a SQLAlchemy `Connection` (`Work`), what it publishes for the commit
listeners (`Database.on_commit`), and what a write can offer beyond that: to run merged with others of its
kind, and to be one statement in autocommit. No I/O here; the database's backend runs them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar

from sqlalchemy import Connection

T = TypeVar("T")
Work = Callable[[Connection], T]


@dataclass(frozen=True, slots=True)
class Statement(Generic[T]):
    """A whole write as one PostgreSQL statement, run in autocommit: one round trip, its own transaction. `result`
    makes the write's result of the rows the statement returned, or raises the write's error (the statement
    must then have changed nothing); `failure`, what a database error of the statement means for the write (a
    unique violation may be a ConflictError), or None to raise it as it is."""

    sql: str
    args: tuple[Any, ...]
    result: Callable[[list[Any]], T]
    failure: Callable[[Exception], BaseException | None] | None = None


class MergeableWrite(ABC, Generic[T]):
    """A write transaction that can also run merged with others of the same class and `merge_key` (see
    `medstream.store.backend`). Called with a connection, it runs alone, as any `Work`."""

    @property
    @abstractmethod
    def merge_key(self) -> Hashable | None:
        """Writes with equal keys (and classes) may merge; None: this one never does."""

    @abstractmethod
    def __call__(self, conn: Connection) -> T:
        """Run this write alone."""

    @classmethod
    @abstractmethod
    def run_merged(cls, conn: Connection, writes: Sequence[Self]) -> list[T]:
        """Run `writes` (two or more, in this order) as one, and return each one's result. All or nothing: an
        exception means only that they cannot all succeed together; their changes are then rolled back and
        each runs again alone."""

    @classmethod
    def pg_statement(cls, writes: Sequence[Self], dialect: Any) -> Statement[list[T]] | None:
        """For the PostgreSQL backend: `writes` (one or more) as one statement with the same outcome as
        `run_merged`, or None to run them as a transaction. `dialect` is the engine's, for compiling names and
        types."""
        return None


def merge_key(work: Work[Any]) -> Hashable | None:
    """The key under which `work` may merge with others, or None."""
    if isinstance(work, MergeableWrite):
        key = work.merge_key
        return None if key is None else (type(work), key)
    return None


_PUBLISHED = "medstream_published"


def publish(conn: Connection, items: Sequence[Any]) -> None:
    """Hand `items` to the `on_commit` listeners once the write transaction running on `conn` commits; they
    are dropped if it rolls back (or, in a group commit, if this write's savepoint does)."""
    conn.info.setdefault(_PUBLISHED, []).extend(items)


def take_published(conn: Connection) -> list[Any]:
    published: list[Any] = conn.info.pop(_PUBLISHED, None) or []
    return published


def with_published(conn: Connection, work: Work[T]) -> tuple[T, list[Any]]:
    """Run `work`, and take what it published; nothing it published outlives it on the pooled connection."""
    try:
        return work(conn), take_published(conn)
    finally:
        if not conn.invalidated:  # an invalidated connection leaves the pool, and what it held with it
            conn.info.pop(_PUBLISHED, None)
