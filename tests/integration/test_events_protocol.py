"""The live-events protocol under misuse (docs/protocol.md): every bad client is closed with the documented code
and a reason, or answered with an `error` frame while its socket stays usable; and a well-behaved client on the
same server keeps receiving its events through all of it.

Raw websocket clients (tests/integration/raw_events.py) speak the protocol frame by frame, so each test sees
exactly the frames and close codes a client in any language would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
import pytest_asyncio

from medstream.errors import TooSlowError
from medstream.events.protocol import BATCH_MESSAGES, MAX_MESSAGE_BYTES
from medstream.filters.parse import MAX_DEPTH, MAX_NODES, MAX_VALUES
from medstream.model import HealthcareProfessional, Patient, User
from medstream.sdk import MedTechApi
from medstream.sdk.connection import SubscriptionEvent, SubscriptionOptions
from medstream.server.settings import Settings
from medstream.store.database import Database
from medstream.store.keys import read_key
from tests.conftest import ADMIN_LOGIN, ADMIN_PASSWORD, RunningServer
from tests.integration.raw_events import (
    WAIT,
    DedicatedServer,
    Frame,
    RawClient,
    create_patients,
    dedicated_server,
    login,
)

TRANSPORT_MAX_BYTES = 1 << 20  # uvicorn's ws_max_size in server/runner.py


# -- a well-behaved client that must not notice any of it ------------------------------------------------------


@dataclass
class Doctor:
    """A healthcare professional's user with a live token pair on the shared server."""

    login: str
    password: str
    token: str
    refresh_token: str


async def make_doctor(server: RunningServer, admin: MedTechApi, name: str) -> Doctor:
    hcp = await admin.healthcare_professional_api.create_or_modify_healthcare_professional(
        HealthcareProfessional(first_name=name, last_name="Protocol")
    )
    login_name, password = f"proto-{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
    await admin.user_api.create_or_modify_user(User(login=login_name, healthcare_party_id=hcp.id, password=password))
    pair = await login(server.url, login_name, password)
    return Doctor(login_name, password, pair["token"], pair["refreshToken"])


@pytest_asyncio.fixture(scope="module")
async def doctors(server: RunningServer) -> AsyncIterator[tuple[Doctor, Doctor]]:
    """Two professionals for the whole module: the witness's, and another one."""
    admin = await server.api(server.admin_login, server.admin_password)
    try:
        yield await make_doctor(server, admin, "Wit"), await make_doctor(server, admin, "Mallory")
    finally:
        await admin.close()


@dataclass
class Witness:
    """A raw client subscribed to its doctor's patients, which every test checks still gets its events."""

    client: RawClient
    url: str
    token: str
    mine: list[str]

    async def still_receives(self) -> None:
        [patient] = await create_patients(self.url, self.token)
        self.mine.append(patient["id"])
        await self.client.event_for("witness", patient["id"])
        seqs = [f["seq"] for f in self.client.events("witness")]
        assert seqs == sorted(set(seqs)), "in seq order, each once"
        received = {f["entity"]["id"] for f in self.client.events("witness")}
        assert set(self.mine) <= received
        assert [f for f in self.client.frames if f["type"] == "error"] == []
        assert self.client.websocket.close_code is None


@pytest_asyncio.fixture(scope="module")
async def module_witness(server: RunningServer, doctors: tuple[Doctor, Doctor]) -> AsyncIterator[Witness]:
    async with RawClient.opened(server.url, doctors[0].token) as client:
        assert (await client.subscribe("witness"))["type"] == "subscribed"
        witness = Witness(client, server.url, doctors[0].token, [])
        await witness.still_receives()
        yield witness


@pytest_asyncio.fixture
async def witness(module_witness: Witness) -> AsyncIterator[Witness]:
    """The module's witness, which must have kept receiving through the test (checked after it)."""
    yield module_witness
    await module_witness.still_receives()


async def signed(database_url: str, claims: dict[str, Any], secret: str | None = None) -> str:
    """`claims` signed as the server signs its tokens (HS256 with the database's key), or with `secret`."""
    if secret is None:
        database = Database(database_url)
        try:
            secret = await read_key(database, "jwt_secret")
        finally:
            await database.close()
    return jwt.encode(claims, secret, "HS256")


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


async def assert_closed(client: RawClient, code: int, *reason_words: str) -> str:
    closed_code, reason = await client.closed()
    assert closed_code == code, f"closed with {closed_code} ({reason!r}), expected {code}"
    assert reason, "a close always says why"
    for word in reason_words:
        assert word in reason.lower(), reason
    return reason


# -- before auth: 4001 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        pytest.param({"type": "subscribe", "id": "s", "entity": "Patient", "events": ["CREATE"]}, id="subscribe"),
        pytest.param({"type": "ping"}, id="ping"),
        pytest.param("{not json", id="malformed-json"),
        pytest.param(b"\x00\x01binary", id="binary-garbage"),
        pytest.param({"type": "auth"}, id="auth-without-token"),
        pytest.param({"type": "auth", "token": "x" * MAX_MESSAGE_BYTES}, id="oversized-auth"),
    ],
)
async def test_a_first_message_that_is_not_a_valid_auth_closes_with_4001(
    server: RunningServer, witness: Witness, first: Frame | str | bytes
) -> None:
    async with RawClient.opened(server.url) as client:
        await client.send(first)
        await assert_closed(client, 4001, "auth")
        assert client.frames == [], "nothing is sent to an unauthenticated socket"


@pytest.mark.parametrize("authenticated", [False, True], ids=["before-auth", "after-auth"])
async def test_a_close_reason_quoting_non_ascii_input_still_comes_in_a_close_frame(
    server: RunningServer, witness: Witness, authenticated: bool
) -> None:
    """The reason quotes the bad message type: cut in bytes, it fits a close frame, and the code arrives."""
    async with RawClient.opened(server.url, witness.token if authenticated else None) as client:
        await client.send({"type": "é€𐀀" * 40})
        reason = await assert_closed(client, 4400 if authenticated else 4001)
        assert len(reason.encode()) <= 123


async def test_events_are_not_sent_before_auth(server: RunningServer, witness: Witness) -> None:
    async with RawClient.opened(server.url) as client:
        await client.send({"type": "subscribe", "id": "s", "entity": "Patient", "events": ["CREATE"], "filter": None})
        await client.send({"type": "auth", "token": witness.token})  # too late: the socket is already refused
        await assert_closed(client, 4001)
        assert client.frames == []


@pytest.mark.parametrize("kind", ["garbage", "other-key", "refresh-token", "no-expiry", "alg-none"])
async def test_a_bad_token_closes_with_4001(
    server: RunningServer, witness: Witness, doctors: tuple[Doctor, Doctor], kind: str
) -> None:
    pair = await login(server.url, doctors[1].login, doctors[1].password)
    claims = claims_of(pair["token"])
    token = {
        "garbage": lambda: "not-a-jwt",
        "other-key": lambda: jwt.encode(claims, "not-the-server-key-" + "x" * 32, "HS256"),
        "refresh-token": lambda: pair["refreshToken"],
        "no-expiry": lambda: None,
        "alg-none": lambda: jwt.encode(claims, None, "none"),
    }[kind]()
    if token is None:
        token = await signed(server.database_url, {k: v for k, v in claims.items() if k != "exp"})
    async with RawClient.opened(server.url, token) as client:
        await assert_closed(client, 4001, "token")


async def test_an_expired_token_closes_with_4001_saying_so(
    server: RunningServer, witness: Witness, doctors: tuple[Doctor, Doctor]
) -> None:
    now = int(time.time())
    claims = claims_of(doctors[1].token) | {"iat": now - 120, "exp": now - 60}
    async with RawClient.opened(server.url, await signed(server.database_url, claims)) as client:
        await assert_closed(client, 4001, "expired")


# -- after auth: malformed messages close with 4400 -------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        pytest.param("{not json", id="malformed-json"),
        pytest.param({"type": "shout", "id": "s"}, id="unknown-type"),
        pytest.param({"id": "s"}, id="no-type"),
        pytest.param("[1, 2, 3]", id="not-an-object"),
        pytest.param({"type": "subscribe", "id": "s", "events": ["CREATE"]}, id="subscribe-without-entity"),
        pytest.param({"type": "subscribe", "id": "s", "entity": "Patient", "events": ["READ"]}, id="bad-event-type"),
        pytest.param({"type": "subscribe", "id": "", "entity": "Patient", "events": ["CREATE"]}, id="empty-id"),
        pytest.param({"type": "subscribe", "id": "s" * 65, "entity": "Patient", "events": ["CREATE"]}, id="long-id"),
        pytest.param(
            {"type": "subscribe", "id": "s", "entity": "Patient", "events": ["CREATE"], "after": -1}, id="after-<0"
        ),
        pytest.param({"type": "ping", "extra": 1}, id="unknown-field"),
    ],
)
async def test_a_malformed_message_after_auth_closes_with_4400(
    server: RunningServer, witness: Witness, message: Frame | str
) -> None:
    async with RawClient.opened(server.url, witness.token) as client:
        assert (await client.subscribe("first"))["type"] == "subscribed"
        await client.send(message)
        await assert_closed(client, 4400, "malformed")


@pytest.mark.parametrize(
    "padding",
    [
        pytest.param("x" * (MAX_MESSAGE_BYTES + 1), id="ascii"),
        # Fewer characters than the bound, more bytes: the bound is in bytes (UTF-8), as documented.
        pytest.param("€" * (MAX_MESSAGE_BYTES // 3 + 1), id="multibyte"),
    ],
)
async def test_a_message_over_the_message_bound_closes_with_4400(
    server: RunningServer, witness: Witness, padding: str
) -> None:
    message = {"type": "subscribe", "id": "big", "entity": "Patient", "events": ["CREATE"]}
    message["filter"] = {"$type": "PatientByIdsFilter", "ids": [padding]}
    async with RawClient.opened(server.url, witness.token) as client:
        await client.send(message)
        reason = await assert_closed(client, 4400)
        assert str(MAX_MESSAGE_BYTES) in reason
        assert [f for f in client.frames if f["type"] != "ping"] == []


async def test_a_frame_over_the_transport_bound_is_cut_by_the_transport_with_1009(
    server: RunningServer, witness: Witness
) -> None:
    """Frames over 1 MiB never reach the endpoint: the websocket layer closes with 1009 (message too big)."""
    async with RawClient.opened(server.url, witness.token) as client:
        await client.send({"type": "ping", "padding": "x" * TRANSPORT_MAX_BYTES})
        code, _ = await client.closed()
        assert code == 1009


# -- refused subscriptions: an error frame, and the socket goes on ----------------------------------------------


async def assert_socket_still_usable(client: RawClient, token: str, url: str) -> str:
    """A following subscribe is acknowledged and gets its events; the id of the patient it got."""
    answer = await client.subscribe("after-error")
    assert answer["type"] == "subscribed", answer
    [patient] = await create_patients(url, token)
    await client.event_for("after-error", patient["id"])
    return str(patient["id"])


async def test_an_unknown_entity_answers_an_error_and_the_socket_stays_usable(
    server: RunningServer, witness: Witness
) -> None:
    async with RawClient.opened(server.url, witness.token) as client:
        answer = await client.subscribe("unknown", entity="Prescription")
        assert answer["type"] == "error" and answer["id"] == "unknown"
        assert answer["code"] == "unknown_entity" and "Prescription" in answer["message"]
        await assert_socket_still_usable(client, witness.token, server.url)


@pytest.mark.parametrize(
    ("filter", "named"),
    [
        pytest.param({"$type": "NoSuchFilter"}, "NoSuchFilter", id="unknown-type"),
        pytest.param({"$type": "DataSampleByIdsFilter", "ids": ["x"]}, "DataSample", id="other-entity"),
        pytest.param(
            {
                "$type": "IntersectionFilter",
                "filters": [{"$type": "PatientByIdsFilter", "ids": ["x"]}, {"$type": "PatientByIdsFilter"}],
            },
            "filters[1]",
            id="nested-missing-field",
        ),
        pytest.param(
            {"$type": "UnionFilter", "filters": [{"$type": "PatientByIdsFilter", "ids": ["x"]}, 7]},
            "filters[1]",
            id="nested-not-an-object",
        ),
        pytest.param({"ids": ["x"]}, "$type", id="no-type"),
    ],
)
async def test_an_invalid_filter_answers_an_error_naming_the_bad_node(
    server: RunningServer, witness: Witness, filter: Frame, named: str
) -> None:
    async with RawClient.opened(server.url, witness.token) as client:
        answer = await client.subscribe("bad-filter", filter=filter)
        assert answer["type"] == "error" and answer["id"] == "bad-filter"
        assert answer["code"] == "validation_error"
        assert named in answer["message"], answer["message"]
        await assert_socket_still_usable(client, witness.token, server.url)


def _nested(depth: int) -> Frame:
    tree: Frame = {"$type": "PatientByIdsFilter", "ids": ["x"]}
    for _ in range(depth - 1):
        tree = {"$type": "ComplementFilter", "superSet": {"$type": "PatientByIdsFilter", "ids": ["y"]}, "subSet": tree}
    return tree


@pytest.mark.parametrize(
    ("filter", "named"),
    [
        pytest.param(_nested(MAX_DEPTH + 1), f"deeper than {MAX_DEPTH}", id="too-deep"),
        pytest.param(
            {"$type": "UnionFilter", "filters": [{"$type": "PatientByIdsFilter", "ids": ["x"]}] * MAX_NODES},
            f"more than {MAX_NODES} nodes",
            id="too-many-nodes",
        ),
        pytest.param(
            {
                "$type": "UnionFilter",
                "filters": [{"$type": "PatientByIdsFilter", "ids": [f"p{i}" for i in range(3_000)]}] * 4,
            },
            f"more than {MAX_VALUES} values",
            id="too-many-values",
        ),
    ],
)
async def test_a_filter_over_its_bounds_answers_payload_too_large_and_the_socket_stays_usable(
    server: RunningServer, witness: Witness, filter: Frame, named: str
) -> None:
    async with RawClient.opened(server.url, witness.token) as client:
        answer = await client.subscribe("too-large", filter=filter)
        assert (answer["type"], answer["id"], answer["code"]) == ("error", "too-large", "payload_too_large"), answer
        assert named in answer["message"], answer["message"]
        await assert_socket_still_usable(client, witness.token, server.url)


async def test_a_filter_nested_past_what_the_json_reader_takes_closes_with_4400(
    server: RunningServer, witness: Witness
) -> None:
    message = '{"type":"subscribe","id":"s","entity":"Patient","events":["CREATE"],"filter":{"a":%s}}'
    async with RawClient.opened(server.url, witness.token) as client:
        await client.send(message % ("[" * 1_000 + "]" * 1_000))
        await assert_closed(client, 4400, "malformed", "recursion")


async def test_a_duplicate_subscription_id_answers_an_error_and_keeps_the_first(
    server: RunningServer, witness: Witness
) -> None:
    async with RawClient.opened(server.url, witness.token) as client:
        assert (await client.subscribe("twice"))["type"] == "subscribed"
        answer = await client.subscribe("twice", entity="DataSample")
        assert answer["type"] == "error" and answer["id"] == "twice" and answer["code"] == "duplicate_subscription"

        [patient] = await create_patients(server.url, witness.token)
        await client.event_for("twice", patient["id"])  # the first subscription is untouched
        later = await assert_socket_still_usable(client, witness.token, server.url)
        await client.event_for("twice", later)
        assert [f["entity"]["id"] for f in client.events("twice")] == [patient["id"], later], "one subscription, once"


# -- resuming ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_epoch", [True, False], ids=["with-epoch", "without-epoch"])
async def test_a_resume_point_beyond_the_head_answers_a_gap_from_the_head(
    server: RunningServer, witness: Witness, with_epoch: bool
) -> None:
    """No event past the log's head exists yet: such a resume point is answered by a gap, never by silence."""
    async with RawClient.opened(server.url, witness.token) as client:
        probe = await client.subscribe("probe")
        beyond = probe["position"] + 1_000
        resume = {"after": beyond} | ({"epoch": probe["epoch"]} if with_epoch else {})
        subscribed = await client.subscribe("ahead", **resume)
        assert subscribed["type"] == "subscribed", subscribed
        gap = await client.recv_until(lambda f: f.get("id") == "ahead" and f["type"] != "subscribed")
        assert gap["type"] == "gap", gap
        assert (gap["from"], gap["position"], gap["epoch"]) == (beyond, subscribed["position"], probe["epoch"])
        assert "beyond" in gap["reason"]
        [patient] = await create_patients(server.url, witness.token)  # events after the head follow
        assert (await client.event_for("ahead", patient["id"]))["seq"] > subscribed["position"]


# -- ping, unsubscribe ----------------------------------------------------------------------------------------


async def test_a_client_ping_is_answered_by_pong(server: RunningServer, witness: Witness) -> None:
    async with RawClient.opened(server.url, witness.token) as client:
        for _ in range(3):
            await client.send({"type": "ping"})
            assert (await client.recv()) == {"type": "pong"}


async def test_unsubscribe_answers_unsubscribed_and_no_event_follows(server: RunningServer, witness: Witness) -> None:
    async with RawClient.opened(server.url, witness.token) as client:
        assert (await client.subscribe("gone"))["type"] == "subscribed"
        assert (await client.subscribe("kept"))["type"] == "subscribed"
        [before] = await create_patients(server.url, witness.token)
        await client.event_for("gone", before["id"])

        await client.send({"type": "unsubscribe", "id": "gone"})
        assert (await client.recv_until(lambda f: f["type"] == "unsubscribed")) == {
            "type": "unsubscribed",
            "id": "gone",
        }
        [after] = await create_patients(server.url, witness.token)
        [barrier] = await create_patients(server.url, witness.token)
        # Events reach one socket in seq order: once "kept" has the later one, "gone" would have had the earlier.
        await client.event_for("kept", barrier["id"])
        assert [f["entity"]["id"] for f in client.events("gone")] == [before["id"]]
        assert [f["entity"]["id"] for f in client.events("kept")] == [before["id"], after["id"], barrier["id"]]

        await client.send({"type": "unsubscribe", "id": "never-was"})  # idempotent: still answered
        assert (await client.recv_until(lambda f: f["type"] == "unsubscribed"))["id"] == "never-was"


# -- auth during the session ------------------------------------------------------------------------------------


async def test_auth_with_another_users_token_closes_with_4001(
    server: RunningServer, witness: Witness, doctors: tuple[Doctor, Doctor]
) -> None:
    async with RawClient.opened(server.url, witness.token) as client:
        assert (await client.subscribe("mine"))["type"] == "subscribed"
        await client.send({"type": "auth", "token": doctors[1].token})
        await assert_closed(client, 4001, "user")


async def test_auth_with_a_fresh_token_of_the_same_user_keeps_the_socket(
    server: RunningServer, witness: Witness, doctors: tuple[Doctor, Doctor]
) -> None:
    doctor = doctors[1]
    async with RawClient.opened(server.url, doctor.token) as client:
        assert (await client.subscribe("mine"))["type"] == "subscribed"
        fresh = (await login(server.url, doctor.login, doctor.password))["token"]
        await client.send({"type": "auth", "token": fresh})
        [patient] = await create_patients(server.url, fresh)
        await client.event_for("mine", patient["id"])
        assert client.websocket.close_code is None


# -- dedicated servers: heartbeat and token expiry with short timings -------------------------------------------


@pytest_asyncio.fixture
async def dedicated(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[DedicatedServer]:
    """An in-process server on its own SQLite file, with the settings the test passes (indirect parameter)."""
    async with dedicated_server(tmp_path, **request.param) as server:
        yield server


class SdkWitness:
    """An SDK subscriber (admin, every patient) that counts reconnections: a well-behaved client's view."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.reconnections = 0
        self._arrived = asyncio.Event()

    def __call__(self, patient: Patient, event: SubscriptionEvent[Patient]) -> None:
        assert patient.id is not None
        self.seen.append(patient.id)
        self._arrived.set()

    def on_reconnecting(self) -> None:
        self.reconnections += 1

    async def wait_for(self, patient_id: str) -> None:
        async with asyncio.timeout(WAIT):
            while patient_id not in self.seen:
                self._arrived.clear()
                await self._arrived.wait()


@pytest.mark.parametrize(
    "dedicated", [{"ws_heartbeat_seconds": 0.5, "ws_heartbeat_timeout_seconds": 1.5}], indirect=True, ids=["heartbeat"]
)
async def test_the_server_pings_a_silent_client_and_drops_it_with_4408(dedicated: DedicatedServer) -> None:
    api = await dedicated.admin_api()
    sdk = SdkWitness()
    connection = await api.patient_api.subscribe_to_patient_events(["CREATE"], None, sdk)
    connection.on_reconnecting(sdk.on_reconnecting)
    token = (await login(dedicated.url, ADMIN_LOGIN, ADMIN_PASSWORD))["token"]
    try:
        async with (
            RawClient.opened(dedicated.url, token) as silent,
            RawClient.opened(dedicated.url, token) as answering,
        ):
            started = time.monotonic()  # the server last heard the silent client after this
            assert (await silent.subscribe("silent"))["type"] == "subscribed"
            assert (await answering.subscribe("answering"))["type"] == "subscribed"

            async def answer_pings() -> None:
                while True:
                    if (await answering.recv())["type"] == "ping":
                        await answering.send({"type": "pong"})

            answerer = asyncio.create_task(answer_pings())
            try:
                await assert_closed(silent, 4408, "heartbeat")
            finally:
                answerer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await answerer
            silence = time.monotonic() - started
            assert any(f["type"] == "ping" for f in silent.frames), "the server pings before it drops"
            assert 1.5 <= silence < 1.5 + 3.0, silence

            # The client that answered outlived the timeout, and the SDK too (it answers pings on its own).
            assert answering.websocket.close_code is None
            await answering.send({"type": "ping"})
            assert (await answering.recv_until(lambda f: f["type"] == "pong")) == {"type": "pong"}
            [patient] = await create_patients(dedicated.url, token)
            await answering.event_for("answering", patient["id"])
            await sdk.wait_for(patient["id"])
            assert sdk.reconnections == 0 and connection.is_connected
    finally:
        await api.close()


@pytest.mark.parametrize("dedicated", [{"access_token_seconds": 2}], indirect=True, ids=["2s-tokens"])
async def test_an_expiring_token_closes_the_socket_with_4001_unless_the_client_renews_it(
    dedicated: DedicatedServer,
) -> None:
    api = await dedicated.admin_api()
    sdk = SdkWitness()
    # The SDK renews its token on the socket at each heartbeat.
    connection = await api.patient_api.subscribe_to_patient_events(
        ["CREATE"], None, sdk, SubscriptionOptions(heartbeat_ms=500)
    )
    connection.on_reconnecting(sdk.on_reconnecting)
    pair = await login(dedicated.url, ADMIN_LOGIN, ADMIN_PASSWORD)
    try:
        async with (
            RawClient.opened(dedicated.url, pair["token"]) as idle,
            RawClient.opened(dedicated.url, pair["token"]) as renewing,
        ):
            assert (await idle.subscribe("idle"))["type"] == "subscribed"
            assert (await renewing.subscribe("renewing"))["type"] == "subscribed"
            expires = claims_of(pair["token"])["exp"]

            async def renew() -> None:
                refresh = pair["refreshToken"]
                async with httpx.AsyncClient(base_url=dedicated.url) as http:
                    while True:
                        fresh = (await http.post("/rest/v1/auth/refresh", json={"refreshToken": refresh})).json()
                        refresh = fresh["refreshToken"]
                        await renewing.send({"type": "auth", "token": fresh["token"]})
                        await asyncio.sleep(0.5)

            renewer = asyncio.create_task(renew())
            try:
                await assert_closed(idle, 4001, "expired")
                assert time.time() >= expires, "not closed before its token expired"
                # Well past the first token's expiry, the renewed socket is open and gets its events.
                [patient] = await create_patients(dedicated.url, await api.transport.access_token())
                await renewing.event_for("renewing", patient["id"])
                await sdk.wait_for(patient["id"])
            finally:
                renewer.cancel()
            assert renewing.websocket.close_code is None
            assert sdk.reconnections == 0 and connection.is_connected
    finally:
        await api.close()


async def test_refused_sockets_leave_no_connection_behind(server: RunningServer, witness: Witness) -> None:
    """The server's /health counts its open connections: refused sockets do not stay among them."""
    async with httpx.AsyncClient(base_url=server.url) as http:

        async def connections() -> int:
            count: int = (await http.get("/health")).json()["events"]["connections"]
            return count

        before = await connections()
        for _ in range(3):
            async with RawClient.opened(server.url, "bad-" + uuid.uuid4().hex) as client:
                await assert_closed(client, 4001)
        for _ in range(int(WAIT / 0.02)):  # sockets closed by earlier tests may still be on their way out
            if await connections() <= before:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail(f"{await connections()} connections, {before} before the refused sockets")


@pytest.mark.parametrize("dedicated", [{"ws_max_subscriptions": 3}], indirect=True, ids=["3-subscriptions"])
async def test_too_many_subscriptions_on_one_socket_closes_with_4429(dedicated: DedicatedServer) -> None:
    token = (await login(dedicated.url, ADMIN_LOGIN, ADMIN_PASSWORD))["token"]
    async with RawClient.opened(dedicated.url, token) as witness, RawClient.opened(dedicated.url, token) as client:
        assert (await witness.subscribe("witness"))["type"] == "subscribed"
        for number in range(4):
            await client.send({"type": "subscribe", "id": f"s{number}", "entity": "Patient", "events": ["CREATE"]})
        await assert_closed(client, 4429, "subscriptions")
        assert [f["id"] for f in client.frames if f["type"] == "subscribed"] == ["s0", "s1", "s2"]
        # The refused subscription is named first, so that a client knows which one not to send again.
        refused = client.frames[-1]
        assert (refused["type"], refused["id"], refused["code"]) == ("error", "s3", "too_slow"), refused
        [patient] = await create_patients(dedicated.url, token)
        await witness.event_for("witness", patient["id"])


@pytest.mark.parametrize("dedicated", [{"ws_max_subscriptions": 2}], indirect=True, ids=["2-subscriptions"])
async def test_an_sdk_subscription_over_the_limit_fails_and_the_others_keep_working(
    dedicated: DedicatedServer,
) -> None:
    api = await dedicated.admin_api()
    options = SubscriptionOptions(connection_retry_interval_ms=50, connection_max_retry=3)
    try:
        first, second = SdkWitness(), SdkWitness()
        kept = [
            await api.patient_api.subscribe_to_patient_events(["CREATE"], None, w, options) for w in (first, second)
        ]
        with pytest.raises(TooSlowError, match="subscriptions"):
            await asyncio.wait_for(
                api.patient_api.subscribe_to_patient_events(["CREATE"], None, SdkWitness(), options), WAIT
            )
        patient = await api.patient_api.create_or_modify_patient(Patient(first_name="Still", last_name="Here"))
        await first.wait_for(str(patient.id))
        await second.wait_for(str(patient.id))
        assert all(c.is_connected and not c.is_closed for c in kept)
    finally:
        await api.close()


def test_the_documented_subscription_limit_is_the_default() -> None:
    assert Settings().ws_max_subscriptions == 1_000  # docs/protocol.md: "at most 1,000 per socket"


# -- batched frames ----------------------------------------------------------------------------------------------


async def _lines_until(client: RawClient, count: int) -> list[list[Frame]]:
    """Frames as they arrive, each split into its messages, until `count` events have come."""
    frames: list[list[Frame]] = []
    async with asyncio.timeout(WAIT):
        while sum(m["type"] == "event" for frame in frames for m in frame) < count:
            raw = await client.websocket.recv()
            assert isinstance(raw, str)
            frames.append([orjson.loads(line) for line in raw.split("\n")])
    return frames


async def test_a_client_that_asks_for_batches_gets_several_messages_per_frame_in_order(
    server: RunningServer, doctors: tuple[Doctor, Doctor]
) -> None:
    doctor = doctors[1]
    token = (await login(server.url, doctor.login, doctor.password))["token"]
    async with RawClient.opened(server.url) as batched, RawClient.opened(server.url) as plain:
        await batched.send({"type": "auth", "token": token, "batch": True})
        await plain.send({"type": "auth", "token": token})
        for client in (batched, plain):
            assert (await client.subscribe("mine", "Patient"))["type"] == "subscribed"
        created = await create_patients(server.url, token, 150)  # one commit: 150 events dispatched together

        by_frame = await _lines_until(batched, len(created))
        events = [m for frame in by_frame for m in frame]
        assert [e["entity"]["id"] for e in events] == [p["id"] for p in created]
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert max(len(frame) for frame in by_frame) > 1, "nothing was batched"
        assert all(len(frame) <= BATCH_MESSAGES for frame in by_frame)

        unbatched = await _lines_until(plain, len(created))
        assert all(len(frame) == 1 for frame in unbatched), "a client that did not ask gets one message per frame"
        assert [frame[0]["seq"] for frame in unbatched] == seqs
