"""One user cannot grow a server's memory past its bounds (docs/protocol.md, "Bounds"), whatever it sends.

The server runs in a process of its own, whose resident memory (VmRSS) is read from /proc. One professional
tries to go past each bound: sockets, subscriptions over them, and the weight of its filters (at its default,
64 MiB), with filters of 10,000 ids that would hold about 400 MB of the server unbounded. Another professional
is served throughout. The bounds on sockets and subscriptions are lowered to keep the test short.
"""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from tests.conftest import ADMIN_LOGIN, ADMIN_PASSWORD
from tests.integration.raw_events import Frame, RawClient, create_patients
from tests.integration.server_process import ServerProcess
from tests.integration.test_events_limits import assert_refused, professional_token
from tests.integration.test_events_protocol import assert_closed

SOCKETS = 10
SUBSCRIPTIONS = 200
FILTER_BYTES = 64 * 1024 * 1024  # the default
HEAVY_ATTEMPTS = 100  # 100 filters of 10,000 ids: about 400 MB unbounded
# What the user may make the server hold: its filters' weight at most twice over (the estimate is kept within a
# factor of two of the memory held), and room for the rest (sockets, subscriptions, the allocator's slack).
CEILING = 2 * FILTER_BYTES + 64 * 1024 * 1024


def heavy_filter() -> Frame:
    """10,000 ids of 20 characters: a message of about 230 KB, under the 256 KiB bound."""
    return {"$type": "PatientByIdsFilter", "ids": [uuid.uuid4().hex[:20] for _ in range(10_000)]}


class Other:
    """Another professional: subscribes anew, and receives an event on every subscription, whenever asked."""

    def __init__(self, url: str, token: str, client: RawClient) -> None:
        self.url, self.token, self.client = url, token, client
        self.subscriptions = ["other"]

    async def still_served(self) -> None:
        subscription_id = f"other-{len(self.subscriptions)}"
        assert (await self.client.subscribe(subscription_id))["type"] == "subscribed"
        self.subscriptions.append(subscription_id)
        [patient] = await create_patients(self.url, self.token)
        for each in self.subscriptions:
            await self.client.event_for(each, patient["id"], within=30)
        assert self.client.websocket.close_code is None


async def answers(clients: list[RawClient], ids: list[str]) -> dict[str, Frame]:
    """The answers (`subscribed` or `error`) to the subscriptions `ids`, whichever socket they were sent on."""
    wanted, complete = set(ids), asyncio.Event()
    found: dict[str, Frame] = {}

    async def collect(client: RawClient) -> None:
        while not complete.is_set():
            frame = await client.recv(within=120)
            if frame.get("id") in wanted and frame["type"] in {"subscribed", "error"}:
                found[frame["id"]] = frame
                if len(found) == len(wanted):
                    complete.set()

    tasks = [asyncio.create_task(collect(client)) for client in clients]
    try:
        await asyncio.wait_for(complete.wait(), 120)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return found


@pytest.mark.timeout(300)  # a server process of its own, and 23 MB of filters to send
async def test_one_user_past_every_bound_stays_under_the_memory_ceiling_and_another_is_served(
    tmp_path: Path,
) -> None:
    settings = {
        "host": "127.0.0.1",
        "port": 0,
        "database_url": f"sqlite:///{tmp_path / 'memory.db'}",
        "admin_login": ADMIN_LOGIN,
        "admin_password": ADMIN_PASSWORD,
        "ws_max_sockets_per_user": SOCKETS,
        "ws_max_subscriptions_per_user": SUBSCRIPTIONS,
        "ws_max_filter_bytes_per_user": FILTER_BYTES,
    }
    with ServerProcess.running(**settings) as server:
        user, other_token = await professional_token(server.url), await professional_token(server.url)
        async with AsyncExitStack() as stack:
            other_client = await stack.enter_async_context(RawClient.opened(server.url, other_token))
            assert (await other_client.subscribe("other"))["type"] == "subscribed"
            other = Other(server.url, other_token, other_client)
            await other.still_served()

            sockets = [await stack.enter_async_context(RawClient.opened(server.url, user)) for _ in range(SOCKETS)]
            warm_up = await sockets[0].subscribe("warm-up", filter=heavy_filter())  # what any server allocates once
            assert warm_up["type"] == "subscribed"
            await sockets[0].send({"type": "unsubscribe", "id": "warm-up"})
            await sockets[0].recv_until(lambda f: f["type"] == "unsubscribed")
            baseline = server.rss_bytes()

            # Sockets: one more than the bound is closed with 4429.
            async with RawClient.opened(server.url, user) as refused:
                await assert_closed(refused, 4429, "sockets")
            await other.still_served()

            # Filters: 100 of 10,000 ids, sent on every socket at once; those past 64 MiB are refused.
            heavy = [f"heavy-{n}" for n in range(HEAVY_ATTEMPTS)]
            for n, subscription_id in enumerate(heavy):
                message = {"type": "subscribe", "id": subscription_id, "entity": "Patient", "events": ["CREATE"]}
                await sockets[n % SOCKETS].send(message | {"filter": heavy_filter()})
            answered = await answers(sockets, heavy)
            accepted = [i for i in heavy if answered[i]["type"] == "subscribed"]
            for refused_id in set(heavy) - set(accepted):
                assert_refused(answered[refused_id], "filters too large")
            assert 0 < len(accepted) < HEAVY_ATTEMPTS // 4, len(accepted)
            await other.still_served()

            # Subscriptions: up to the bound over all the sockets, and one more is refused.
            light = [f"light-{n}" for n in range(SUBSCRIPTIONS - len(accepted) + 1)]
            for n, subscription_id in enumerate(light):
                message = {"type": "subscribe", "id": subscription_id, "entity": "Patient", "events": ["CREATE"]}
                await sockets[n % SOCKETS].send(message)
            answered = await answers(sockets, light)
            refused_light = [i for i in light if answered[i]["type"] == "error"]
            assert len(refused_light) == 1, refused_light
            assert_refused(answered[refused_light[0]], "subscriptions")

            grown = server.rss_bytes() - baseline
            assert grown < CEILING, f"the server grew by {grown / 2**20:.0f} MiB, over {CEILING / 2**20:.0f} MiB"
            await other.still_served()
            # The user's sockets are all still open: refusals close nothing but the socket over the bound.
            assert all(s.websocket.close_code is None for s in sockets)
