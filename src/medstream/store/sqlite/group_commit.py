"""SQLite's transactions in threads, its writes committed in groups (see `medstream.store.sqlite.backend`).

One writer thread with its own connection takes the writes that queued up while it was busy and commits them
together, each in its own SAVEPOINT, under one COMMIT and one fsync; reads run in a small pool of reader
threads. A checkpointer thread copies the write-ahead log back into the database file beside the writer."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event

from medstream.errors import UnavailableError
from medstream.store.sqlite.driver import driver_execute, refuse_if_abandoned, sqlite_execute
from medstream.store.transactions import MergeableWrite, Work, merge_key, take_published
from medstream.store.upgrade import upgrade_to_head

_SQLITE_READERS = 4
_CHECKPOINT_SECONDS = 0.5  # how often the checkpointer looks for new writes
_WAL_RESTART_FRAMES = 4096  # a log this long (16 MiB of 4 KiB pages) is restarted from its beginning
_GROUP_LIMIT = 64  # writes committed together at most: bounds how long the first of them waits for the others

log = logging.getLogger("medstream.store")

T = TypeVar("T")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        # wal_autocheckpoint=0: the committing writer no longer copies the log back into the database itself
        # (a stall of several ms every few hundred writes); SQLiteRunner's checkpointer thread does it.
        pragmas = (
            "journal_mode=WAL",
            "synchronous=FULL",
            "foreign_keys=ON",
            "busy_timeout=10000",
            "wal_autocheckpoint=0",
            "journal_size_limit=67108864",  # a log reset after a checkpoint leaves at most 64 MiB of file
            # A group's savepoints need a statement journal: in a temporary file, that was an open, unlink and
            # close in the writer thread for every group. It only ever holds what a savepoint may roll back.
            "temp_store=MEMORY",
        )
        for pragma in pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("medstream_write", False)
        # Through the driver: SQLAlchemy's execution machinery cost more than the BEGIN.
        driver_execute(conn, "BEGIN IMMEDIATE" if immediate else "BEGIN")

    @event.listens_for(engine, "before_cursor_execute")
    def _inside_the_transaction(conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        # SQLite rolls a whole transaction back by itself on some errors (a full disk, an I/O error). A statement
        # run after that would commit on its own, outside the transaction its code believes it is in: refuse it.
        if conn.in_transaction() and not statement.startswith("BEGIN"):
            refuse_if_abandoned(conn)


@dataclass
class _Job:
    work: Work[Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    outcome: tuple[bool, Any] = field(default=(False, None))  # (succeeded, result or exception)
    published: list[Any] = field(default_factory=list)


def _settle(jobs: list[_Job], committed: Callable[[Sequence[Any]], None]) -> None:
    """In the callers' event loop: tell the commit listeners what the group's writes published (first, so that
    their events are on their way before any caller resumes), then answer the callers. One call for the whole
    group: the writes of a merged run publish their events together, through the run's first job, and a call
    with nothing would tell the dispatcher to read the log for events it already has."""
    if any(job.outcome[0] for job in jobs):
        committed([item for job in jobs if job.outcome[0] for item in job.published])
    for job in jobs:
        if job.future.done():  # its caller was cancelled; the write stands or falls with its group regardless
            continue
        succeeded, value = job.outcome
        if succeeded:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)


def _runs(group: list[_Job]) -> list[list[_Job]]:
    """`group` cut into runs of consecutive jobs that may merge (same merge key); others are runs of one."""
    runs: list[list[_Job]] = []
    previous: Hashable | None = None
    for job in group:
        key = merge_key(job.work)
        if key is not None and key == previous:
            runs[-1].append(job)
        else:
            runs.append([job])
        previous = key
    return runs


class SQLiteRunner:
    """One writer thread with its own connection, and a pool of reader threads."""

    _STOP = object()

    def __init__(
        self,
        url: str,
        translate: Callable[[BaseException], BaseException],
        committed: Callable[[Sequence[Any]], None],
    ) -> None:
        # hide_parameters: a database error, should one be logged, shows no statement parameters (password
        # hashes, keys, tokens' ids).
        self.engine = create_engine(
            url, pool_size=_SQLITE_READERS + 1, max_overflow=_SQLITE_READERS, hide_parameters=True
        )
        self.max_connections = 2 * _SQLITE_READERS + 1  # what the engine's pool opens at most
        _configure_sqlite(self.engine)
        self._translate = translate
        self._committed = committed
        self._readers = ThreadPoolExecutor(_SQLITE_READERS, thread_name_prefix="medstream-sqlite-read")
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.groups = 0  # how many group commits ran
        self.merged = 0  # how many writes committed merged with others
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()
        self.checkpoints = 0
        self.wal_restart_frames = _WAL_RESTART_FRAMES
        self._restart_wanted = False  # set by the checkpointer, acted on by the writer between two groups
        self.log_frames = 0  # the log's length when the checkpointer last looked
        self.log_restarts = 0  # how often it found the log shorter than the time before: it had restarted

    # -- reads --

    async def read(self, work: Work[T]) -> T:
        if self._closed:
            raise UnavailableError("the database is closed")
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._read, work)

    def _read(self, work: Work[T]) -> T:
        try:
            with self.engine.connect() as conn, conn.begin():
                return work(conn)
        except Exception as exc:
            translated = self._translate(exc)
            if translated is exc:
                raise
            raise translated from exc

    # -- writes --

    async def write(self, work: Work[T]) -> T:
        if self._closed:
            raise UnavailableError("the database is closed")
        loop = asyncio.get_running_loop()
        job = _Job(work, loop, loop.create_future())
        self._ensure_writer()
        self._queue.put(job)
        result: T = await job.future
        return result

    def _ensure_writer(self) -> None:
        if self._writer is not None:  # every write comes here: no lock once the threads are up
            return
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="medstream-sqlite-writer", daemon=True)
                self._writer.start()
                self._checkpointer = threading.Thread(
                    target=self._checkpoint_loop, name="medstream-sqlite-checkpoint", daemon=True
                )
                self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        """Copy the write-ahead log back into the database file, beside the writer rather than in its commits.
        PASSIVE: it never waits for readers or the writer, and the writer never waits for it.

        The log starts over from its beginning only when a write begins after a checkpoint that copied all of
        it. Under a steady stream of writes that never happens here: new commits always land while this thread
        copies. So once the log is long, the writer is asked to checkpoint once itself between two groups,
        when nothing can be appended meanwhile: little is left to copy by then, and its next write restarts
        the log. Without that the log grew without end (by ~80 MB a second under batch writes), and every read
        and write slowed down with it."""
        done = -1
        while not self._stop_checkpoints.wait(_CHECKPOINT_SECONDS):
            if self.groups == done:
                continue
            done = self.groups
            try:
                with self.engine.connect() as conn:
                    _busy, frames, _copied = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
                self.checkpoints += 1
                if 0 <= frames < self.log_frames:
                    self.log_restarts += 1
                self.log_frames = frames
                if frames >= self.wal_restart_frames:
                    self._restart_wanted = True
            except Exception as exc:  # a busy or failing database: the next round tries again
                log.warning("SQLite checkpoint failed: %s", exc)

    def _checkpoint_between_groups(self, conn: Connection) -> None:
        """The writer's own checkpoint (see _checkpoint_loop), outside any transaction."""
        self._restart_wanted = False
        raw = conn.connection.dbapi_connection
        try:
            if raw is not None and not raw.in_transaction:
                raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except Exception as exc:  # the checkpointer will ask again
            log.warning("SQLite checkpoint failed: %s", exc)

    def _write_loop(self) -> None:
        conn: Connection | None = None
        try:
            while True:
                first = self._queue.get()
                if first is self._STOP:
                    return
                group = [first]
                while len(group) < _GROUP_LIMIT:
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is self._STOP:
                        self._queue.put(job)  # stop after this group
                        break
                    group.append(job)
                if conn is None or conn.invalidated:
                    if conn is not None:
                        conn.close()
                    conn = self._connect(group)
                    if conn is None:
                        continue
                self._commit_group(conn, group)
                self.groups += 1
                by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
                for job in group:
                    by_loop.setdefault(job.loop, []).append(job)
                for loop, jobs in by_loop.items():
                    if not loop.is_closed():
                        loop.call_soon_threadsafe(_settle, jobs, self._committed)
                if self._restart_wanted:  # after the group's callers have their answers
                    self._checkpoint_between_groups(conn)
        finally:
            if conn is not None:
                conn.close()

    def _connect(self, group: list[_Job]) -> Connection | None:
        try:
            return self.engine.connect().execution_options(medstream_write=True)
        except Exception as exc:
            failure = self._translate(exc)
            for job in group:
                job.outcome = (False, failure)
                if not job.loop.is_closed():
                    job.loop.call_soon_threadsafe(_settle, [job], self._committed)
            return None

    def _commit_group(self, conn: Connection, group: list[_Job]) -> None:
        """Run every job of `group` in one transaction, each in a savepoint when there are several, and commit
        once. A job that raises has its savepoint rolled back and gets its exception; if the transaction itself
        fails (BEGIN, COMMIT, or SQLite abandoning it), every job gets that failure and nothing is kept.
        Consecutive mergeable jobs of one merge key run merged, in one savepoint; if that fails, each of them
        runs again alone, in its own. A group that is one such run (the usual group under load) needs no
        savepoint: the transaction is one, and if the run fails it is rolled back and the group runs again, each
        job alone. Every statement spared counts: after each one the writer thread waits for the GIL."""
        runs = _runs(group) if len(group) > 1 else [group]
        if len(runs) == 1 and len(group) > 1 and self._commit_merged(conn, group):
            return
        take_published(conn)  # nothing left over from a failed group
        try:
            with conn.begin() as transaction:
                if len(group) == 1:
                    (job,) = group
                    job.outcome = (True, job.work(conn))
                    job.published = take_published(conn)
                else:
                    for run in runs:
                        refuse_if_abandoned(conn)  # stop, and fail the whole group
                        # A group that is one run is here only because that run failed in `_commit_merged`.
                        if len(run) == 1 or len(runs) == 1 or not self._run_merged(conn, run):
                            for job in run:
                                self._run_alone(conn, job)
                refuse_if_abandoned(conn)
                transaction.commit()
        except Exception as exc:
            failure = self._translate(exc)
            for job in group:
                succeeded, value = job.outcome
                job.published = []
                if succeeded or value is None:  # committed nothing after all, or never ran
                    job.outcome = (False, failure)

    def _commit_merged(self, conn: Connection, group: list[_Job]) -> bool:
        """Run a group of mergeable jobs as one, in a transaction of its own; False, with nothing kept, if the
        run itself failed (each job is to run alone next). A failure of the transaction (BEGIN, COMMIT, SQLite
        abandoning it) is every job's, as in `_commit_group`."""
        take_published(conn)
        works: list[MergeableWrite[Any]] = [job.work for job in group]  # type: ignore[misc]
        try:
            with conn.begin() as transaction:
                try:
                    results = type(works[0]).run_merged(conn, works)
                except Exception:  # they cannot all succeed together: each runs alone next
                    transaction.rollback()
                    take_published(conn)
                    return False
                refuse_if_abandoned(conn)
                transaction.commit()
        except Exception as exc:
            failure = self._translate(exc)
            for job in group:
                job.outcome, job.published = (False, failure), []
            return True
        self._keep_merged(conn, group, results)
        return True

    def _run_alone(self, conn: Connection, job: _Job) -> None:
        """Run one job of a group in its own savepoint."""
        # Plain SAVEPOINT statements, through the driver: SQLAlchemy's nested transactions, and even its
        # exec_driver_sql, cost more than the write.
        sqlite_execute(conn, "SAVEPOINT medstream_write")
        try:
            result = job.work(conn)
        except Exception as exc:
            sqlite_execute(conn, "ROLLBACK TO medstream_write")
            sqlite_execute(conn, "RELEASE medstream_write")
            take_published(conn)  # rolled back with the savepoint
            job.outcome = (False, self._translate(exc))
        else:
            sqlite_execute(conn, "RELEASE medstream_write")
            job.outcome = (True, result)
            job.published = take_published(conn)

    def _run_merged(self, conn: Connection, run: list[_Job]) -> bool:
        """Run mergeable jobs as one, in one savepoint; False (and nothing kept) if they failed together."""
        works: list[MergeableWrite[Any]] = [job.work for job in run]  # type: ignore[misc]
        sqlite_execute(conn, "SAVEPOINT medstream_merged")
        try:
            results = type(works[0]).run_merged(conn, works)
        except Exception:  # they cannot all succeed together: each runs alone next, and gets its own outcome
            sqlite_execute(conn, "ROLLBACK TO medstream_merged")
            sqlite_execute(conn, "RELEASE medstream_merged")
            take_published(conn)
            return False
        sqlite_execute(conn, "RELEASE medstream_merged")
        self._keep_merged(conn, run, results)
        return True

    def _keep_merged(self, conn: Connection, run: list[_Job], results: list[Any]) -> None:
        """The outcomes of a merged run that succeeded: each job's result, and the run's events, in order, to
        the listeners as one (through its first job)."""
        for job, result in zip(run, results, strict=True):
            job.outcome = (True, result)
        run[0].published = take_published(conn)
        self.merged += len(run)

    # -- life cycle --

    def migrate(self) -> None:
        with self.engine.begin() as conn:
            upgrade_to_head(conn)

    async def close(self) -> None:
        self._closed = True
        writer = self._writer
        if writer is not None:
            self._queue.put(self._STOP)
            await asyncio.to_thread(writer.join)
        self._stop_checkpoints.set()
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.join)
        self._readers.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self.engine.dispose)
