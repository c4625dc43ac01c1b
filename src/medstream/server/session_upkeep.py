"""Run by every node: what keeps its sessions in step with the shared database.

- Expiry: the refresh-token families whose newest refresh token has expired are dropped, so the table holds the
  live sessions only (a login adds one; an expired refresh token is refused all the same).
- Ends made on other nodes: a logout writes no user, so no event tells the other nodes of it. Each node reads the
  users whose sessions were ended lately, every few seconds (one indexed query, whatever the number of users),
  closes the sockets it holds for their older sessions with 4001 and drops them from its cache of users. The read
  goes back a minute before the last one, so that a node whose clock runs behind another's misses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time

from medstream.server.actors import ActorValidator
from medstream.server.websocket import EventHub
from medstream.store.sessions import SessionStore

log = logging.getLogger("medstream.sessions")

# How far back each read of ended sessions looks before the previous read began: the clock skew between nodes
# that it absorbs.
CLOCK_SKEW_MS = 60_000


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


async def run_session_watch(sessions: SessionStore, hub: EventHub, actors: ActorValidator, *, interval: float) -> None:
    """Every `interval` seconds until cancelled: apply the session ends of every node to this node's sockets and
    cache; a failed round is retried next time, from where the last good one began."""
    since = int(time.time() * 1000) - CLOCK_SKEW_MS
    while True:
        await asyncio.sleep(interval)
        started = int(time.time() * 1000)
        try:
            ended = await sessions.ended_since(since)
        except Exception as exc:  # a passing database failure must not end the watch for good
            log.warning("session watch round failed: %s", exc)
            continue
        if ended:
            for user_id, generation in ended.items():
                actors.session_moved_on(user_id, generation)
            hub.end_sessions(ended)
        since = started - CLOCK_SKEW_MS
