"""What one user (or one peer address, before auth) may hold on a node's sockets (docs/protocol.md, "Bounds"):
past each bound the server refuses with 4429 or an `error` naming it, takes the refused part back when it is
released, and another user is served throughout.

Each test runs a server of its own with small bounds, so that reaching them takes a few messages.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from medstream.server.settings import Settings
from tests.conftest import ADMIN_LOGIN, ADMIN_PASSWORD
from tests.integration.raw_events import DedicatedServer, Frame, RawClient, create_patients, dedicated_server, login
from tests.integration.test_events_protocol import assert_closed


@pytest_asyncio.fixture
async def dedicated(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[DedicatedServer]:
    async with dedicated_server(tmp_path, **request.param) as server:
        yield server


async def professional_token(url: str) -> str:
    """A new professional's user on the server at `url`, logged in: a user whose bounds a test reaches."""
    admin = (await login(url, ADMIN_LOGIN, ADMIN_PASSWORD))["token"]
    headers = {"Authorization": f"Bearer {admin}"}
    login_name, password = f"bounded-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    async with httpx.AsyncClient(base_url=url) as http:
        hcp = await http.post("/rest/v1/healthcare-professionals", json={"lastName": "Bounded"}, headers=headers)
        assert hcp.status_code == 200, hcp.text
        user = {"login": login_name, "password": password, "healthcarePartyId": hcp.json()["id"]}
        assert (await http.post("/rest/v1/users", json=user, headers=headers)).status_code == 200
    token: str = (await login(url, login_name, password))["token"]
    return token


class Other:
    """The admin, subscribed on a socket of its own: another user, who must be served whatever the first does."""

    def __init__(self, server: DedicatedServer, token: str, client: RawClient) -> None:
        self.server, self.token, self.client = server, token, client

    async def still_served(self) -> None:
        [patient] = await create_patients(self.server.url, self.token)
        await self.client.event_for("other", patient["id"])
        assert self.client.websocket.close_code is None


@pytest_asyncio.fixture
async def other(dedicated: DedicatedServer) -> AsyncIterator[Other]:
    token = await dedicated.admin_token()
    async with RawClient.opened(dedicated.url, token) as client:
        assert (await client.subscribe("other"))["type"] == "subscribed"
        witness = Other(dedicated, token, client)
        yield witness
        await witness.still_served()


def ids_filter(count: int) -> Frame:
    return {"$type": "PatientByIdsFilter", "ids": [uuid.uuid4().hex for _ in range(count)]}


def assert_refused(answer: Frame, *words: str) -> None:
    assert answer["type"] == "error" and answer["code"] == "too_slow", answer
    for word in words:
        assert word in answer["message"], answer["message"]


@pytest.mark.parametrize("dedicated", [{"ws_max_sockets_per_user": 3}], indirect=True, ids=["3-sockets"])
async def test_a_user_past_its_sockets_is_closed_with_4429_until_it_closes_one(
    dedicated: DedicatedServer, other: Other
) -> None:
    token = await professional_token(dedicated.url)
    async with AsyncExitStack() as stack:
        held = [await stack.enter_async_context(RawClient.opened(dedicated.url, token)) for _ in range(3)]
        for number, client in enumerate(held):
            assert (await client.subscribe(f"s{number}"))["type"] == "subscribed"
        async with RawClient.opened(dedicated.url, token) as refused:
            reason = await assert_closed(refused, 4429, "sockets", "user")
            assert "3" in reason
        async with httpx.AsyncClient(base_url=dedicated.url) as http:
            assert (await http.get("/health")).json()["events"]["closes"].get("4429") == 1
        await other.still_served()
        await held[0].websocket.close()
        async with RawClient.opened(dedicated.url, token) as accepted:  # the closed socket's place is free again
            assert (await accepted.subscribe("again"))["type"] == "subscribed"
        for client in held[1:]:
            await client.send({"type": "ping"})
            assert (await client.recv_until(lambda f: f["type"] == "pong")) == {"type": "pong"}


@pytest.mark.parametrize("dedicated", [{"ws_max_subscriptions_per_user": 4}], indirect=True, ids=["4-subscriptions"])
async def test_a_user_past_its_subscriptions_over_its_sockets_gets_an_error_and_keeps_the_others(
    dedicated: DedicatedServer, other: Other
) -> None:
    token = await professional_token(dedicated.url)
    async with RawClient.opened(dedicated.url, token) as first, RawClient.opened(dedicated.url, token) as second:
        for client, prefix in ((first, "a"), (second, "b")):
            for number in range(2):
                assert (await client.subscribe(f"{prefix}{number}"))["type"] == "subscribed"
        assert_refused(await second.subscribe("b2"), "subscriptions", "4")
        await other.still_served()
        [patient] = await create_patients(dedicated.url, token)
        for client, subscription_id in ((first, "a0"), (first, "a1"), (second, "b0"), (second, "b1")):
            await client.event_for(subscription_id, patient["id"])  # the socket stays, and so do the others
        await first.send({"type": "unsubscribe", "id": "a0"})
        await first.recv_until(lambda f: f["type"] == "unsubscribed")
        assert (await second.subscribe("b2"))["type"] == "subscribed"
        assert_refused(await first.subscribe("a2"), "subscriptions")


@pytest.mark.parametrize(
    "dedicated", [{"ws_max_filter_bytes_per_user": 2_000_000}], indirect=True, ids=["2-MB-of-filters"]
)
async def test_a_user_past_the_weight_of_its_filters_gets_an_error_and_keeps_the_others(
    dedicated: DedicatedServer, other: Other
) -> None:
    token = await professional_token(dedicated.url)
    async with RawClient.opened(dedicated.url, token) as first, RawClient.opened(dedicated.url, token) as second:
        assert (await first.subscribe("heavy", filter=ids_filter(3_000)))["type"] == "subscribed"  # ~1.3 MB
        assert_refused(await second.subscribe("heavier", filter=ids_filter(3_000)), "filters too large", "2000000")
        assert (await second.subscribe("light", filter=ids_filter(10)))["type"] == "subscribed"
        assert (await second.subscribe("unfiltered"))["type"] == "subscribed"
        await other.still_served()
        await first.websocket.close()  # its filters' weight is the user's again
        for attempt in range(50):
            answer = await second.subscribe(f"heavier-{attempt}", filter=ids_filter(3_000))
            if answer["type"] == "subscribed":
                break
        else:
            pytest.fail("the closed socket's filters were never released")
        [patient] = await create_patients(dedicated.url, token)
        await second.event_for("unfiltered", patient["id"])


@pytest.mark.parametrize("dedicated", [{"ws_max_unauthenticated_per_peer": 2}], indirect=True, ids=["2-waiting"])
async def test_a_peer_past_its_sockets_waiting_for_auth_is_closed_with_4429(
    dedicated: DedicatedServer, other: Other
) -> None:
    token = await professional_token(dedicated.url)
    async with RawClient.opened(dedicated.url) as waiting, RawClient.opened(dedicated.url) as also_waiting:
        async with RawClient.opened(dedicated.url) as refused:
            await assert_closed(refused, 4429, "auth", "address")
        await other.still_served()  # an authenticated socket of the same address is not counted
        await also_waiting.send({"type": "auth", "token": token})
        assert (await also_waiting.subscribe("now-in"))["type"] == "subscribed"
        async with RawClient.opened(dedicated.url, token) as next_one:  # the authenticated one left the count
            assert (await next_one.subscribe("next"))["type"] == "subscribed"
        await waiting.send({"type": "ping"})  # still waiting for auth, and refused as ever
        await assert_closed(waiting, 4001, "auth")


def _documented_defaults(doc: str, default_column: int) -> dict[str, int]:
    """Setting -> default, from the rows of a doc's tables that name a MEDSTREAM_WS_ bound."""
    units = {"MiB": 2**20, "KiB": 2**10}
    found = {}
    for line in (Path(__file__).resolve().parents[2] / "docs" / doc).read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        names = [c.strip("`") for c in cells if c.startswith("`MEDSTREAM_WS_MAX") or c == "`MEDSTREAM_WS_SEND_QUEUE`"]
        if len(names) == 1 and len(cells) > default_column:
            number, _, unit = cells[default_column].partition(" ")
            found[names[0]] = int(number.replace(",", "")) * units.get(unit, 1)
    return found


@pytest.mark.parametrize(("doc", "column"), [("protocol.md", 1), ("deploy.md", 2)])
def test_the_documented_bounds_are_the_defaults(doc: str, column: int) -> None:
    documented = _documented_defaults(doc, column)
    assert len(documented) >= 5, documented
    defaults = Settings()
    for name, value in documented.items():
        assert getattr(defaults, name.removeprefix("MEDSTREAM_").lower()) == value, name
