"""Blind-index search through REST and the events socket, on SQLite and PostgreSQL, with encryption required
(and without): entities written with `blindIndex` tokens made by `medstream.crypto.blind_index` are found by
the tokens of a word, a prefix or a value and never by another key's, and filters reading the encrypted fields
in clear are refused naming the field and the blind-index filter to use. Raw HTTP and websocket frames: what
is sent is exactly what the protocol says."""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio

from medstream.crypto.blind_index import name_tokens, token
from medstream.model.blind_index import MAX_TOKENS_PER_FIELD
from medstream.server.runner import start_server
from medstream.server.settings import Settings
from tests.conftest import ADMIN_LOGIN, ADMIN_PASSWORD, RunningServer, database_url_for
from tests.integration.raw_events import WAIT, RawClient, login

INDEX_KEY = secrets.token_bytes(32)
OTHER_KEY = secrets.token_bytes(32)
BLOB = base64.b64encode(b"\x01" + secrets.token_bytes(60)).decode()
SSIN = "85073003328"
MRN = "https://hospital.example/mrn\x00A-1234"  # an identifier's value as indexed: system, 0x00, value


@pytest_asyncio.fixture(scope="module", params=["sqlite", "postgresql"])
async def encrypted_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A server that requires encryption, on each database."""
    async with database_url_for(request.param, tmp_path_factory.mktemp("blind")) as database_url:
        settings = Settings(
            host="127.0.0.1",
            port=0,
            database_url=database_url,
            admin_login=ADMIN_LOGIN,
            admin_password=ADMIN_PASSWORD,
            require_encryption=True,
        )
        server, task, url = await start_server(settings)
        try:
            yield url
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, WAIT)


@dataclass
class Client:
    """An HTTP client logged in as one user; `data_owner_id` is its data owner's."""

    url: str
    token: str
    data_owner_id: str

    async def post(self, path: str, body: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=WAIT) as http:
            return await http.post(path, json=body, headers={"Authorization": f"Bearer {self.token}"})

    async def created(self, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.post(f"/rest/v1/{collection}", body)
        assert response.status_code == 200, response.text
        stored: dict[str, Any] = response.json()
        return stored

    async def match(self, collection: str, filter: dict[str, Any]) -> list[str]:
        response = await self.post(f"/rest/v1/{collection}/match", filter)
        assert response.status_code == 200, response.text
        ids: list[str] = response.json()
        return ids


async def professional(url: str) -> Client:
    """A new professional (professionals' names stay in clear) and a client logged in as their user."""
    admin = Client(url, (await login(url, ADMIN_LOGIN, ADMIN_PASSWORD))["token"], "")
    hcp = await admin.created("healthcare-professionals", {"firstName": "Ann", "lastName": uuid.uuid4().hex[:8]})
    user_login, password = f"hcp-{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
    await admin.created("users", {"login": user_login, "password": password, "healthcarePartyId": hcp["id"]})
    return Client(url, (await login(url, user_login, password))["token"], hcp["id"])


def names_index(*names: str, key: bytes = INDEX_KEY) -> list[str]:
    """The `names` tokens of a patient with these names, as the SDK makes them."""
    return sorted(set().union(*(name_tokens(key, "names", name) for name in names)))


def patient(*names: str, ssin: str, key: bytes = INDEX_KEY) -> dict[str, Any]:
    """A patient as the SDK writes it with encryption: names and ssin only inside encryptedSelf, and tokens."""
    return {
        "id": f"pat-{uuid.uuid4().hex[:12]}",
        "encryptedSelf": BLOB,
        "dateOfBirth": 19850730,
        "blindIndex": {"names": names_index(*names, key=key), "ssin": [token(key, "ssin", ssin)]},
    }


def blind(kind: str, owner: str, field: str, *tokens: str) -> dict[str, Any]:
    return {
        "$type": f"{kind}ByHealthcarePartyBlindIndexFilter",
        "healthcarePartyId": owner,
        "field": field,
        "tokens": list(tokens),
    }


async def test_patients_are_found_by_the_tokens_of_a_word_a_prefix_or_their_ssin_and_not_by_another_key(
    encrypted_url: str,
) -> None:
    doctor = await professional(encrypted_url)
    helene = await doctor.created("patients", patient("Hélène", "Dupré", ssin=SSIN))
    martin = await doctor.created("patients", patient("Jean", "Martin", ssin="90010112345"))
    # Written with another index key: the same names give other tokens.
    other = await doctor.created("patients", patient("Hélène", "Dupré", ssin=SSIN, key=OTHER_KEY))
    assert helene["blindIndex"]["ssin"] == [token(INDEX_KEY, "ssin", SSIN)]

    def names(search: str, key: bytes = INDEX_KEY) -> dict[str, Any]:
        return blind("Patient", doctor.data_owner_id, "names", token(key, "names", search))

    assert await doctor.match("patients", names("helene")) == [helene["id"]]
    assert await doctor.match("patients", names("DUP")) == [helene["id"]]
    assert await doctor.match("patients", names("martin")) == [martin["id"]]
    assert await doctor.match("patients", names("helene", OTHER_KEY)) == [other["id"]]
    assert await doctor.match("patients", names("ene")) == []
    by_ssin = blind("Patient", doctor.data_owner_id, "ssin", token(INDEX_KEY, "ssin", SSIN))
    assert await doctor.match("patients", by_ssin) == [helene["id"]]
    both = blind(
        "Patient", doctor.data_owner_id, "ssin", token(INDEX_KEY, "ssin", SSIN), token(INDEX_KEY, "ssin", "90010112345")
    )
    assert sorted(await doctor.match("patients", both)) == sorted([helene["id"], martin["id"]])
    # The token of the ssin under the names field is another token: fields never mix.
    assert (
        await doctor.match("patients", blind("Patient", doctor.data_owner_id, "names", token(INDEX_KEY, "names", SSIN)))
        == []
    )

    page = (await doctor.post("/rest/v1/patients/filter", {"filter": names("dupre")})).json()
    assert [row["id"] for row in page["rows"]] == [helene["id"]]
    assert page["rows"][0]["blindIndex"] == helene["blindIndex"]
    # Another professional reads none of them, whatever the tokens.
    stranger = await professional(encrypted_url)
    assert (
        await stranger.match("patients", blind("Patient", doctor.data_owner_id, "ssin", token(INDEX_KEY, "ssin", SSIN)))
        == []
    )


async def test_data_samples_and_healthcare_elements_are_found_by_identifier_tokens(encrypted_url: str) -> None:
    doctor = await professional(encrypted_url)
    owner = await doctor.created("patients", patient("Zoé", "Lambert", ssin="70020212345"))
    mrn = token(INDEX_KEY, "identifiers", MRN)
    sample = await doctor.created(
        "data-samples", {"patientId": owner["id"], "encryptedSelf": BLOB, "blindIndex": {"identifiers": [mrn]}}
    )
    await doctor.created("data-samples", {"patientId": owner["id"], "encryptedSelf": BLOB})
    element = await doctor.created(
        "healthcare-elements", {"patientId": owner["id"], "encryptedSelf": BLOB, "blindIndex": {"identifiers": [mrn]}}
    )
    ids = blind("DataSample", doctor.data_owner_id, "identifiers", mrn)
    assert await doctor.match("data-samples", ids) == [sample["id"]]
    elements = blind("HealthcareElement", doctor.data_owner_id, "identifiers", mrn)
    assert await doctor.match("healthcare-elements", elements) == [element["id"]]
    other = blind("HealthcareElement", doctor.data_owner_id, "identifiers", token(OTHER_KEY, "identifiers", MRN))
    assert await doctor.match("healthcare-elements", other) == []


async def test_a_subscription_with_a_blind_index_filter_gets_the_events_of_the_matching_entities(
    encrypted_url: str,
) -> None:
    doctor = await professional(encrypted_url)
    async with RawClient.opened(encrypted_url, doctor.token) as socket:
        filter = blind("Patient", doctor.data_owner_id, "names", token(INDEX_KEY, "names", "helene"))
        answer = await socket.subscribe("s1", "Patient", ("CREATE",), filter)
        assert answer["type"] == "subscribed", answer
        await doctor.created("patients", patient("Jean", "Martin", ssin="90010112345"))
        await doctor.created("patients", patient("Hélène", "Dupré", ssin=SSIN, key=OTHER_KEY))
        helene = await doctor.created("patients", patient("Hélène", "Dupré", ssin=SSIN))
        event = await socket.event_for("s1", helene["id"])
        assert event["entity"]["blindIndex"] == helene["blindIndex"]
        assert [frame["entity"]["id"] for frame in socket.events("s1")] == [helene["id"]], "the others never came"


@pytest.mark.parametrize(
    ("collection", "entity", "filter", "fields", "instead"),
    [
        (
            "patients",
            "Patient",
            {"$type": "PatientByHealthcarePartySsinsFilter", "ssins": [SSIN]},
            "ssin",
            "PatientByHealthcarePartyBlindIndexFilter (ssin with field 'ssin')",
        ),
        (
            "patients",
            "Patient",
            {"$type": "PatientByHealthcarePartyNameContainsFuzzyFilter", "searchString": "helene"},
            "firstName, lastName, maidenName, names, spouseName",
            "with field 'names'",
        ),
        (
            "patients",
            "Patient",
            {"$type": "PatientByHealthcarePartyIdentifiersFilter", "identifiers": [{"value": "A-1234"}]},
            "identifiers",
            "PatientByHealthcarePartyBlindIndexFilter (identifiers with field 'identifiers')",
        ),
        (
            "data-samples",
            "DataSample",
            {"$type": "DataSampleByHealthcarePartyIdentifiersFilter", "identifiers": [{"value": "A-1234"}]},
            "identifiers",
            "DataSampleByHealthcarePartyBlindIndexFilter",
        ),
        (
            "healthcare-elements",
            "HealthcareElement",
            {"$type": "HealthcareElementByHealthcarePartyIdentifiersFilter", "identifiers": [{"value": "A-1234"}]},
            "identifiers",
            "HealthcareElementByHealthcarePartyBlindIndexFilter",
        ),
    ],
)
async def test_clear_filters_on_blind_indexed_fields_are_refused_naming_the_field_and_the_filter_to_use(
    encrypted_url: str, collection: str, entity: str, filter: dict[str, Any], fields: str, instead: str
) -> None:
    doctor = await professional(encrypted_url)
    filter = {**filter, "healthcarePartyId": doctor.data_owner_id}
    response = await doctor.post(f"/rest/v1/{collection}/match", filter)
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert f"cannot read the encrypted field(s) {fields}" in message and instead in message, message
    async with RawClient.opened(encrypted_url, doctor.token) as socket:
        answer = await socket.subscribe("s1", entity, ("CREATE",), filter)
        assert answer["type"] == "error" and instead in answer["message"], answer


async def test_clear_ssin_and_bad_blind_indexes_are_refused_and_nothing_is_stored(encrypted_url: str) -> None:
    doctor = await professional(encrypted_url)
    ident = f"pat-{uuid.uuid4().hex[:12]}"
    refused: list[tuple[dict[str, Any], str]] = [
        ({"ssin": SSIN}, "ssin"),
        ({"identifiers": [{"system": "s", "value": "v"}]}, "identifiers"),
        ({"blindIndex": {"ssin": [SSIN]}}, f"blindIndex.ssin: '{SSIN}' is not a blind-index token"),
        ({"blindIndex": {"ssn": [token(INDEX_KEY, "ssn", SSIN)]}}, "Patient has no blind-index field 'ssn'"),
        (
            {"blindIndex": {"names": [token(INDEX_KEY, "names", str(n)) for n in range(MAX_TOKENS_PER_FIELD + 1)]}},
            f"blindIndex.names holds {MAX_TOKENS_PER_FIELD + 1} tokens, more than {MAX_TOKENS_PER_FIELD}",
        ),
    ]
    for body, message in refused:
        response = await doctor.post("/rest/v1/patients", {"id": ident, "encryptedSelf": BLOB, **body})
        assert response.status_code == 400, response.text
        assert message in response.text, response.text
    everything = {"$type": "PatientByHealthcarePartyFilter", "healthcarePartyId": doctor.data_owner_id}
    assert await doctor.match("patients", everything) == []
    bad_filter = blind("Patient", doctor.data_owner_id, "ssin", SSIN)
    response = await doctor.post("/rest/v1/patients/match", bad_filter)
    assert response.status_code == 400 and "tokens[0]" in response.text, response.text


async def test_the_configuration_announces_the_blind_indexed_fields(encrypted_url: str) -> None:
    async with httpx.AsyncClient(base_url=encrypted_url) as http:
        configuration = (await http.get("/rest/v1/crypto/configuration")).json()
    assert configuration["blindIndexed"]["Patient"] == {
        "ssin": {"index": "equality", "fields": ["ssin"]},
        "identifiers": {"index": "equality", "fields": ["identifiers"]},
        "names": {"index": "words", "fields": ["firstName", "lastName", "maidenName", "spouseName", "names"]},
    }
    assert configuration["blindIndexed"]["DataSample"] == {
        "identifiers": {"index": "equality", "fields": ["identifiers"]}
    }
    assert "HealthcareProfessional" not in configuration["blindIndexed"]
    assert {"ssin", "identifiers"} <= set(configuration["encryptedFields"]["Patient"])


async def test_without_required_encryption_blind_index_filters_work_beside_clear_fields(server: RunningServer) -> None:
    doctor = await professional(server.url)
    helene = await doctor.created(
        "patients",
        {
            "firstName": "Hélène",
            "lastName": "Dupré",
            "ssin": SSIN,
            "blindIndex": {"names": names_index("Hélène Dupré")},
        },
    )
    found = blind("Patient", doctor.data_owner_id, "names", token(INDEX_KEY, "names", "DUP"))
    assert await doctor.match("patients", found) == [helene["id"]]
    fuzzy = {
        "$type": "PatientByHealthcarePartyNameContainsFuzzyFilter",
        "healthcarePartyId": doctor.data_owner_id,
        "searchString": "helene",
    }
    assert await doctor.match("patients", fuzzy) == [helene["id"]]
