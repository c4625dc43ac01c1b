"""Schemathesis over every operation of the app's own OpenAPI document, against a real server on SQLite with the
default settings (end-to-end encryption required): for
generated requests, as an anonymous caller, a healthcare professional and an admin, no answer is a 5xx, and
every answer (its status, content type, headers and body) is one the document describes; and what another data owner
stored is unchanged after it all.

A few examples per operation keep this to about a minute of the suite; the PostgreSQL server is left out, since
what is fuzzed here (routing, validation, error answers, the document) does not depend on the database."""

from __future__ import annotations

import asyncio
import queue
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from medstream.crypto import EntityKey, encrypt_fields
from medstream.model.encrypted_fields import ENCRYPTED_FIELDS
from medstream.server.app import create_app
from medstream.server.runner import start_server
from medstream.server.settings import Settings
from tests.conftest import ADMIN_LOGIN, ADMIN_PASSWORD

EXAMPLES_PER_OPERATION = 6
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# Schemathesis's coverage phase builds thousands of deterministic cases per entity body before a test starts
# (minutes for this document): random generation alone, a few examples per operation.
CONFIG = SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}}})
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi(), config=CONFIG)


def _serve(settings: Settings, ready: queue.Queue[Any], stop: threading.Event) -> None:
    """Run a server in this thread's own event loop until `stop` is set."""

    async def run() -> None:
        server, task, url = await start_server(settings)
        ready.put(url)
        await asyncio.to_thread(stop.wait)
        server.should_exit = True
        await task

    asyncio.run(run())


def _token(http: httpx.Client, login: str, password: str) -> str:
    response = http.post("/rest/v1/auth/login", json={"username": login, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


Callers = tuple[str, list[dict[str, str]], "Bystander"]


def _encrypted(entity_type: str, wire: dict[str, Any]) -> dict[str, Any]:
    """`wire` as an encrypting client sends it: a new id, and its encrypted fields in `encryptedSelf` under a new
    entity key."""
    return encrypt_fields(
        {"id": str(uuid.uuid4()), **wire}, entity_type, ENCRYPTED_FIELDS[entity_type], EntityKey.generate()
    )


class Bystander:
    """A professional who is not among the fuzzing callers, with a patient, a data sample and a key vault of its
    own."""

    def __init__(self, http: httpx.Client, as_admin: dict[str, str]) -> None:
        hcp = http.post("/rest/v1/healthcare-professionals", json={"lastName": "Bystander"}, headers=as_admin).json()
        login, password = f"bystander-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        user = {"login": login, "password": password, "healthcarePartyId": hcp["id"]}
        assert http.post("/rest/v1/users", json=user, headers=as_admin).status_code == 200
        self.login, self.password = login, password
        headers = {"Authorization": f"Bearer {_token(http, login, password)}"}
        patient = http.post("/rest/v1/patients", json=_encrypted("Patient", {"lastName": "Untouched"}), headers=headers)
        assert patient.status_code == 200, patient.text
        content = _encrypted("DataSample", {"content": {"en": {"stringValue": "untouched"}}})
        sample = http.post(f"/rest/v1/patients/{patient.json()['id']}/data-samples", json=content, headers=headers)
        assert sample.status_code == 200, sample.text
        self.stored = {"patients": patient.json(), "data-samples": sample.json(), "healthcare-professionals": hcp}
        self.vault = http.put("/rest/v1/keyvault", json={"blob": "YnlzdGFuZGVy"}, headers=headers).json()

    def read_back(self, http: httpx.Client) -> tuple[dict[str, Any], Any]:
        headers = {"Authorization": f"Bearer {_token(http, self.login, self.password)}"}
        entities = {
            collection: http.get(f"/rest/v1/{collection}/{entity['id']}", headers=headers).json()
            for collection, entity in self.stored.items()
        }
        return entities, http.get("/rest/v1/keyvault", headers=headers).json()


@pytest.fixture(scope="module")
def callers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callers]:
    """The server's URL, the headers of an anonymous caller, a professional and an admin, and a bystander."""
    database = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    settings = Settings(
        port=0, database_url=f"sqlite:///{database}", admin_login=ADMIN_LOGIN, admin_password=ADMIN_PASSWORD
    )
    ready: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(settings, ready, stop), name="fuzzed-server", daemon=True)
    thread.start()
    try:
        url = ready.get(timeout=30)
        with httpx.Client(base_url=url, timeout=30) as http:
            admin = _token(http, ADMIN_LOGIN, ADMIN_PASSWORD)
            as_admin = {"Authorization": f"Bearer {admin}"}
            hcp = http.post("/rest/v1/healthcare-professionals", json={"lastName": "Fuzz"}, headers=as_admin).json()
            login, password = f"fuzz-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
            user = {"login": login, "password": password, "healthcarePartyId": hcp["id"]}
            assert http.post("/rest/v1/users", json=user, headers=as_admin).status_code == 200
            professional = _token(http, login, password)
            bystander = Bystander(http, as_admin)
        yield url, [{}, {"Authorization": f"Bearer {professional}"}, as_admin], bystander
    finally:
        stop.set()
        thread.join(timeout=30)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_5xx_and_every_answer_as_documented(case: Any, callers: Callers) -> None:
    url, headers, _bystander = callers
    for caller in headers:
        case.call_and_validate(base_url=url, headers=caller, checks=CHECKS)


def test_the_fuzzed_document_is_the_served_one(callers: Callers) -> None:
    url, _headers, _bystander = callers
    served = httpx.get(f"{url}/openapi.json", timeout=30).json()
    assert served == schema.raw_schema


def test_what_another_data_owner_stored_is_unchanged_after_the_fuzzing(callers: Callers) -> None:
    """Runs after the fuzzing (tests run in file order): the bystander reads each of its entities back as stored."""
    url, _headers, bystander = callers
    with httpx.Client(base_url=url, timeout=30) as http:
        assert bystander.read_back(http) == (bystander.stored, bystander.vault)
    assert bystander.vault["blob"] == "YnlzdGFuZGVy"
