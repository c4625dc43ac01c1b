"""An iCure client's reconnect on `/ws/v2/notification/subscribe` gets the events it missed, with a raw websocket
client speaking iCure's frames: exactly once, in order, before the live ones, and only for the reconnect of a
socket that dropped (the same login session and subscription, within the window), never for another session, a
deliberate close, a socket whose key another open socket holds, or what the reader may no longer read."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from medstream.model import CodingReference, Content, DataSample, Patient
from medstream.sdk import MedTechApi
from medstream.store import outbox
from medstream.store.database import Database
from tests.conftest import ProfessionalFactory, RunningServer, new_doctor, serve
from tests.integration.test_icure_api import V2, _closed_with, _frame, _socket, v2

__all__ = ["v2"]  # the fixture, shared with test_icure_api

LABEL = {CodingReference(type="IC-TEST", code="TEST")}
Write = Callable[[], Awaitable[str]]


def _sample_writer(api: MedTechApi, patient_id: str, *, tagged: bool = True) -> Write:
    """Writes one data sample of the patient (tagged: matched by `_frame`'s filter) and returns its id."""

    async def write() -> str:
        sample = DataSample(labels=LABEL if tagged else set(), content={"en": Content(string_value="x")})
        written = await api.data_sample_api.create_or_modify_data_sample_for(patient_id, sample)
        assert written.id is not None
        return written.id

    return write


async def _next_entity(socket: ClientConnection) -> dict[str, Any]:
    """The next entity frame (the server's pings are answered and skipped)."""
    while True:
        text = await socket.recv()
        if text == "ping":
            await socket.send("pong")
            continue
        assert isinstance(text, str)
        frame: dict[str, Any] = json.loads(text)
        return frame


async def _first_live(socket: ClientConnection, write: Write) -> str:
    """Write probes until one comes back (iCure's protocol does not acknowledge a subscription); the first frame
    the socket receives must be one of them: nothing was replayed before. Its id."""
    return (await _live_probes(socket, write))[0]


async def _live_probes(socket: ClientConnection, write: Write) -> tuple[str, list[str]]:
    """`_first_live`, with every probe written: on a loaded machine a probe may come back after the next was
    written, and the later ones still reach every socket of the subscription."""
    probes: list[str] = []
    for _ in range(20):
        probes.append(await write())
        try:
            async with asyncio.timeout(0.5):
                first = await _next_entity(socket)
                break
        except TimeoutError:
            continue
    else:
        raise AssertionError("the subscription never went live")
    assert first["id"] in probes, f"{first['id']} came before the live events"
    return str(first["id"]), probes


async def _ids_until(socket: ClientConnection, last: str, ignoring: Collection[str] = ()) -> list[str]:
    """The ids of the entities `socket` receives up to `last`, leaving out `ignoring` (probes of `_live_probes`
    that came back late)."""
    ids: list[str] = []
    async with asyncio.timeout(10):
        while not ids or ids[-1] != last:
            received = str((await _next_entity(socket))["id"])
            if received not in ignoring:
                ids.append(received)
    return ids


async def _login(client: httpx.AsyncClient, login: str, password: str) -> dict[str, str]:
    response = await client.post("/rest/v2/auth/login", json={"username": login, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


async def test_a_reconnect_receives_what_it_missed_once_and_in_order_then_live_events(
    server: RunningServer, v2: V2
) -> None:
    api = v2.doctor.api
    patient = await api.patient_api.create_or_modify_patient(Patient(first_name="John", last_name="Snow"))
    assert patient.id is not None
    write, untagged = _sample_writer(api, patient.id), _sample_writer(api, patient.id, tagged=False)
    first = await _socket(server, v2.token)
    await first.send(_frame(v2.doctor.id))
    _, probes = await _live_probes(first, write)
    first.transport.abort()  # the connection is lost: no close frame
    missed = [await write(), await write(), await untagged(), await write()]
    # cardinal reconnects with a token of the same session, refreshed, and the same subscription (its frame's keys
    # in any order, its version named).
    refreshed = await v2.client.post("/rest/v2/auth/refresh", headers={"Refresh-Token": v2.refresh})
    assert refreshed.status_code == 200, refreshed.text
    second = await _socket(server, refreshed.json()["token"])
    frame = json.loads(_frame(v2.doctor.id, eventTypes=["UPDATE", "CREATE"], cardinalSdkVersion="2.14.0"))
    await second.send(json.dumps(dict(reversed(list(frame.items())))))
    live = await write()
    assert await _ids_until(second, live, probes) == [missed[0], missed[1], missed[3], live]
    again = await write()
    assert await _ids_until(second, again, probes) == [again]  # nothing twice
    # The reconnect dropped too: its own reconnect resumes after the last event it sent.
    second.transport.abort()
    later = await write()
    third = await _socket(server, refreshed.json()["token"])
    await third.send(_frame(v2.doctor.id))
    live = await write()
    assert await _ids_until(third, live, probes) == [later, live]
    await third.close()


async def test_nothing_is_replayed_to_another_session_after_a_deliberate_close_or_beside_an_open_socket(
    server: RunningServer, v2: V2
) -> None:
    api = v2.doctor.api
    patient = await api.patient_api.create_or_modify_patient(Patient(first_name="John", last_name="Snow"))
    assert patient.id is not None
    write = _sample_writer(api, patient.id)
    first = await _socket(server, v2.token)
    await first.send(_frame(v2.doctor.id))
    await _first_live(first, write)
    first.transport.abort()
    await write()  # missed by `first`
    # Another login of the same user, the same subscription: another client, which gets nothing of it.
    session = (await _login(v2.client, v2.doctor.login, v2.doctor.password))["token"]
    other = await _socket(server, session)
    await other.send(_frame(v2.doctor.id))
    await _first_live(other, write)
    # A deliberate close (cardinal's `close()` sends 1000): the client is not coming back for what follows.
    await other.close()
    await write()
    again = await _socket(server, session)
    await again.send(_frame(v2.doctor.id))
    _, written = await _live_probes(again, write)
    # A second socket of the same session and subscription while `again` is open; it drops, while `again` still
    # receives what is written: a socket then opened with that key is no reconnect of either.
    twin = await _socket(server, session)
    await twin.send(_frame(v2.doctor.id))
    probe, twin_probes = await _live_probes(twin, write)
    probes = {*written, *twin_probes}
    received = await _ids_until(again, probe)
    assert received[-1] == probe and set(received) <= probes, received
    twin.transport.abort()
    meanwhile = await write()
    received = await _ids_until(again, meanwhile)
    assert received[-1] == meanwhile and set(received[:-1]) <= probes, received
    third = await _socket(server, session)
    await third.send(_frame(v2.doctor.id))
    await _first_live(third, write)
    await again.close()
    await third.close()


async def test_a_reader_gets_no_replay_of_what_was_written_after_its_access_was_revoked(
    server: RunningServer, v2: V2, new_professional: ProfessionalFactory
) -> None:
    """The access rule of live events: an event reaches the readers stored with it, the access the entity had at
    that write. A write made while the reader could read the entity is replayed (it would have received it
    live); none made after its access was revoked is."""
    reader = v2.doctor
    owner = await new_professional()
    shared = await owner.api.patient_api.create_or_modify_patient(Patient(first_name="Ann", last_name="Shared"))
    shared = await owner.api.patient_api.give_access_to(shared, reader.id)
    patients = {"filter": {"$type": "PatientByHcPartyFilter", "healthcarePartyId": reader.id}, "predicate": None}
    frame = _frame(reader.id, entityClass="org.taktik.icure.entities.Patient", filter=patients)

    async def own_patient() -> str:
        created = await reader.api.patient_api.create_or_modify_patient(Patient(first_name="Own"))
        assert created.id is not None
        return created.id

    socket = await _socket(server, v2.token)
    await socket.send(frame)
    _, probes = await _live_probes(socket, own_patient)
    socket.transport.abort()
    before = await owner.api.patient_api.create_or_modify_patient(shared.model_copy(update={"note": "before"}))
    revoked = await owner.api.patient_api.revoke_access_from(before, reader.id)
    await owner.api.patient_api.create_or_modify_patient(revoked.model_copy(update={"last_name": "After"}))
    own = await own_patient()
    again = await _socket(server, v2.token)
    await again.send(frame)
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while not frames or frames[-1]["id"] != own:
            frame = await _next_entity(again)
            if frame["id"] not in probes:
                frames.append(frame)
    assert [(f["id"], f["rev"]) for f in frames] == [(before.id, before.rev), (own, frames[-1]["rev"])]
    await again.close()


async def test_too_slow_then_past_the_retention_then_past_the_window(tmp_path: Path) -> None:
    """A socket closed as too slow resumes after the last frame it was sent, what was still queued included; one
    whose missed events were trimmed is closed (1013); one past the window gets nothing. A short window and send
    queue: backend-independent, SQLite only."""
    settings: dict[str, Any] = {"icure_resume_window_seconds": 1.0, "ws_send_queue": 3}
    async with serve("sqlite", tmp_path, require_encryption=False, **settings) as server:
        hcp = await new_doctor(server)
        login, password = hcp.login, hcp.password
        api = await server.api(login, password)
        patient = await api.patient_api.create_or_modify_patient(Patient(first_name="John"))
        assert patient.id is not None
        write = _sample_writer(api, patient.id)
        async with httpx.AsyncClient(base_url=server.url) as client:
            token = (await _login(client, login, password))["token"]
        slow = await _socket(server, token)
        await slow.send(_frame(hcp.id))
        _, probes = await _live_probes(slow, write)
        # Six events in one write: the fourth overflows the socket's queue of three before it is written.
        samples = [DataSample(labels=LABEL, content={"en": Content(string_value=str(i))}) for i in range(6)]
        burst = [s.id for s in await api.data_sample_api.create_or_modify_data_samples_for(patient.id, samples)]
        received: list[str] = []
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                while True:
                    entity_id = (await _next_entity(slow))["id"]
                    if entity_id not in probes:
                        received.append(entity_id)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429, closed.value
        assert received == burst[: len(received)] and len(received) < len(burst)
        resumed = await _socket(server, token)
        await resumed.send(_frame(hcp.id))
        live = await write()
        assert received + await _ids_until(resumed, live, probes) == [*burst, live]
        first = resumed
        first.transport.abort()
        for _ in range(3):
            await write()
        # Retention trims two of the three missed events: iCure's protocol cannot say so, and the socket is closed
        # as one that lost events while live; the reconnect after that close goes on from there.
        database = Database(server.database_url)
        try:
            assert await outbox.trim(database, created_before=0, keep_last=1) > 0
        finally:
            await database.close()
        lost = await _socket(server, token)
        await lost.send(_frame(hcp.id))
        await _closed_with(lost, 1013, "events were lost")
        second = await _socket(server, token)
        await second.send(_frame(hcp.id))
        await _first_live(second, write)
        second.transport.abort()
        await write()
        await asyncio.sleep(1.3)  # the window passes: no event marks it
        third = await _socket(server, token)
        await third.send(_frame(hcp.id))
        await _first_live(third, write)
        await third.close()
        await api.close()
