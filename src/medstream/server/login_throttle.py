"""What keeps logins from being used to guess passwords or to burn the CPU: a throttle per key (a login, a peer
address) and a bound on the password checks in progress."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass

from medstream.errors import TooManyAttemptsError


@dataclass
class _Attempts:
    failures: int = 0  # failed logins in a row
    last_failure: float = 0.0
    in_flight: int = 0  # attempts let through whose outcome is not known yet
    last_started: float = 0.0  # when the newest of them was let through
    ended: asyncio.Event | None = None  # set when one of those in flight ends; waited on by attempts held back


class LoginThrottle:
    """Slows down repeated failed logins for one key (a login, or a peer address): after `free_attempts`
    failures in a row, each attempt must wait 2**(excess failures) seconds after the last failure, up to
    `max_delay`.

    An attempt counts from the moment it is let through until its outcome (`failed`, `succeeded`, or `abandoned`
    when there is none): meanwhile it counts as a failure, and the wait runs from the newest one let through. So
    attempts sent all at once get no more guesses than attempts one after another (the free ones, then one per
    wait). `admit` holds back, rather than refuses, an attempt beyond the free ones while the excess is only
    attempts in flight: once they end it goes through if they succeeded (many correct logins at once all pass),
    and is refused if they failed; `check` refuses it at once."""

    def __init__(self, *, free_attempts: int = 5, max_delay: float = 60.0, capacity: int = 100_000) -> None:
        self.free_attempts = free_attempts
        self.max_delay = max_delay
        self.capacity = capacity
        self._attempts: OrderedDict[str, _Attempts] = OrderedDict()
        self.failures = 0  # failed attempts since start, and attempts refused (429), for the metrics
        self.refused = 0

    async def admit(self, key: str, *, max_wait: float) -> None:
        """Let an attempt for `key` through, waiting at most `max_wait` seconds for attempts in flight to end;
        else raise TooManyAttemptsError. An attempt let through must be ended by `failed`, `succeeded` or
        `abandoned`."""
        deadline = time.monotonic() + max_wait
        while True:
            attempts = self._record(key)
            in_flight_only = attempts.failures < self.free_attempts <= attempts.failures + attempts.in_flight
            left = deadline - time.monotonic()
            if not in_flight_only or left <= 0:
                self.check(key)
                return
            if attempts.ended is None:
                attempts.ended = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(attempts.ended.wait(), left)

    def check(self, key: str, now: float | None = None) -> None:
        """Let an attempt for `key` through, or raise TooManyAttemptsError with how long to wait."""
        now = time.monotonic() if now is None else now
        attempts = self._record(key)
        count = attempts.failures + attempts.in_flight
        if count >= self.free_attempts:
            since = max(attempts.last_failure, attempts.last_started) if attempts.in_flight else attempts.last_failure
            wait = min(2.0 ** (count - self.free_attempts), self.max_delay) - (now - since)
            if wait > 0:
                self.refused += 1
                raise TooManyAttemptsError(f"too many failed logins; retry in {wait:.1f} s", retry_after=wait)
        attempts.in_flight += 1
        attempts.last_started = now
        self._attempts.move_to_end(key)

    def failed(self, key: str, now: float | None = None) -> None:
        """The attempt let through for `key` failed."""
        now = time.monotonic() if now is None else now
        self.failures += 1
        attempts = self._record(key)
        attempts.failures += 1
        attempts.last_failure = now
        self._ended(attempts)

    def succeeded(self, key: str) -> None:
        """The attempt let through for `key` succeeded: its failures are forgotten."""
        attempts = self._record(key)
        attempts.failures = 0
        self._ended(attempts)
        self._forget_if_idle(key, attempts)

    def abandoned(self, key: str) -> None:
        """The attempt let through for `key` ended with no outcome (an error, a cancelled request)."""
        attempts = self._record(key)
        self._ended(attempts)
        self._forget_if_idle(key, attempts)

    def _record(self, key: str) -> _Attempts:
        """`key`'s record, a new one if it has none (or it was forgotten past the capacity meanwhile)."""
        attempts = self._attempts.get(key)
        if attempts is None:
            attempts = self._attempts[key] = _Attempts()
            while len(self._attempts) > self.capacity:
                _, dropped = self._attempts.popitem(last=False)
                if dropped.ended is not None:
                    dropped.ended.set()  # its waiters look again, at the record made anew
        return attempts

    @staticmethod
    def _ended(attempts: _Attempts) -> None:
        attempts.in_flight = max(0, attempts.in_flight - 1)
        if attempts.ended is not None:
            attempts.ended.set()
            attempts.ended = None

    def _forget_if_idle(self, key: str, attempts: _Attempts) -> None:
        if attempts.failures == 0 and attempts.in_flight == 0 and attempts.ended is None:
            self._attempts.pop(key, None)


class PasswordCheckGate:
    """At most `concurrency` password checks run at once and at most `queue` more wait for their turn; beyond
    that a login is refused with 429 at once. An argon2 check takes about 0.1 s of a core, more under load: a
    flood of logins then costs the others a bounded share of the CPU, and the flood's excess costs nothing."""

    def __init__(self, *, concurrency: int, queue: int) -> None:
        self.concurrency = concurrency
        self.queue = queue
        self._slots = asyncio.Semaphore(concurrency)
        self._waiting = 0
        self.refused = 0  # logins refused for want of room, since start (metrics)

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        if self._slots.locked():
            if self._waiting >= self.queue:
                self.refused += 1
                raise TooManyAttemptsError("too many logins in progress; retry in 1 s", retry_after=1.0)
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()
