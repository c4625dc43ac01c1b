"""A histogram counted in place by the event loop's thread, for figures observed once per event, request or
transaction.

prometheus_client's `Histogram.observe` takes a lock per bucket it touches and per sum, about 1.3 us an
observation: as much as matching an event to its subscriptions. This one is a bisection and two additions
(about 0.15 us), with no lock, since only the event loop's thread observes (it serves every request,
transaction and event); the metrics' collector turns it into
Prometheus' cumulative buckets when it is scraped (`cumulative`).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence


class LoopHistogram:
    """Counts of observations per bucket (upper bounds `bounds`, and +Inf), and their sum."""

    __slots__ = ("_counts", "bounds", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("bucket bounds must increase")
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)  # the last: above every bound
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket ("less than or equal")
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[float, int]]:
        """Prometheus' buckets: (upper bound, observations at or below it), the last bound infinite."""
        running = 0
        buckets: list[tuple[float, int]] = []
        for bound, count in zip((*self.bounds, math.inf), self._counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets
