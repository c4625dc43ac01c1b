"""Ending a user's sessions on one node ends them on the others: a refresh token at once (the sessions are in
the shared database), an access token and the sockets as soon as the other node learns of the user write from its
event, or, for a logout, which writes no user, from its watch of ended sessions (every 5 s)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from medstream.errors import CloseCode
from tests.integration.cluster import Cluster, running_cluster
from tests.integration.raw_events import RawClient

LOGIN = "/rest/v1/auth/login"
REFRESH = "/rest/v1/auth/refresh"
PASSWORD = "a-password-of-the-user"


async def _refused_within(client: httpx.AsyncClient, url: str, token: str, seconds: float) -> bool:
    """Whether a read with `token` on `url` is answered 401 within `seconds` (polled)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answer = await client.get(f"{url}/rest/v1/users/current", headers={"Authorization": f"Bearer {token}"})
        if answer.status_code == 401:
            return True
        assert answer.status_code == 200, answer.text
        await asyncio.sleep(0.05)
    return False


async def _user(cluster: Cluster, client: httpx.AsyncClient, login: str) -> dict[str, object]:
    made = await client.post(
        f"{cluster.nodes[0].url}/rest/v1/users",
        json={"login": login, "password": PASSWORD},
        headers={"Authorization": f"Bearer {cluster.token}"},
    )
    assert made.status_code == 200, made.text
    user: dict[str, object] = made.json()
    return user


async def _session_on(client: httpx.AsyncClient, url: str, login: str) -> dict[str, str]:
    answer = await client.post(f"{url}{LOGIN}", json={"username": login, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    pair: dict[str, str] = answer.json()
    read = await client.get(f"{url}/rest/v1/users/current", headers={"Authorization": f"Bearer {pair['token']}"})
    assert read.status_code == 200, read.text  # the node now holds the user in its cache
    return pair


async def test_a_password_change_or_a_logout_on_one_node_ends_the_sessions_on_another(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, count=2) as cluster, httpx.AsyncClient(timeout=10) as client:
        node_a, node_b = (node.url for node in cluster.nodes)
        user = await _user(cluster, client, "moved-user")
        on_b = await _session_on(client, node_b, "moved-user")
        changed = await client.post(
            f"{node_a}/rest/v1/users",
            json={**user, "password": "another-password-1"},
            headers={"Authorization": f"Bearer {cluster.token}"},
        )
        assert changed.status_code == 200, changed.text
        refreshed = await client.post(f"{node_b}{REFRESH}", json={"refreshToken": on_b["refreshToken"]})
        assert refreshed.status_code == 401, refreshed.text
        assert await _refused_within(client, node_b, on_b["token"], 10), "node B still takes the old token"

        await _user(cluster, client, "logged-out-user")
        on_b = await _session_on(client, node_b, "logged-out-user")
        on_a = await _session_on(client, node_a, "logged-out-user")
        async with RawClient.opened(node_b, on_b["token"]) as socket_on_b:
            assert (await socket_on_b.subscribe("s"))["type"] == "subscribed"
            logout = await client.post(
                f"{node_a}/rest/v1/auth/logout", headers={"Authorization": f"Bearer {on_a['token']}"}
            )
            assert logout.status_code == 204, logout.text
            refreshed = await client.post(f"{node_b}{REFRESH}", json={"refreshToken": on_b["refreshToken"]})
            assert refreshed.status_code == 401, refreshed.text
            assert await _refused_within(client, node_b, on_b["token"], 10), "node B still takes the old token"
            code, reason = await socket_on_b.closed(within=15)
        assert code == CloseCode.UNAUTHORIZED, (code, reason)
