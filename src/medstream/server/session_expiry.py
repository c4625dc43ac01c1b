"""Run by every node: the refresh-token families whose newest refresh token has expired are dropped, so the
table holds the live sessions only (a login adds one; an expired refresh token is refused all the same)."""

from __future__ import annotations

import asyncio
import logging
import time

from medstream.store.sessions import SessionStore

log = logging.getLogger("medstream.sessions")


async def run_session_expiry(sessions: SessionStore, *, interval: float) -> None:
    """Drop expired families every `interval` seconds until cancelled; a failed round is retried next time."""
    while True:
        await asyncio.sleep(interval)
        try:
            dropped = await sessions.drop_expired(int(time.time()))
            if dropped:
                log.info("dropped %d expired sessions", dropped)
        except Exception as exc:  # a passing database failure must not end the expiry for good
            log.warning("session expiry round failed: %s", exc)
