"""`/rest/v2` and `/ws/v2/notification/subscribe` against a real server, without iCure's client: bad input gets
iCure-style errors (never a 500) and changes nothing; tokens carry iCure's claims; a write through Medstream's
own API reaches an iCure subscriber through the one outbox."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import websockets
from websockets.asyncio.client import ClientConnection, connect

from medstream.icure import shapes as ic
from medstream.model import CodingReference, Content, DataSample, Patient
from tests.conftest import Professional, ProfessionalFactory, RunningServer, new_doctor, serve

TAG = {"id": "IC-TEST|TEST|1", "type": "IC-TEST", "code": "TEST", "version": "1"}
KEY = "b" * 64


def _metadata(owner: str) -> dict[str, Any]:
    return {"secureDelegations": {KEY: {"delegator": owner, "delegate": owner, "permissions": "WRITE"}}}


def _frame(owner: str, **changes: Any) -> str:
    frame: dict[str, Any] = {
        "eventTypes": ["CREATE", "UPDATE"],
        "entityClass": "org.taktik.icure.entities.embed.Service",
        "filter": {
            "filter": {
                "$type": "ServiceByHcPartyTagCodeDateFilter",
                "healthcarePartyId": owner,
                "tagType": "IC-TEST",
                "tagCode": "TEST",
            },
            "predicate": None,
        },
        "accessControlKeys": None,
    }
    frame.update(changes)
    return json.dumps(frame)


class V2:
    """An HTTP client of /rest/v2 logged in as a professional."""

    def __init__(self, client: httpx.AsyncClient, doctor: Professional, token: str, refresh: str) -> None:
        self.client, self.doctor, self.token, self.refresh = client, doctor, token, refresh
        client.headers["Authorization"] = f"Bearer {token}"


@pytest_asyncio.fixture
async def v2(server: RunningServer, new_professional: ProfessionalFactory) -> AsyncIterator[V2]:
    doctor = await new_professional()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        login = await client.post("/rest/v2/auth/login", json={"username": doctor.login, "password": doctor.password})
        assert login.status_code == 200, login.text
        body = login.json()
        assert set(body) == {"token", "refreshToken", "successful"} and body["successful"] is True
        yield V2(client, doctor, body["token"], body["refreshToken"])


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def _icure_error(response: httpx.Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"timestamp", "path", "status", "error", "message"}
    assert body["status"] == status and body["path"] == response.request.url.path
    for fragment in fragments:
        assert fragment in body["message"], body["message"]


async def test_tokens_carry_icure_claims_and_refresh_keeps_its_refresh_token(v2: V2) -> None:
    claims = _claims(v2.token)
    assert claims["tac"] == 20 and claims["jwtD"] > 0 and claims["exp"] > 0
    for _ in range(2):  # iCure's clients refresh with the same refresh token, again and again
        refreshed = await v2.client.post("/rest/v2/auth/refresh", headers={"Refresh-Token": v2.refresh})
        assert refreshed.status_code == 200, refreshed.text
        assert set(refreshed.json()) == {"token", "successful"}
        current = await v2.client.get(
            "/rest/v2/user/current", headers={"Authorization": f"Bearer {refreshed.json()['token']}"}
        )
        assert current.json()["login"] == v2.doctor.login
    assert (await v2.client.post("/rest/v1/auth/logout")).status_code == 204
    ended = await v2.client.post("/rest/v2/auth/refresh", headers={"Refresh-Token": v2.refresh})
    _icure_error(ended, 401, "revoked")


async def test_one_group_whose_switch_keeps_the_session(server: RunningServer, v2: V2) -> None:
    """cardinal 1.0 lists the user's groups and enters the one it finds: Medstream's one group, `medstream`."""
    matches = await v2.client.get("/rest/v2/user/matches")
    assert matches.status_code == 200, matches.text
    user = (await v2.client.get("/rest/v2/user/current")).json()
    assert matches.json() == [
        {
            "groupId": "medstream",
            "groupName": "Medstream",
            "groupsHierarchy": [],
            "userId": user["id"],
            "login": v2.doctor.login,
            "healthcarePartyId": v2.doctor.id,
        }
    ]
    switched = await v2.client.post("/rest/v2/auth/switch/medstream", headers={"Refresh-Token": v2.refresh})
    assert switched.status_code == 200, switched.text
    body = switched.json()
    assert set(body) == {"token", "refreshToken", "successful"} and body["successful"] is True
    # The same session: the same refresh token, an access token of the same user and session generation.
    assert body["refreshToken"] == v2.refresh and body["token"] != v2.token
    assert {k: _claims(body["token"])[k] for k in ("sub", "gen", "tac")} == {
        k: _claims(v2.token)[k] for k in ("sub", "gen", "tac")
    }
    current = await v2.client.get("/rest/v2/user/current", headers={"Authorization": f"Bearer {body['token']}"})
    assert current.status_code == 200 and current.json()["id"] == user["id"], current.text
    # Logging in to the group is logging in.
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as anonymous:
        credentials = {"username": v2.doctor.login, "password": v2.doctor.password}
        grouped = await anonymous.post("/rest/v2/auth/login?groupId=medstream", json=credentials)
        assert grouped.status_code == 200 and grouped.json()["successful"] is True, grouped.text
    _icure_error(
        await v2.client.post("/rest/v2/auth/switch/other", headers={"Refresh-Token": v2.refresh}),
        404,
        "no group 'other'",
        "'medstream'",
    )
    _icure_error(await v2.client.post("/rest/v2/auth/switch/medstream"), 401, "Refresh-Token")
    assert (await v2.client.post("/rest/v1/auth/logout")).status_code == 204
    ended = await v2.client.post("/rest/v2/auth/switch/medstream", headers={"Refresh-Token": v2.refresh})
    _icure_error(ended, 401, "revoked")


async def test_no_exchange_data_maps(server: RunningServer, v2: V2) -> None:
    """Exchange data maps (anonymous delegations) are not served, so none exists; cardinal 1.0 asks, sending
    `{}` for no ids."""
    bodies: list[dict[str, list[str]]] = [{}, {"ids": []}, {"ids": ["a" * 64]}]
    for body in bodies:
        found = await v2.client.post("/rest/v2/exchangedatamap/batch", json=body)
        assert found.status_code == 200 and found.json() == [], found.text
    _icure_error(await v2.client.post("/rest/v2/exchangedatamap/batch", json={"ids": 3}), 400, "ids")
    _icure_error(await v2.client.post("/rest/v2/exchangedatamap/batch", json={"keys": []}), 400, "keys")
    _icure_error(await v2.client.put("/rest/v2/exchangedatamap/batch", json={"batch": {}}), 404, "not served")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as anonymous:
        _icure_error(await anonymous.post("/rest/v2/exchangedatamap/batch", json={}), 401)


async def test_bad_logins_get_icure_errors(server: RunningServer, v2: V2) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as anonymous:
        wrong = {"username": v2.doctor.login, "password": "not-the-password"}
        _icure_error(await anonymous.post("/rest/v2/auth/login", json=wrong), 401)
        _icure_error(await anonymous.post("/rest/v2/auth/login"), 400, "body")
        _icure_error(await anonymous.post("/rest/v2/auth/login", content=b"{not json"), 400)
        extra = {"username": "a", "password": "b", "otp": "1"}
        _icure_error(await anonymous.post("/rest/v2/auth/login", json=extra), 400, "otp")
        grouped = {"username": v2.doctor.login, "password": v2.doctor.password}
        _icure_error(await anonymous.post("/rest/v2/auth/login?groupId=g", json=grouped), 404, "no group 'g'")
        _icure_error(await anonymous.get("/rest/v2/user/matches"), 401)
        _icure_error(await anonymous.get("/rest/v2/user/current"), 401)
        _icure_error(await anonymous.post("/rest/v2/auth/refresh"), 401, "Refresh-Token")
        _icure_error(await anonymous.post("/rest/v2/auth/refresh", headers={"Refresh-Token": "x.y.z"}), 401)
    for kind in ("hcparty", "patient", "device"):  # legacy keys made for a delegate: none
        keys = await v2.client.get(f"/rest/v2/{kind}/{v2.doctor.id}/aesExchangeKeys")
        assert keys.status_code == 200 and keys.json() == {}, keys.text
    _icure_error(await v2.client.get("/rest/v2/calendarItem/x"), 404, "not served")


async def test_a_refused_patient_is_not_stored(v2: V2) -> None:
    patient_id = str(uuid.uuid4())
    base = {"id": patient_id, "firstName": "John", "securityMetadata": _metadata(v2.doctor.id)}
    refused = [
        ({**base, "note": "Winter is coming"}, "note travel in encryptedSelf"),
        ({**base, "medstreamExtra": 1}, "medstreamExtra"),
        ({**base, "insurabilities": [{"id": "i"}]}, "insurabilities"),
        ({**base, "rev": "1-a"}, "no rev"),
        ({**base, "securityMetadata": {"secureDelegations": {"bad": {}}}}, "secureDelegations"),
        ({**base, "securityMetadata": _metadata("someone-else")}, "own data owner"),
        ({**base, "dateOfBirth": "yesterday"}, "dateOfBirth"),
    ]
    for body, fragment in refused:
        response = await v2.client.post("/rest/v2/patient", json=body)
        _icure_error(response, 403 if fragment == "own data owner" else 400, fragment)
    _icure_error(await v2.client.post("/rest/v2/patient", content=b"[1, 2"), 400)
    _icure_error(await v2.client.get(f"/rest/v2/patient/{patient_id}"), 404)
    created = await v2.client.post("/rest/v2/patient", json=base)
    assert created.status_code == 200, created.text
    assert created.json()["rev"].startswith("1-") and created.json()["firstName"] == "John"
    _icure_error(await v2.client.post("/rest/v2/patient", json=base), 409)
    stored = created.json()
    _icure_error(await v2.client.put("/rest/v2/patient", json={**stored, "rev": None}), 400, "rev")
    _icure_error(await v2.client.put("/rest/v2/patient", json={**stored, "rev": "1-stale"}), 409, "stale rev")
    _icure_error(await v2.client.put("/rest/v2/patient", json={**stored, "note": "clear"}), 400, "note")
    _icure_error(await v2.client.delete(f"/rest/v2/patient/{patient_id}?rev=1-stale"), 409, "stale rev")
    _icure_error(await v2.client.delete(f"/rest/v2/patient/{uuid.uuid4()}"), 404)
    modified = await v2.client.put("/rest/v2/patient", json={**stored, "lastName": "Snow"})
    assert modified.status_code == 200 and modified.json()["lastName"] == "Snow", modified.text
    deleted = await v2.client.delete(f"/rest/v2/patient/{patient_id}?rev={modified.json()['rev']}")
    assert deleted.status_code == 200 and deleted.json()["id"] == patient_id, deleted.text
    assert (await v2.client.get(f"/rest/v2/patient/{patient_id}")).json()["deletionDate"] > 0


async def test_a_refused_contact_stores_neither_the_contact_nor_its_services(v2: V2) -> None:
    owner = v2.doctor.id
    contact_id, service_id = str(uuid.uuid4()), str(uuid.uuid4())
    service = {"id": service_id, "tags": [TAG], "encryptedSelf": "c2VydmljZQ=="}
    base = {"id": contact_id, "services": [service], "secretForeignKeys": ["s"], "securityMetadata": _metadata(owner)}
    refused = [
        ({**base, "services": [{**service, "securityMetadata": {"secureDelegations": {}}}]}, "takes"),
        ({**base, "services": [{**service, "content": {"en": {"stringValue": "clear"}}}]}, "content"),
        ({**base, "services": [service, service]}, "more than once"),
        ({**base, "descr": "in clear"}, "descr"),
        ({**base, "services": [{**service, "tags": [{"type": "IC-TEST", "code": "TEST", "label": {}}]}]}, "label"),
        ({**base, "services": [{"id": service_id}], "secretForeignKeys": []}, "patientId"),
    ]
    for body, fragment in refused:
        _icure_error(await v2.client.post("/rest/v2/contact", json=body), 400, fragment)
    _icure_error(await v2.client.get(f"/rest/v2/contact/{contact_id}"), 404)
    _icure_error(await v2.client.get(f"/rest/v2/contact/service/{service_id}"), 404)
    created = await v2.client.post("/rest/v2/contact", json=base)
    assert created.status_code == 200, created.text
    assert [s["id"] for s in created.json()["services"]] == [service_id]
    read = (await v2.client.get(f"/rest/v2/contact/service/{service_id}")).json()
    assert read["contactId"] == contact_id and read["tags"] == [TAG] and read["secretForeignKeys"] == ["s"]


async def test_services_are_matched_by_icure_filters_and_read_by_ids(
    v2: V2, new_professional: ProfessionalFactory
) -> None:
    owner = v2.doctor.id
    tagged, untagged = str(uuid.uuid4()), str(uuid.uuid4())
    contact = {
        "id": str(uuid.uuid4()),
        "services": [{"id": tagged, "tags": [TAG]}, {"id": untagged}],
        "secretForeignKeys": ["s"],
        "securityMetadata": _metadata(owner),
    }
    assert (await v2.client.post("/rest/v2/contact", json=contact)).status_code == 200
    selector = {"$type": "ServiceByHcPartyTagCodeDateFilter", "healthcarePartyId": owner, "tagType": "IC-TEST"}
    matched = await v2.client.post("/rest/v2/contact/service/match", json=selector)
    assert matched.status_code == 200 and matched.json() == [tagged], matched.text
    read = await v2.client.post("/rest/v2/contact/service", json={"ids": [untagged, "unknown", tagged]})
    assert [s["id"] for s in read.json()] == [untagged, tagged]
    # Another professional matches and reads none of them.
    other = await new_professional()
    login = {"username": other.login, "password": other.password}
    token = (await v2.client.post("/rest/v2/auth/login", json=login)).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    stranger = {**selector, "healthcarePartyId": other.id}
    assert (await v2.client.post("/rest/v2/contact/service/match", json=stranger, headers=headers)).json() == []
    read = await v2.client.post("/rest/v2/contact/service", json={"ids": [tagged]}, headers=headers)
    assert read.json() == []
    for body, fragment in [
        (b"{not json", "not JSON"),
        (b"[1]", "JSON object"),
        (b'{"$type": "ServiceByHcPartyDateFilter"}', "not served; served"),
        (b'{"$type": "ServiceByHcPartyTagCodeDateFilter", "tagType": "T"}', "healthcarePartyId"),
        (b"", "body"),
    ]:
        _icure_error(await v2.client.post("/rest/v2/contact/service/match", content=body), 400, fragment)
    _icure_error(await v2.client.post("/rest/v2/contact/service", json={"ids": "x"}), 400, "ids")


async def test_the_data_owner_stub_is_changed_with_its_rev_by_its_owner_only(
    v2: V2, new_professional: ProfessionalFactory
) -> None:
    current = (await v2.client.get("/rest/v2/dataowner/current")).json()
    assert current["type"] == "hcp" and current["dataOwner"]["id"] == v2.doctor.id
    stub = (await v2.client.get(f"/rest/v2/dataowner/stub/{v2.doctor.id}")).json()["stub"]
    key = "30820122300d06092a864886f70d0101010500"
    published = await v2.client.put(
        "/rest/v2/dataowner/stub", json={"type": "hcp", "stub": {**stub, "publicKeysForOaepWithSha256": [key]}}
    )
    assert published.status_code == 200, published.text
    new_stub = published.json()["stub"]
    assert new_stub["publicKeysForOaepWithSha256"] == [key] and new_stub["rev"] != stub["rev"]
    stale = {"type": "hcp", "stub": {**stub, "publicKeysForOaepWithSha256": [key, key + "00"]}}
    _icure_error(await v2.client.put("/rest/v2/dataowner/stub", json=stale), 409, "stale rev")
    removed = {"type": "hcp", "stub": {**new_stub, "publicKeysForOaepWithSha256": []}}
    _icure_error(await v2.client.put("/rest/v2/dataowner/stub", json=removed), 400, "cannot be removed")
    other = await new_professional()
    foreign = {"type": "hcp", "stub": {**new_stub, "id": other.id}}
    _icure_error(await v2.client.put("/rest/v2/dataowner/stub", json=foreign), 403)
    _icure_error(await v2.client.put("/rest/v2/dataowner/stub", json={"type": "hcp"}), 400, "stub")
    after = (await v2.client.get(f"/rest/v2/dataowner/stub/{v2.doctor.id}")).json()["stub"]
    assert after == new_stub
    # Medstream's own API shows the same professional, with the key beside its cryptoKeys.
    hcp = await v2.doctor.api.healthcare_professional_api.get_healthcare_professional(v2.doctor.id)
    assert hcp.public_keys_for_oaep_with_sha256 == {key} and hcp.rev == new_stub["rev"]


async def _socket(server: RunningServer, token: str | None) -> ClientConnection:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = server.url.replace("http://", "ws://") + "/ws/v2/notification/subscribe"
    return await connect(url, additional_headers=headers)


async def _closed_with(socket: ClientConnection, code: int, fragment: str) -> None:
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(10):
            while True:
                await socket.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == code and fragment in closed.value.rcvd.reason, closed.value.rcvd


@pytest.mark.parametrize(
    ("frame", "code", "fragment"),
    [
        ("{not json", 4400, "not a subscription"),
        (None, 4400, "'HealthElementByHcPartyTagFilter' not served; served: ServiceByHcPartyTagCodeDateFilter, and"),
        ("pong", 4400, "must be the subscription"),
    ],
)
async def test_a_bad_subscription_closes_the_socket_saying_why(
    server: RunningServer, v2: V2, frame: str | None, code: int, fragment: str
) -> None:
    socket = await _socket(server, v2.token)
    unknown = {"filter": {"$type": "HealthElementByHcPartyTagFilter", "healthcarePartyId": "x"}, "predicate": None}
    await socket.send(frame if frame is not None else _frame(v2.doctor.id, filter=unknown))
    await _closed_with(socket, code, fragment)


async def test_a_socket_without_a_valid_token_is_closed(server: RunningServer) -> None:
    await _closed_with(await _socket(server, None), 4001, "bearer token")
    await _closed_with(await _socket(server, "a.b.c"), 4001, "invalid")


async def test_a_medstream_write_reaches_an_icure_subscriber_in_icures_shape(
    server: RunningServer, v2: V2, new_professional: ProfessionalFactory
) -> None:
    socket = await _socket(server, v2.token)
    await socket.send(_frame(v2.doctor.id))
    api = v2.doctor.api
    patient = await api.patient_api.create_or_modify_patient(Patient(first_name="John", last_name="Snow"))
    assert patient.id is not None
    label = {CodingReference(type="IC-TEST", code="TEST")}
    # The subscription is live once the server has its frame, which iCure's protocol does not acknowledge: write
    # until one comes back.
    received: dict[str, Any] | None = None
    for _ in range(20):
        probe = await api.data_sample_api.create_or_modify_data_sample_for(
            patient.id, DataSample(labels=label, content={"en": Content(string_value="probe")})
        )
        try:
            async with asyncio.timeout(0.5):
                received = json.loads(await socket.recv())
                break
        except TimeoutError:
            continue
    assert received is not None, "no event reached the iCure socket"
    # Another professional's sample, and an untagged one, do not come; a tagged one does, in iCure's shape.
    stranger = await new_professional()
    other = await stranger.api.patient_api.create_or_modify_patient(Patient(first_name="Other"))
    assert other.id is not None
    await stranger.api.data_sample_api.create_or_modify_data_sample_for(other.id, DataSample(labels=label))
    await api.data_sample_api.create_or_modify_data_sample_for(patient.id, DataSample(content={}))
    tagged = await api.data_sample_api.create_or_modify_data_sample_for(
        patient.id, DataSample(labels=label, content={"en": Content(string_value="Hello world")})
    )
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while not frames or frames[-1]["id"] != tagged.id:
            frames.append(json.loads(await socket.recv()))
    assert [f["id"] for f in frames if f["id"] != probe.id] == [tagged.id]
    service = ic.Service.model_validate(frames[-1])  # exactly iCure's field set, or this raises
    assert service.tags == [ic.CodeStub(type="IC-TEST", code="TEST")]
    assert service.content == {} and service.encrypted_self  # Medstream's SDK encrypted it
    await socket.send("pong")  # answers the server's ping; allowed at any time
    await socket.send(_frame(v2.doctor.id))
    await _closed_with(socket, 4400, "one subscription per socket")


async def test_the_server_pings_and_closes_a_socket_that_never_answers(tmp_path: Path) -> None:
    # Heartbeats shortened (backend-independent: SQLite only); iCure's clients answer each ping with pong.
    async with serve("sqlite", tmp_path, ws_heartbeat_seconds=0.2, ws_heartbeat_timeout_seconds=1.5) as server:
        hcp = await new_doctor(server)
        async with httpx.AsyncClient(base_url=server.url) as client:
            token = (
                await client.post("/rest/v2/auth/login", json={"username": hcp.login, "password": hcp.password})
            ).json()
        answering = await _socket(server, token["token"])
        await answering.send(_frame(hcp.id))
        silent = await _socket(server, token["token"])
        await silent.send(_frame(hcp.id))
        async with asyncio.timeout(10):
            for _ in range(15):  # 3 s of pings, each answered: the socket stays open past the timeout
                assert await answering.recv() == "ping"
                await answering.send("pong")
        await _closed_with(silent, 4408, "no pong")
        await answering.close()


async def test_patient_events_reach_an_icure_subscriber_with_deletes(
    server: RunningServer, v2: V2, new_professional: ProfessionalFactory
) -> None:
    owner = v2.doctor.id
    socket = await _socket(server, v2.token)
    patients = {"filter": {"$type": "PatientByHcPartyFilter", "healthcarePartyId": owner}, "predicate": None}
    await socket.send(
        _frame(owner, entityClass="org.taktik.icure.entities.Patient", eventTypes=["CREATE", "DELETE"], filter=patients)
    )

    async def create() -> str:
        patient_id = str(uuid.uuid4())
        body = {"id": patient_id, "firstName": "John", "securityMetadata": _metadata(owner)}
        assert (await v2.client.post("/rest/v2/patient", json=body)).status_code == 200
        return patient_id

    probes = await _probed(socket, create)
    stranger = await new_professional()
    await stranger.api.patient_api.create_or_modify_patient(Patient(first_name="Other"))  # not shared: no event
    created = await create()
    api = v2.doctor.api
    updated = await api.patient_api.create_or_modify_patient(
        (await api.patient_api.get_patient(created)).model_copy(update={"last_name": "Snow"})
    )
    await api.patient_api.delete_patient(created)  # an UPDATE (not asked for), then the DELETE
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while len(frames) < 2 or "deletionDate" not in frames[-1]:
            frame = json.loads(await socket.recv())
            if frame["id"] not in probes:
                frames.append(frame)
    shapes = [ic.Patient.model_validate(frame) for frame in frames]  # exactly iCure's field set, or this raises
    assert [(p.id, p.deletion_date is not None) for p in shapes] == [(created, False), (created, True)]
    assert shapes[0].first_name == "John" and shapes[0].rev != updated.rev and shapes[1].rev != updated.rev


async def test_a_logout_closes_the_users_icure_sockets(server: RunningServer, v2: V2) -> None:
    socket = await _socket(server, v2.token)
    await socket.send(_frame(v2.doctor.id))
    assert (await v2.client.post("/rest/v1/auth/logout")).status_code == 204
    await _closed_with(socket, 4001, "session was ended")
    await _closed_with(await _socket(server, v2.token), 4001, "session was ended")  # and refuses a new one


def _share(delegator: str, delegate: str | None, ack: str = "0123456789abcdef" * 2, **changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "explicitDelegator": delegator,
        "explicitDelegate": delegate,
        "accessControlKeys": [ack],
        "secretIds": ["c2VjcmV0"],
        "encryptionKeys": ["a2V5"],
        "exchangeDataId": "exchange-1",
        "requestedPermissions": "MAX_READ",
    }
    request.update(changes)
    return {"share": request}


def _bulk(entity_id: str, **requests: dict[str, Any]) -> dict[str, Any]:
    return {"requestsByEntityId": {entity_id: {"requests": requests, "potentialParentDelegations": [KEY]}}}


async def test_bulk_share_follows_the_delegation_rules(
    server: RunningServer, v2: V2, new_professional: ProfessionalFactory
) -> None:
    """A share request is applied by the entity's reader for its own data owner only, each request on its own;
    a data owner who may only read cannot share further; bad bodies get iCure errors; refused requests change
    nothing."""
    a = v2.doctor.id
    patient_id = str(uuid.uuid4())
    body = {"id": patient_id, "firstName": "Arya", "securityMetadata": _metadata(a)}
    created = await v2.client.post("/rest/v2/patient", json=body)
    assert created.status_code == 200, created.text
    before = created.json()["securityMetadata"]["secureDelegations"]
    reader = await new_professional("Jon", "Snow")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as other:
        login = {"username": reader.login, "password": reader.password}
        token = (await other.post("/rest/v2/auth/login", json=login)).json()["token"]
        other.headers["Authorization"] = f"Bearer {token}"
        url = "/rest/v2/patient/bulkSharedMetadataUpdate"

        # B cannot share what it cannot read: every request refused with 404.
        [result] = (await other.put(url, json=_bulk(patient_id, r=_share(reader.id, reader.id)))).json()
        assert result == {
            "entityId": patient_id,
            "rejectedRequests": {
                "r": {"code": 404, "shouldRetry": False, "reason": result["rejectedRequests"]["r"]["reason"]}
            },
        }
        _icure_error(await other.get(f"/rest/v2/patient/{patient_id}"), 404)

        # A's requests, each applied or refused on its own.
        ack = "0123456789abcdef" * 2
        response = await v2.client.put(
            url,
            json=_bulk(
                patient_id,
                ok=_share(a, reader.id, ack),
                other_delegator=_share(reader.id, reader.id, "f" * 32),
                root=_share(a, reader.id, "e" * 32, requestedPermissions="ROOT"),
                bad_key=_share(a, reader.id, "not-hex"),
                anonymous=_share(a, None, "d" * 32),
                no_exchange=_share(a, reader.id, "c" * 32, exchangeDataId=None),
                both=_share(a, reader.id, "a" * 32) | {"update": {"metadataAccessControlHash": KEY}},
            ),
        )
        assert response.status_code == 200, response.text
        [result] = response.json()
        assert set(result) == {"updatedEntity", "entityId", "entityRev", "rejectedRequests"}
        assert result["entityRev"].startswith("1-") and result["updatedEntity"]["rev"].startswith("2-")
        codes = {name: r["code"] for name, r in result["rejectedRequests"].items()}
        assert codes == {
            "other_delegator": 403, "root": 400, "bad_key": 400, "anonymous": 400, "no_exchange": 400, "both": 400
        }  # fmt: skip
        delegations = result["updatedEntity"]["securityMetadata"]["secureDelegations"]
        key = hashlib.sha256(bytes.fromhex(ack)).hexdigest()
        assert set(delegations) == {*before, key} and KEY in before
        assert delegations[key] == {
            "delegator": a,
            "delegate": reader.id,
            "secretIds": ["c2VjcmV0"],
            "encryptionKeys": ["a2V5"],
            "owningEntityIds": [],
            "parentDelegations": [KEY],
            "exchangeDataId": "exchange-1",
            "permissions": "READ",
        }
        shared = await other.get(f"/rest/v2/patient/{patient_id}")
        assert shared.status_code == 200 and shared.json()["rev"] == result["updatedEntity"]["rev"], shared.text

        # B may only read: it cannot share further, nor change A's delegation; nothing is written.
        onward = _share(reader.id, a, "9" * 32)
        change = {"update": {"metadataAccessControlHash": key, "secretIds": {"eA==": "CREATE"}}}
        [result] = (await other.put(url, json=_bulk(patient_id, onward=onward, change=change))).json()
        assert {n: r["code"] for n, r in result["rejectedRequests"].items()} == {"onward": 403, "change": 403}
        assert "updatedEntity" not in result
        after = await v2.client.get(f"/rest/v2/patient/{patient_id}")
        assert after.json()["securityMetadata"]["secureDelegations"] == delegations

        # A's own update request adds a secret id to its delegation to B.
        change = {"update": {"metadataAccessControlHash": key, "secretIds": {"eA==": "CREATE"}}}
        [result] = (await v2.client.put(url + "Minimal", json=_bulk(patient_id, change=change))).json()
        assert result["rejectedRequests"] == {} and "updatedEntity" not in result
        after = await v2.client.get(f"/rest/v2/patient/{patient_id}")
        assert after.json()["securityMetadata"]["secureDelegations"][key]["secretIds"] == ["c2VjcmV0", "eA=="]

    # Bodies that are not share requests.
    _icure_error(await v2.client.put(url, content=b"{"), 400)
    _icure_error(await v2.client.put(url), 400, "body")
    _icure_error(await v2.client.put(url, json={"requestsByEntityId": {}, "extra": 1}), 400, "extra")
    wrong = _bulk(patient_id, r=_share(a, a) | {"share": {"accessControlKeys": []}, "x": 1})
    _icure_error(await v2.client.put(url, json=wrong), 400)
    _icure_error(await v2.client.put("/rest/v2/contact/bulkSharedMetadataUpdate", json={"requestsByEntityId": 3}), 400)


async def _frames_until(socket: ClientConnection, probes: set[str], last: tuple[str, str]) -> list[dict[str, Any]]:
    """The frames after the probes, up to the one with the id and rev `last`."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while not frames or (frames[-1]["id"], frames[-1]["rev"]) != last:
            frame = json.loads(await socket.recv())
            if frame["id"] not in probes:
                frames.append(frame)
    return frames


async def test_health_elements_through_the_v2_api(
    server: RunningServer, v2: V2, new_professional: ProfessionalFactory
) -> None:
    """Health elements: refused bodies get iCure errors and store nothing; create, read, modify with its rev,
    match, read by ids, share and delete; subscriptions "for self" and "by tag" receive their creation, change and
    deletion (an update with `deletionDate`) in iCure's shape; another professional reads, matches and receives
    nothing until the share."""
    owner = v2.doctor.id
    element_id = str(uuid.uuid4())
    base = {"id": element_id, "tags": [TAG], "secretForeignKeys": ["s"], "securityMetadata": _metadata(owner),
            "encryptedSelf": "bm90ZQ=="}  # fmt: skip
    refused = [
        ({**base, "note": "Diabetes"}, 400, "note travel in encryptedSelf"),
        ({**base, "descr": "Diabetes"}, 400, "descr travel in encryptedSelf"),
        ({**base, "episodes": [{"id": "e"}]}, 400, "does not keep episodes"),
        ({**base, "patientId": "p"}, 400, "patientId"),
        ({**base, "rev": "1-a"}, 400, "no rev"),
        ({**base, "openingDate": "yesterday"}, 400, "openingDate"),
        ({**base, "securityMetadata": _metadata("someone-else")}, 403, "own data owner"),
    ]
    for body, status, fragment in refused:
        _icure_error(await v2.client.post("/rest/v2/helement", json=body), status, fragment)
    _icure_error(await v2.client.post("/rest/v2/helement", content=b"[1, 2"), 400)
    _icure_error(await v2.client.post("/rest/v2/helement"), 400, "body")
    _icure_error(await v2.client.get(f"/rest/v2/helement/{element_id}"), 404)

    # Subscriptions for self and by tag, before anything of interest is written.
    for_self = {"$type": "HealthElementByHcPartyFilter", "hcpId": owner}
    by_tag = {"$type": "HealthElementByHcPartyTagCodeFilter", "healthcarePartyId": owner, "tagType": "IC-TEST",
              "tagCode": "TEST"}  # fmt: skip
    sockets = {}
    for name, selector in (("self", for_self), ("tag", by_tag)):
        sockets[name] = await _socket(server, v2.token)
        frame = {"entityClass": "org.taktik.icure.entities.HealthElement", "filter": {"filter": selector}}
        await sockets[name].send(_frame(owner, **frame))

    async def probe() -> str:
        probe_id = str(uuid.uuid4())
        response = await v2.client.post("/rest/v2/helement", json={**base, "id": probe_id})
        assert response.status_code == 200, response.text
        return probe_id

    probes: set[str] = set()
    for socket in sockets.values():
        await _probed(socket, probe, probes)

    untagged_id = str(uuid.uuid4())
    untagged = await v2.client.post("/rest/v2/helement", json={**base, "id": untagged_id, "tags": []})
    assert untagged.status_code == 200, untagged.text
    created = await v2.client.post("/rest/v2/helement", json=base)
    assert created.status_code == 200, created.text
    stored = created.json()
    assert stored["rev"].startswith("1-") and stored["tags"] == [TAG] and stored["relevant"] is True
    assert stored["secretForeignKeys"] == ["s"] and stored["encryptedSelf"] == "bm90ZQ=="
    _icure_error(await v2.client.post("/rest/v2/helement", json=base), 409)
    assert (await v2.client.get(f"/rest/v2/helement/{element_id}")).json() == stored
    _icure_error(await v2.client.put("/rest/v2/helement", json={**stored, "rev": None}), 400, "rev")
    _icure_error(await v2.client.put("/rest/v2/helement", json={**stored, "rev": "1-stale"}), 409, "stale rev")
    _icure_error(await v2.client.put("/rest/v2/helement", json={**stored, "note": "clear"}), 400, "note")
    modified = await v2.client.put("/rest/v2/helement", json={**stored, "closingDate": 20240201})
    assert modified.status_code == 200 and modified.json()["closingDate"] == 20240201, modified.text

    # Matched and read by ids by its owner; by another professional, neither, nor read, nor shared.
    matched = await v2.client.post("/rest/v2/helement/match", json=by_tag)
    assert matched.status_code == 200 and element_id in matched.json() and untagged_id not in matched.json()
    read = await v2.client.post("/rest/v2/helement/byIds", json={"ids": [untagged_id, "unknown", element_id]})
    assert [e["id"] for e in read.json()] == [untagged_id, element_id]
    for body, fragment in [
        (b"{not json", "not JSON"),
        (b'{"$type": "HealthElementByHcPartyCodeFilter", "hcPartyId": "x"}', "not served; served"),
        (b'{"$type": "HealthElementByHcPartyIdentifiersFilter", "hcPartyId": "x"}', "identifiers is encrypted"),
        (b'{"$type": "ServiceByHcPartyTagCodeDateFilter", "healthcarePartyId": "x"}', "selects DataSamples"),
    ]:
        _icure_error(await v2.client.post("/rest/v2/helement/match", content=body), 400, fragment)
    _icure_error(await v2.client.post("/rest/v2/helement/byIds", json={"ids": "x"}), 400, "ids")
    other = await new_professional()
    login = {"username": other.login, "password": other.password}
    headers = {"Authorization": f"Bearer {(await v2.client.post('/rest/v2/auth/login', json=login)).json()['token']}"}
    mine = {**for_self, "hcpId": other.id}
    assert (await v2.client.post("/rest/v2/helement/match", json=mine, headers=headers)).json() == []
    _icure_error(await v2.client.get(f"/rest/v2/helement/{element_id}", headers=headers), 404)
    assert (await v2.client.post("/rest/v2/helement/byIds", json={"ids": [element_id]}, headers=headers)).json() == []
    _icure_error(await v2.client.delete(f"/rest/v2/helement/{element_id}", headers=headers), 404)
    url = "/rest/v2/helement/bulkSharedMetadataUpdate"
    [rejected] = (
        await v2.client.put(url, json=_bulk(element_id, r=_share(other.id, other.id)), headers=headers)
    ).json()
    assert rejected["rejectedRequests"]["r"]["code"] == 404

    # The owner shares the untagged one: the other professional reads and matches it.
    [result] = (await v2.client.put(url + "Minimal", json=_bulk(untagged_id, r=_share(owner, other.id)))).json()
    assert result["rejectedRequests"] == {} and "updatedEntity" not in result
    shared = await v2.client.get(f"/rest/v2/helement/{untagged_id}", headers=headers)
    assert shared.status_code == 200 and shared.json()["rev"].startswith("2-"), shared.text
    assert (await v2.client.post("/rest/v2/helement/match", json=mine, headers=headers)).json() == [untagged_id]

    # Deleted with its rev: a tombstone with deletionDate, iCure's answer.
    current = modified.json()["rev"]
    _icure_error(await v2.client.delete(f"/rest/v2/helement/{element_id}?rev=1-stale"), 409, "stale rev")
    _icure_error(await v2.client.delete(f"/rest/v2/helement/{uuid.uuid4()}"), 404)
    deleted = await v2.client.delete(f"/rest/v2/helement/{element_id}?rev={current}")
    assert deleted.status_code == 200, deleted.text
    assert set(deleted.json()) == {"id", "rev"} and deleted.json()["id"] == element_id
    tombstone = (await v2.client.get(f"/rest/v2/helement/{element_id}")).json()
    assert tombstone["deletionDate"] > 0 and tombstone["rev"] == deleted.json()["rev"]

    # The events, in iCure's shape (exactly its field set, or this raises), in the order written.
    last = (element_id, deleted.json()["rev"])
    for name, expected in (("self", [untagged_id, element_id, element_id, untagged_id, element_id]),
                           ("tag", [element_id, element_id, element_id])):  # fmt: skip
        shapes = [ic.HealthElement.model_validate(f) for f in await _frames_until(sockets[name], probes, last)]
        assert [e.id for e in shapes] == expected, name
        assert [e.deletion_date is not None for e in shapes if e.id == element_id] == [False, False, True]
        assert [e.closing_date for e in shapes if e.id == element_id] == [None, 20240201, 20240201]
        await sockets[name].close()


async def test_a_default_server_names_in_icures_terms_the_fields_it_requires_encrypted(tmp_path: Path) -> None:
    """On a server with the default settings (encryption required), the configuration lists the fields in iCure's
    names; a patient, contact or service sending one in clear is refused naming it and cardinal's option, and
    nothing is stored; a subscription whose filter searches an encrypted field is refused saying so."""
    async with serve("sqlite", tmp_path) as server, httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        configuration = (await client.get("/rest/v1/crypto/configuration")).json()
        assert configuration["requireEncryption"] is True
        icure = configuration["icureEncryptedFields"]
        assert set(icure) == {"Patient", "Contact", "Service", "HealthElement"}
        assert icure["HealthElement"] == ["descr", "note", "identifiers"]
        assert {"firstName", "lastName", "names", "ssin", "identifier"} <= set(icure["Patient"])
        assert "identifiers" not in icure["Patient"] and "externalId" not in icure["Patient"]
        assert {"descr", "location", "identifier"} == set(icure["Contact"])
        assert {"formIds", "identifier", "comment"} <= set(icure["Service"]) and "content" not in icure["Service"]

        hcp = await new_doctor(server)
        login = {"username": hcp.login, "password": hcp.password}
        token = (await client.post("/rest/v2/auth/login", json=login)).json()
        client.headers["Authorization"] = f"Bearer {token['token']}"

        patient_id = str(uuid.uuid4())
        base = {"id": patient_id, "gender": "female", "securityMetadata": _metadata(hcp.id)}
        refused = await client.post("/rest/v2/patient", json={**base, "firstName": "John", "ssin": "1"})
        _icure_error(refused, 400, f"Patient {patient_id}: firstName, ssin", "EncryptedFieldsConfiguration(patient=")
        _icure_error(await client.get(f"/rest/v2/patient/{patient_id}"), 404)
        created = await client.post("/rest/v2/patient", json={**base, "encryptedSelf": "cGF0aWVudA=="})
        assert created.status_code == 200 and created.json()["gender"] == "female", created.text

        contact_id, service_id = str(uuid.uuid4()), str(uuid.uuid4())
        service = {"id": service_id, "tags": [TAG], "formIds": ["f"], "encryptedSelf": "c2VydmljZQ=="}
        contact = {
            "id": contact_id,
            "services": [service],
            "secretForeignKeys": ["s"],
            "securityMetadata": base["securityMetadata"],
        }
        refused = await client.post("/rest/v2/contact", json=contact)
        _icure_error(refused, 400, f"Service {service_id}: formIds", "service=[")
        _icure_error(await client.get(f"/rest/v2/contact/{contact_id}"), 404)
        _icure_error(await client.get(f"/rest/v2/contact/service/{service_id}"), 404)

        socket = await _socket(server, token["token"])
        by_name = {"$type": "PatientByHcPartyNameContainsFuzzyFilter", "healthcarePartyId": hcp.id, "searchString": "j"}
        frame = _frame(
            hcp.id, entityClass="org.taktik.icure.entities.Patient", filter={"filter": by_name, "predicate": None}
        )
        await socket.send(frame)
        await _closed_with(socket, 4400, "names is encrypted, the server cannot read it")


async def _probed(socket: ClientConnection, write: Any, probes: set[str] | None = None) -> set[str]:
    """Write probes (`write()` returns the probe's id) until one comes back on `socket`: its subscription is then
    live (iCure's protocol does not acknowledge it). The ids of the probes written, added to `probes` when given
    (the probes of several sockets subscribed alike reach each of them)."""
    probes = set() if probes is None else probes
    for _ in range(20):
        probes.add(await write())
        try:
            async with asyncio.timeout(0.5):
                assert json.loads(await socket.recv())["id"] in probes
                return probes
        except TimeoutError:
            continue
    raise AssertionError("no event reached the iCure socket")


async def _frames_up_to(socket: ClientConnection, last: str, ignored: set[str]) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while not frames or frames[-1]["id"] != last:
            frame = json.loads(await socket.recv())
            if frame["id"] not in ignored:
                frames.append(frame)
    return frames


async def test_icure_combinators_select_patients_in_matches_and_subscriptions(server: RunningServer, v2: V2) -> None:
    """A difference of a union (cardinal's `difference(union(...), ...)`) selects, in `POST /patient/match` and in
    a subscription, exactly the patients it means; a combinator with a leaf of another entity class is refused."""
    owner = v2.doctor.id
    gender = {"$type": "PatientByHcPartyGenderEducationProfession", "healthcarePartyId": owner}
    sixties = {"$type": "PatientByHcPartyDateOfBirthBetweenFilter", "healthcarePartyId": owner,
               "minDateOfBirth": 19600101, "maxDateOfBirth": 19691231}  # fmt: skip
    selector = {
        "$type": "ComplementFilter",
        "superSet": {"$type": "UnionFilter", "filters": [{**gender, "gender": "female"}, sixties]},
        "subSet": {**gender, "gender": "female", "profession": "knight"},
    }
    socket = await _socket(server, v2.token)
    await socket.send(
        _frame(owner, entityClass="org.taktik.icure.entities.Patient", filter={"filter": selector, "predicate": None})
    )

    async def create(gender: str, born: int, profession: str | None = None) -> dict[str, Any]:
        body = {"id": str(uuid.uuid4()), "gender": gender, "dateOfBirth": born, "profession": profession,
                "securityMetadata": _metadata(owner)}  # fmt: skip
        created = await v2.client.post("/rest/v2/patient", json=body)
        assert created.status_code == 200, created.text
        return dict(created.json())

    async def probe() -> str:
        return str((await create("female", 19650101))["id"])

    probes = await _probed(socket, probe)
    arya = await create("female", 19900101)  # in the union (female)
    ned = await create("male", 19650101)  # in the union (born in the sixties)
    await create("male", 19900101)  # in neither
    brienne = await create("female", 19900101, "knight")  # in the union, and in the subset
    changed = await v2.client.put("/rest/v2/patient", json={**arya, "dateOfBirth": 19910101})
    assert changed.status_code == 200, changed.text
    knighted = await v2.client.put("/rest/v2/patient", json={**ned, "profession": "knight"})  # still selected
    assert knighted.status_code == 200, knighted.text
    frames = await _frames_up_to(socket, ned["id"], probes)
    while len(frames) < 4:
        frames += await _frames_up_to(socket, ned["id"], probes)
    assert [(f["id"], f["rev"]) for f in frames] == [
        (arya["id"], arya["rev"]),
        (ned["id"], ned["rev"]),
        (arya["id"], changed.json()["rev"]),
        (ned["id"], knighted.json()["rev"]),
    ]
    matched = await v2.client.post("/rest/v2/patient/match", json=selector)
    assert matched.status_code == 200, matched.text
    assert set(matched.json()) == {arya["id"], ned["id"], *probes} and brienne["id"] not in matched.json()
    assert matched.json() == sorted(matched.json())

    service_leaf = {"$type": "ServiceByHcPartyTagCodeDateFilter", "healthcarePartyId": owner, "tagType": "T"}
    mixed = {"$type": "UnionFilter", "filters": [{**gender, "gender": "male"}, service_leaf]}
    _icure_error(
        await v2.client.post("/rest/v2/patient/match", json=mixed),
        400,
        "ServiceByHcPartyTagCodeDateFilter selects DataSamples, not Patients (at filters[1])",
    )
    deep: dict[str, Any] = {**gender, "gender": "male"}
    for _ in range(40):
        deep = {"$type": "IntersectionFilter", "filters": [deep]}
    _icure_error(await v2.client.post("/rest/v2/patient/match", json=deep), 413, "deeper than 32 levels")
    refused = await _socket(server, v2.token)
    await refused.send(
        _frame(owner, entityClass="org.taktik.icure.entities.Patient", filter={"filter": mixed, "predicate": None})
    )
    await _closed_with(refused, 4400, "ServiceByHcPartyTagCodeDateFilter selects DataSamples, not Patients")


async def test_a_modified_contact_writes_its_changed_services_only(
    server: RunningServer, v2: V2, new_professional: ProfessionalFactory
) -> None:
    """`PUT /rest/v2/contact`: a changed service is an UPDATE, a new one a CREATE, an unchanged one is not written,
    a removed one is deleted (gone from reads, no event for iCure's subscribers); a stale rev or a bad body is
    refused with an iCure error and stores nothing."""
    owner = v2.doctor.id
    changed, kept, removed, added = (str(uuid.uuid4()) for _ in range(4))

    def service(service_id: str, text: str) -> dict[str, Any]:
        return {"id": service_id, "tags": [TAG], "encryptedSelf": base64.b64encode(text.encode()).decode()}

    contact_id = str(uuid.uuid4())
    base = {"id": contact_id, "secretForeignKeys": ["s"], "securityMetadata": _metadata(owner)}
    body = {**base, "services": [service(changed, "one"), service(kept, "two"), service(removed, "three")]}
    created = await v2.client.post("/rest/v2/contact", json=body)
    assert created.status_code == 200, created.text
    stored = created.json()

    socket = await _socket(server, v2.token)
    await socket.send(_frame(owner))

    async def probe() -> str:
        probe_id = str(uuid.uuid4())
        probe = {**base, "id": str(uuid.uuid4()), "services": [service(probe_id, "probe")]}
        assert (await v2.client.post("/rest/v2/contact", json=probe)).status_code == 200
        return probe_id

    probes = await _probed(socket, probe)
    services = {s["id"]: s for s in stored["services"]}
    modified = {
        **stored,
        "services": [{**services[changed], "encryptedSelf": "bmV3"}, services[kept], service(added, "4")],
    }

    # Refusals first: each stores nothing.
    _icure_error(await v2.client.put("/rest/v2/contact", json={**modified, "rev": None}), 400, "rev")
    _icure_error(await v2.client.put("/rest/v2/contact", json={**modified, "rev": "1-stale"}), 409, "stale rev")
    bad = {**modified, "services": [*modified["services"], {**services[kept], "content": {"en": {"stringValue": "x"}}}]}
    _icure_error(await v2.client.put("/rest/v2/contact", json=bad), 400)
    clear = {**modified, "services": [{**services[kept], "content": {"en": {"stringValue": "clear"}}}]}
    _icure_error(await v2.client.put("/rest/v2/contact", json=clear), 400, "content")
    _icure_error(await v2.client.put("/rest/v2/contact", json={**modified, "id": str(uuid.uuid4())}), 404)
    stranger = await new_professional()
    login = {"username": stranger.login, "password": stranger.password}
    token = (await v2.client.post("/rest/v2/auth/login", json=login)).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    _icure_error(await v2.client.put("/rest/v2/contact", json=modified, headers=headers), 404)
    assert (await v2.client.get(f"/rest/v2/contact/{contact_id}")).json() == stored
    _icure_error(await v2.client.get(f"/rest/v2/contact/service/{added}"), 404)

    answer = await v2.client.put("/rest/v2/contact", json=modified)
    assert answer.status_code == 200, answer.text
    written = answer.json()
    assert written["rev"].startswith("2-") and [s["id"] for s in written["services"]] == [changed, kept, added]
    frames = await _frames_up_to(socket, added, probes)
    if len(frames) < 2:
        frames += await _frames_up_to(socket, changed, probes)
    assert sorted((f["id"], f["encryptedSelf"]) for f in frames) == sorted([(changed, "bmV3"), (added, "NA==")])
    after = {s["id"]: s for s in written["services"]}
    assert after[kept] == services[kept]  # not written again: the same rev-less service, same modified
    assert after[changed]["modified"] >= services[changed]["modified"]
    assert (await v2.client.get(f"/rest/v2/contact/{contact_id}")).json() == written
    _icure_error(await v2.client.get(f"/rest/v2/contact/service/{removed}"), 404)
    # The stale rev is now the first one.
    _icure_error(await v2.client.put("/rest/v2/contact", json=modified), 409, "stale rev")
    # Medstream's own API: the removed service's DataSample is deleted, the kept one still at its first rev.
    revs = {i: (await v2.client.get(f"/rest/v1/data-samples/{i}")).json() for i in (changed, kept, removed, added)}
    assert {i: (r["rev"][:2], r.get("deletionDate") is not None) for i, r in revs.items()} == {
        changed: ("2-", False),
        kept: ("1-", False),
        removed: ("2-", True),
        added: ("1-", False),
    }


async def test_exchange_data_by_participant_pages_the_records_you_are_a_party_to(
    server: RunningServer, v2: V2, new_professional: ProfessionalFactory
) -> None:
    a = v2.doctor.id
    b_doctor, c_doctor = await new_professional(), await new_professional()
    b, c = b_doctor.id, c_doctor.id

    async def client_of(doctor: Professional) -> httpx.AsyncClient:
        login = {"username": doctor.login, "password": doctor.password}
        token = (await v2.client.post("/rest/v2/auth/login", json=login)).json()["token"]
        return httpx.AsyncClient(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {token}"})

    def record(delegator: str, delegate: str) -> dict[str, Any]:
        return {"id": str(uuid.uuid4()), "delegator": delegator, "delegate": delegate, "exchangeKey": {"k": "a2V5"},
                "accessControlSecret": {"k": "c2VjcmV0"}, "sharedSignatureKey": {"k": "c2ln"},
                "sharedSignature": "c2lnbmVk"}  # fmt: skip

    made: dict[tuple[str, str], str] = {}
    async with await client_of(b_doctor) as b_client:
        for writer, delegator, delegate in [
            (v2.client, a, a), (v2.client, a, b), (b_client, b, a), (b_client, b, c), (v2.client, a, c),
        ]:  # fmt: skip
            sent = record(delegator, delegate)
            answer = await writer.post("/rest/v2/exchangedata", json=sent)
            assert answer.status_code == 200, answer.text
            made[(delegator, delegate)] = sent["id"]

        async def pages(client: httpx.AsyncClient, participant: str, limit: int) -> list[list[str]]:
            found: list[list[str]] = []
            start: str | None = None
            while True:
                params = {"limit": str(limit), **({"startDocumentId": start} if start else {})}
                page = await client.get(f"/rest/v2/exchangedata/byParticipant/{participant}", params=params)
                assert page.status_code == 200, page.text
                body = page.json()
                assert set(body) == {"rows", "nextKeyPair"}
                found.append([r["id"] for r in body["rows"]])
                if body["nextKeyPair"] is None:
                    return found
                start = body["nextKeyPair"]["startKeyDocId"]

        mine = sorted(made[k] for k in [(a, a), (a, b), (b, a), (a, c)])
        by_two = await pages(v2.client, a, 2)
        assert by_two == [mine[:2], mine[2:]]
        assert await pages(v2.client, a, 1000) == [mine]
        # A participant other than you: only the records you are also a party to.
        assert await pages(v2.client, b, 10) == [sorted([made[(a, b)], made[(b, a)]])]
        assert await pages(b_client, c, 10) == [[made[(b, c)]]]
        assert await pages(b_client, a, 1) == [[i] for i in sorted([made[(a, b)], made[(b, a)]])]
    async with await client_of(c_doctor) as c_client:
        assert await pages(c_client, b, 10) == [[made[(b, c)]]]
    for bad in ["0", "1001", "x", "-1"]:
        _icure_error(
            await v2.client.get(f"/rest/v2/exchangedata/byParticipant/{a}", params={"limit": bad}), 400, "limit"
        )
