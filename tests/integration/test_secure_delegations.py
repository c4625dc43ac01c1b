"""Secure delegations, crypto keys, exchange data and the encryption configuration through REST and the events
socket, on SQLite and PostgreSQL: who reads an entity is who its secure delegations name, at once."""

from __future__ import annotations

import base64
import secrets
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from medstream.crypto.blind_index import token
from medstream.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from medstream.filters import (
    ExchangeDataByDelegateFilter,
    ExchangeDataByDelegatorFilter,
    HealthcareElementByIdsFilter,
)
from medstream.model import (
    AccessLevel,
    CryptoKey,
    ExchangeData,
    HealthcareElement,
    HealthcareProfessional,
    KeyStatus,
    Patient,
    SecureDelegation,
    SecurityMetadata,
)
from medstream.model.security import server_delegation_key
from medstream.sdk import MedTechApi
from tests.conftest import Professional, ProfessionalFactory, RunningServer
from tests.integration.events_support import ALL_TYPES, Recorder
from tests.integration.raw_events import WAIT, dedicated_server, ws_url

BLOB = base64.b64encode(b"\x01" + secrets.token_bytes(60)).decode()


def delegation_key() -> str:
    """A key as a client makes it (the hash of an access control key): any 64 hex digits to the server."""
    return secrets.token_hex(32)


def with_delegation(entity: Any, key: str, delegation: SecureDelegation | None) -> Any:
    """`entity` with the delegation `key` set (or removed, with None), the others as stored."""
    delegations = dict(entity.security_metadata.secure_delegations if entity.security_metadata else {})
    if delegation is None:
        delegations.pop(key)
    else:
        delegations[key] = delegation
    return entity.model_copy(update={"security_metadata": SecurityMetadata(secure_delegations=delegations)})


async def subscribe_elements(api: MedTechApi, recorder: Recorder) -> Any:
    return await api.healthcare_element_api.subscribe_to_healthcare_element_events(ALL_TYPES, None, recorder)


async def marker_for(owner: Professional, colleague: Professional, recorder: Recorder) -> None:
    """A write the colleague reads, made after the writes under test: once its event arrived, every earlier
    event the colleague was to receive has arrived (events come in log order)."""
    marker = await owner.api.healthcare_element_api.create_or_modify_healthcare_element(
        HealthcareElement(description="marker")
    )
    await owner.api.healthcare_element_api.give_access_to(marker, colleague.id)
    await recorder.wait_until(lambda events: any(e.entity.id == marker.id for e in events), "the marker's event")


@pytest.mark.parametrize("revoke", ["by-update", "by-route"])
async def test_a_client_delegation_makes_its_delegate_a_reader_and_removing_it_stops_reads_and_events_at_once(
    revoke: str, new_professional: ProfessionalFactory
) -> None:
    owner, colleague = await new_professional("Owner", "Doctor"), await new_professional("Colleague", "Doctor")
    received = Recorder()
    connection = await subscribe_elements(colleague.api, received)
    try:
        created = await owner.api.healthcare_element_api.create_or_modify_healthcare_element(
            HealthcareElement(description="Asthma")
        )
        assert created.id is not None and created.readers == {owner.id}
        shared = await owner.api.healthcare_element_api.give_access_to(created, colleague.id, "READ")
        assert shared.security_metadata is not None and shared.readers == {owner.id, colleague.id}
        (key,) = [k for k, d in shared.security_metadata.secure_delegations.items() if d.delegate == colleague.id]
        delegation = shared.security_metadata.secure_delegations[key]
        assert (delegation.delegator, delegation.permissions) == (owner.id, AccessLevel.READ)
        assert len(delegation.encryption_keys) == 1, "the client's delegation carries the wrapped key"
        assert await colleague.api.healthcare_element_api.get_healthcare_element(created.id) == shared
        await received.wait_until(lambda events: bool([e for e in events if e.entity.id == created.id]), "UPDATE")
        with pytest.raises(ForbiddenError, match="reading only"):
            await colleague.api.healthcare_element_api.create_or_modify_healthcare_element(
                shared.model_copy(update={"note": "by the colleague"})
            )

        if revoke == "by-update":
            revoked = await owner.api.healthcare_element_api.create_or_modify_healthcare_element(
                with_delegation(shared, key, None)
            )
        else:
            revoked = await owner.api.healthcare_element_api.revoke_access_from(shared, colleague.id)
        assert colleague.id not in revoked.readers and revoked.rev != shared.rev
        with pytest.raises(NotFoundError):
            await colleague.api.healthcare_element_api.get_healthcare_element(created.id)
        found = await colleague.api.healthcare_element_api.filter_healthcare_elements_by(
            HealthcareElementByIdsFilter(ids=frozenset({created.id}))
        )
        assert found.rows == []
        await owner.api.healthcare_element_api.create_or_modify_healthcare_element(
            revoked.model_copy(update={"note": "after the revocation"})
        )
        await marker_for(owner, colleague, received)
        assert [e.entity.rev for e in received.of(created.id)] == [shared.rev], "nothing after the revocation"
    finally:
        await connection.close()


async def test_a_delegator_cannot_remove_anothers_delegation_nor_a_server_made_one(
    new_professional: ProfessionalFactory,
) -> None:
    owner, colleague = await new_professional("Owner", "Doctor"), await new_professional("Colleague", "Doctor")
    third = await new_professional("Third", "Doctor")
    key = delegation_key()
    delegation = SecureDelegation(delegator=owner.id, delegate=colleague.id, permissions=AccessLevel.WRITE)
    made = await owner.api.healthcare_element_api.create_or_modify_healthcare_element(
        with_delegation(HealthcareElement(description="Asthma"), key, delegation)
    )
    assert made.id is not None
    # The server's access route (what a client that does not encrypt uses) makes a key-less delegation.
    await owner.api.transport.request(
        "POST", f"/rest/v1/healthcare-elements/{made.id}/access", {"dataOwnerId": third.id}
    )
    created = await owner.api.healthcare_element_api.get_healthcare_element(made.id)
    with pytest.raises(ForbiddenError, match=key):
        await colleague.api.healthcare_element_api.create_or_modify_healthcare_element(
            with_delegation(created, key, None)
        )
    server_key = server_delegation_key(owner.id, third.id)
    assert created.security_metadata is not None and server_key in created.security_metadata.secure_delegations
    with pytest.raises(ForbiddenError, match=server_key):
        await owner.api.healthcare_element_api.create_or_modify_healthcare_element(
            with_delegation(created, server_key, None)
        )
    assert await owner.api.healthcare_element_api.get_healthcare_element(created.id) == created


def key_record(status: KeyStatus = KeyStatus.ACTIVE) -> CryptoKey:
    raw = base64.b64encode(secrets.token_bytes(32)).decode()
    return CryptoKey(id=secrets.token_hex(16), suite=1, encryption_key=raw, signing_key=raw, created=1, status=status)


async def test_only_a_data_owner_publishes_its_keys_and_a_published_key_only_retires(
    new_professional: ProfessionalFactory, admin_api: MedTechApi
) -> None:
    doctor = await new_professional()
    hcp_api = doctor.api.healthcare_professional_api
    mine = await hcp_api.get_healthcare_professional(doctor.id)
    own = list(mine.crypto_keys)  # published by the SDK at its first login
    assert len(own) == 1
    published = key_record()

    with_key = await hcp_api.create_or_modify_healthcare_professional(
        mine.model_copy(update={"crypto_keys": [*own, published]})
    )
    assert with_key.crypto_keys == [*own, published]
    with pytest.raises(ForbiddenError, match=doctor.id):
        await admin_api.healthcare_professional_api.create_or_modify_healthcare_professional(
            with_key.model_copy(update={"crypto_keys": [*own, published, key_record()]})
        )
    with pytest.raises(ValidationError, match=published.id):
        await hcp_api.create_or_modify_healthcare_professional(with_key.model_copy(update={"crypto_keys": own}))
    changed = published.model_copy(update={"created": 2})
    with pytest.raises(ValidationError, match=published.id):
        await hcp_api.create_or_modify_healthcare_professional(
            with_key.model_copy(update={"crypto_keys": [*own, changed]})
        )
    with pytest.raises(ForbiddenError, match="cryptoKeys"):
        await admin_api.healthcare_professional_api.create_or_modify_healthcare_professional(
            HealthcareProfessional(last_name="Keyed", crypto_keys=[key_record()])
        )

    retired = published.model_copy(update={"status": KeyStatus.RETIRED})
    rotated = await hcp_api.create_or_modify_healthcare_professional(
        with_key.model_copy(update={"crypto_keys": [*own, retired, new := key_record()]})
    )
    assert rotated.crypto_keys == [*own, retired, new]
    renamed = await admin_api.healthcare_professional_api.create_or_modify_healthcare_professional(
        rotated.model_copy(update={"speciality": "cardiology"})
    )
    assert renamed.crypto_keys == [*own, retired, new], "keys sent back unchanged are anyone's to send"


async def test_exchange_data_is_made_by_its_delegator_read_by_both_parties_and_found_by_them(
    new_professional: ProfessionalFactory,
) -> None:
    owner, colleague = await new_professional("Owner", "Doctor"), await new_professional("Colleague", "Doctor")
    stranger = await new_professional("Stranger", "Doctor")
    received = Recorder()
    connection = await colleague.api.exchange_data_api.subscribe_to_exchange_data_events(
        ALL_TYPES, ExchangeDataByDelegateFilter(delegate_id=colleague.id), received
    )
    try:
        key_id = secrets.token_hex(16)
        sent = ExchangeData(
            delegator=owner.id,
            delegate=colleague.id,
            exchange_key={key_id: BLOB},
            access_control_secret={key_id: BLOB},
            delegator_signature={key_id: BLOB},
        )
        with pytest.raises(ForbiddenError, match=owner.id):
            await colleague.api.exchange_data_api.create_or_modify_exchange_data(sent)
        created = await owner.api.exchange_data_api.create_or_modify_exchange_data(sent)
        assert created.id is not None and created.readers == {owner.id, colleague.id}
        assert created.exchange_key == {key_id: BLOB}

        assert await colleague.api.exchange_data_api.get_exchange_data(created.id) == created
        with pytest.raises(NotFoundError):
            await stranger.api.exchange_data_api.get_exchange_data(created.id)
        by_delegator = ExchangeDataByDelegatorFilter(delegator_id=owner.id)
        assert await colleague.api.exchange_data_api.match_exchange_data_by(by_delegator) == [created.id]
        assert await stranger.api.exchange_data_api.match_exchange_data_by(by_delegator) == []
        await received.wait_until(lambda events: any(e.entity.id == created.id for e in events), "its CREATE")

        second_key = secrets.token_hex(16)
        wrapped = await colleague.api.exchange_data_api.create_or_modify_exchange_data(
            created.model_copy(update={"exchange_key": {key_id: BLOB, second_key: BLOB}})
        )
        assert set(wrapped.exchange_key) == {key_id, second_key}, "the delegate adds wraps for its new key"
        with pytest.raises(ConflictError, match="delegate"):
            await owner.api.exchange_data_api.create_or_modify_exchange_data(
                wrapped.model_copy(update={"delegate": stranger.id})
            )
        with pytest.raises(ValidationError, match="shared"):
            await owner.api.exchange_data_api.give_access_to(wrapped, stranger.id)
        assert await owner.api.exchange_data_api.get_exchange_data(created.id) == wrapped
    finally:
        await connection.close()


async def test_the_crypto_configuration_is_public(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        answer = await http.get("/rest/v1/crypto/configuration")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["suites"] == [1] and body["requireEncryption"] is False
    assert "firstName" in body["encryptedFields"]["Patient"] and body["encryptedFields"]["User"] == []


async def test_without_required_encryption_fields_in_clear_and_name_filters_are_accepted(
    new_professional: ProfessionalFactory,
) -> None:
    doctor = await new_professional()
    patient = await doctor.api.patient_api.create_or_modify_patient(Patient(first_name="Clear", last_name="Text"))
    assert patient.first_name == "Clear"


async def _subscribe_answer(url: str, token: str, filter: dict[str, Any]) -> dict[str, Any]:
    async with connect(ws_url(url), proxy=None, open_timeout=WAIT) as websocket:
        await websocket.send(orjson.dumps({"type": "auth", "token": token}).decode())
        subscribe = {"type": "subscribe", "id": "s1", "entity": "Patient", "events": ["CREATE"], "filter": filter}
        await websocket.send(orjson.dumps(subscribe).decode())
        while True:
            frame: dict[str, Any] = orjson.loads(await websocket.recv())
            if frame.get("id") == "s1":
                return frame


async def test_with_required_encryption_clear_fields_and_filters_on_them_are_refused(tmp_path: Path) -> None:
    async with dedicated_server(tmp_path, require_encryption=True) as server:
        admin = await server.admin_api()
        try:
            async with httpx.AsyncClient(base_url=server.url) as http:
                configuration = (await http.get("/rest/v1/crypto/configuration")).json()
            assert configuration["requireEncryption"] is True

            clear_id = f"clear-{uuid.uuid4().hex[:8]}"
            with pytest.raises(ValidationError, match="firstName"):
                await admin.patient_api.create_or_modify_patient(Patient(id=clear_id, first_name="John"))
            ssin_token = token(bytes(32), "ssin", "85073003328")
            fine = Patient(date_of_birth=19850730, encrypted_self=BLOB, blind_index={"ssin": [ssin_token]})
            with pytest.raises(ValidationError, match=r"Patient \[1\]: lastName, note"):
                await admin.patient_api.create_or_modify_patients([fine, Patient(last_name="Snow", note="x")])
            with pytest.raises(ValidationError, match="ssin"):
                await admin.patient_api.create_or_modify_patient(Patient(ssin="85073003328", encrypted_self=BLOB))
            assert await admin.patient_api.list_page() == [], "nothing of the refused writes was stored"
            stored = await admin.patient_api.create_or_modify_patient(fine)
            assert stored.encrypted_self == BLOB and stored.blind_index == {"ssin": [ssin_token]}

            fuzzy = {
                "$type": "PatientByHealthcarePartyNameContainsFuzzyFilter",
                "healthcarePartyId": "h",
                "searchString": "jo",
            }
            with pytest.raises(ValidationError, match="firstName"):
                await admin.patient_api.filter_patients_by(fuzzy)
            with pytest.raises(ValidationError, match="lastName"):
                await admin.patient_api.match_patients_by(fuzzy)
            by_ssin = {"$type": "PatientByHealthcarePartySsinsFilter", "healthcarePartyId": "h", "ssins": ["1"]}
            with pytest.raises(ValidationError, match="ssin"):
                await admin.patient_api.match_patients_by(by_ssin)
            by_token = {
                "$type": "PatientByHealthcarePartyBlindIndexFilter",
                "healthcarePartyId": "h",
                "field": "ssin",
                "tokens": [ssin_token],
            }
            assert await admin.patient_api.match_patients_by(by_token) == []  # stored, but not shared with "h"

            token_ = await admin.transport.access_token()
            refused = await _subscribe_answer(server.url, token_, fuzzy)
            assert refused["type"] == "error" and "firstName" in refused["message"], refused
            refused = await _subscribe_answer(server.url, token_, by_ssin)
            assert refused["type"] == "error" and "ssin" in refused["message"], refused
            accepted = await _subscribe_answer(server.url, token_, by_token)
            assert accepted["type"] == "subscribed", accepted
        finally:
            await admin.close()
