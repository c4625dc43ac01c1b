"""PostgreSQL's merging of writes: writes of one merge key that find every slot for them busy wait, and then
run together (`transactions.MergeableWrite`)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from medstream.store.transactions import MergeableWrite

T = TypeVar("T")

_SLOTS = 4  # writes of one merge key in flight at once; writes that find all of them busy wait
_MERGE_LIMIT = 64  # and then run as one, this many at most


class Merger:
    """Runs mergeable writes. While fewer than `_SLOTS` writes of a merge key are in flight, a write runs at
    once, alone (`write_one`); otherwise it waits, and the next slot to come free takes every write waiting
    (up to `_MERGE_LIMIT`) as one (`write_merged`). If that fails, each of them runs again alone and gets its
    own outcome. A caller cancelled while its write waits or runs does not take the write back (as a SQLite
    group's): it commits or fails with the others."""

    def __init__(
        self,
        write_one: Callable[[MergeableWrite[Any]], Awaitable[Any]],
        write_merged: Callable[[list[MergeableWrite[Any]]], Awaitable[list[Any]]],
    ) -> None:
        self._write_one = write_one
        self._write_merged = write_merged
        self._waiting: dict[Hashable, deque[tuple[MergeableWrite[Any], asyncio.Future[Any]]]] = {}
        self._busy: dict[Hashable, int] = {}
        self._drains: set[asyncio.Task[None]] = set()
        self.merged = 0

    async def write(self, key: Hashable, work: MergeableWrite[T]) -> T:
        waiting = self._waiting.setdefault(key, deque())
        if self._busy.get(key, 0) < _SLOTS and not waiting:
            self._busy[key] = self._busy.get(key, 0) + 1
            try:
                result: T = await self._write_one(work)
                return result
            finally:
                self._free(key)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        waiting.append((work, future))
        return await future

    def _free(self, key: Hashable) -> None:
        """A slot of `key` is done: it goes on with the writes that wait, if any."""
        if self._waiting[key]:
            task = asyncio.get_running_loop().create_task(self._drain(key))
            self._drains.add(task)
            task.add_done_callback(self._drains.discard)
        else:
            self._busy[key] -= 1

    async def _drain(self, key: Hashable) -> None:
        waiting = self._waiting[key]
        try:
            while waiting:
                batch = [waiting.popleft() for _ in range(min(len(waiting), _MERGE_LIMIT))]
                await self._run(batch)
        finally:
            self._busy[key] -= 1

    async def _run(self, batch: list[tuple[MergeableWrite[Any], asyncio.Future[Any]]]) -> None:
        works = [work for work, _future in batch]
        if len(works) > 1:
            try:
                results = await self._write_merged(works)
            except Exception:  # they cannot all succeed together: each runs alone next, and gets its own outcome
                pass
            else:
                self.merged += len(works)
                for (_work, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
                return
        outcomes = await asyncio.gather(*(self._write_one(work) for work in works), return_exceptions=True)
        for (_work, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
