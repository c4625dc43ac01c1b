"""What a database backend does for the store: the one interface that SQLite (`medstream.store.sqlite`) and
PostgreSQL (`medstream.store.postgresql`) each implement, with everything that differs between them.

A backend runs transactions (`run_write`, `run_read`: see `medstream.store.transactions`), gives the outbox's
events their positions (`event_rows` in the write's transaction; `number_committed` after commits), and holds
the statements a write runs that are not the same on both. `Database` picks one when it opens; nothing else
asks which database it runs on. Code that is handed only a connection (a transaction function) finds its
backend with `backend_of`.

A write that is a `MergeableWrite` may run together with others of its kind that are waiting at the same
time, as one set of statements: consecutive ones in a SQLite group, or those queued while PostgreSQL's
transactions for them are busy, in one transaction. Under load, K such writes then cost one patient check and
one INSERT per table instead of K of each, so the cost per write falls as the queue grows instead of the
queue growing without end. Merged writes succeed or fail together; when they fail together, each runs again
alone, so that only the failing one fails, with its own error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine, QueuePool, Table, event

from medstream.store.transactions import Work

if TYPE_CHECKING:
    from medstream.events.types import EntityEvent
    from medstream.store.entity_rows import EntityRow
    from medstream.store.outbox import LogHead, PendingEvent

T = TypeVar("T")
_BACKEND = "medstream_backend"


@dataclass(frozen=True, slots=True)
class PoolUse:
    """One of a backend's sets of database connections at one moment: how many are taken, how many are open and
    waiting to be, and how many it may open at most."""

    name: str
    in_use: int
    idle: int
    capacity: int


class RunWork(Protocol):
    """Runs a transaction function and returns its result once the transaction has ended."""

    def __call__(self, work: Work[T], /) -> Awaitable[T]: ...


class Backend(Protocol):
    """One database's way of running the store."""

    name: str  # "sqlite" or "postgresql", as /health reports it
    dispatcher_poll_seconds: float  # how often the dispatcher looks for events it was not told of (the safety net)
    run_write: RunWork  # a write transaction: an exception from `work` rolls it back and is raised
    run_read: RunWork  # a read-only transaction over one consistent snapshot

    @property
    def merged_writes(self) -> int:
        """How many writes have committed merged with others."""
        ...

    @property
    def sync_engine(self) -> Engine:
        """The SQLAlchemy engine that transaction functions' connections come from."""
        ...

    def pools(self) -> list[PoolUse]:
        """Its sets of connections as they are now (for the metrics)."""
        ...

    async def migrate(self) -> None:
        """Bring the schema to the newest migration; safe when several nodes start at once."""

    def listen(self, wake: Callable[[], None]) -> None:
        """From now on, call `wake` whenever other nodes may have committed events, and whenever their word of it
        may have been missed (PostgreSQL: `LISTEN`/`NOTIFY`). SQLite: never (one process; the dispatcher's poll
        finds another process's writes)."""

    async def close(self) -> None: ...

    # -- the outbox --

    def event_rows(self, conn: Connection, events: Sequence[PendingEvent]) -> list[dict[str, Any]]:
        """The outbox rows of `events` (`outbox.event_row`), in order, with their positions when the backend
        gives them in the write's transaction."""
        ...

    async def number_committed(self) -> None:
        """Every event committed before the call has its position once this returns."""

    async def tail_and_page(self, after_seq: int, limit: int) -> tuple[LogHead, list[EntityEvent], bool]:
        """The dispatcher's read: the log's head and the page of events after `after_seq` (`outbox.tail_and_page`),
        and whether more events wait for their positions (the dispatcher then reads again at once)."""
        ...

    def head(self, conn: Connection) -> LogHead: ...

    def read_after(self, conn: Connection, after_seq: int, limit: int) -> list[EntityEvent]: ...

    # -- statements of entity writes --

    def insert_tables(self, conn: Connection, inserts: Sequence[tuple[Table, Sequence[dict[str, Any]]]]) -> None:
        """INSERT each table's rows, in order."""

    def rows_by_id(self, conn: Connection, table: Table, ids: Sequence[str], *, lock: bool) -> dict[str, EntityRow]:
        """The rows of `table` with these ids. With `lock`, for a write that checks then replaces them: no
        concurrent writer may change them until this transaction ends."""
        ...

    def patient_access(self, conn: Connection, ids: list[str], owner: str | None) -> Sequence[Sequence[Any]]:
        """(id, deleted, readable by `owner`) of each existing patient among `ids`, for a write that links to
        them: none of them may be deleted before the write commits."""
        ...

    def hold_off_patient_links(self, conn: Connection) -> None:
        """In a patient delete, before it writes: wait for the writes linking to patients in progress and hold
        off new ones until this transaction ends."""
        ...

    def take_turns(self, conn: Connection, key: int) -> None:
        """Wait until no other transaction holds `key`, then hold it until this transaction ends: transactions
        that check a condition over many rows before they write (no admin left) run one after the other."""
        ...

    def upsert(self, table: Table) -> Any:
        """An INSERT into `table` that takes `on_conflict_do_update` (the database's own INSERT construct)."""


def attach(engine: Engine, backend: Backend) -> None:
    """Make `backend_of` find `backend` from every connection of `engine` (kept with the driver's connection)."""

    @event.listens_for(engine, "connect")
    def _on_connect(_dbapi_connection: Any, record: Any) -> None:
        record.info[_BACKEND] = backend


def queue_pool_use(name: str, engine: Engine, capacity: int) -> PoolUse:
    """The use of `engine`'s pool (a QueuePool, as both backends' engines have), which opens `capacity` at most."""
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    return PoolUse(name, pool.checkedout(), pool.checkedin(), capacity)


def backend_of(conn: Connection) -> Backend:
    """The backend whose engine `conn` came from."""
    backend: Backend = conn.info[_BACKEND]
    return backend
