"""Outbox retention, run by every node: events older than the retention age, or beyond its size, are dropped.

Running it on several nodes at once is safe (the floor only goes up); a subscriber resuming below the floor gets
a `gap`, never a silent hole.
"""

from __future__ import annotations

import asyncio
import logging
import time

from medstream.store import outbox
from medstream.store.database import Database

log = logging.getLogger("medstream.retention")


async def trim_once(database: Database, *, max_age_seconds: float, max_events: int) -> int:
    created_before = int((time.time() - max_age_seconds) * 1000)
    return await outbox.trim(database, created_before=created_before, keep_last=max_events)


async def run_retention(database: Database, *, max_age_seconds: float, max_events: int, interval: float) -> None:
    """Trim every `interval` seconds until cancelled; a failed round is logged and retried next time."""
    while True:
        await asyncio.sleep(interval)
        try:
            deleted = await trim_once(database, max_age_seconds=max_age_seconds, max_events=max_events)
            if deleted:
                log.info("retention dropped %d events", deleted)
        except Exception as exc:  # a passing database failure must not end retention for good
            log.warning("retention round failed: %s", exc)
