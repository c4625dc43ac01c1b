"""What a write can offer the database beyond being a transaction function: to run merged with others of its
kind (both dialects), and to be one statement on PostgreSQL. No I/O here; `database` runs them."""

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
    `database`'s docstring). Called with a connection, it runs alone, as any `Work`."""

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
        """On PostgreSQL, `writes` (one or more) as one statement with the same outcome as `run_merged`, or None
        to run them as a transaction. `dialect` is the engine's, for compiling names and types."""
        return None


def merge_key(work: Work[Any]) -> Hashable | None:
    """The key under which `work` may merge with others, or None."""
    if isinstance(work, MergeableWrite):
        key = work.merge_key
        return None if key is None else (type(work), key)
    return None
