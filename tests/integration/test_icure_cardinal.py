"""iCure's own client, cardinal-sdk 2.14.0 (Python 3.12), unchanged (strict JSON), runs iCure's guide "Subscribing
to iCure events" against a real Medstream server with the default settings (encryption required), on SQLite and
PostgreSQL. The client adds to cardinal's default `EncryptedFieldsConfiguration` the fields the server requires
encrypted, read from `GET /rest/v1/crypto/configuration` (`icureEncryptedFields`); with cardinal's default
configuration alone, that server refuses its patient, saying which fields and how to encrypt them, and a server
with the requirement turned off takes it.

The professional and their user are made the Medstream way (the admin API); the client logs in, makes and
publishes its key pair, creates John Snow with the note 'Winter is coming', subscribes to services tagged
IC-TEST/TEST, writes an untagged service then a tagged one, and must receive exactly one event, which it
decrypts to 'Hello world'; it then modifies that contact (the service's content becomes 'Hello again') and must
receive exactly one UPDATE, which it decrypts. A second run with the same key store reuses its keys and exchange
data.

A second client subscribes to its patients and receives a patient's creation, change and deletion, and, with a
combinator of patient filters, exactly the events of the patients it selects. Two professionals, each with a
client, share a patient and a contact (`tests/icure_clients/sharing.py`), and write, subscribe to and share health
elements (`tests/icure_clients/health_elements.py`).

The client runs in a virtual environment of its own (`cardinal_python`), made once per checkout under
`.venv/cardinal-sdk-2.14.0` with pyenv's Python 3.12; without that Python the test is skipped, except in CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.conftest import Doctor, RunningServer, new_doctor, serve
from tests.locks import one_at_a_time

CARDINAL_VERSION = "2.14.0"
ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv" / f"cardinal-sdk-{CARDINAL_VERSION}"
GUIDE = ROOT / "tests" / "icure_clients" / "guide.py"
PATIENTS = ROOT / "tests" / "icure_clients" / "patients.py"
# One run of the guide takes a few seconds. The client's native library has been seen to stall or crash (SIGSEGV)
# while it sets up its crypto, after requests the server had all answered, on a loaded machine: a run that stalls
# past RUN_SECONDS or is killed by a signal is run again with the same key store, at most ATTEMPTS times in all.
# Any other failure fails the test at once, with the output.
RUN_SECONDS = 45
ATTEMPTS = 3


def _python_312() -> Path | None:
    found = sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python"))
    return found[-1] if found else None


@pytest.fixture(scope="session")
def cardinal_python() -> Path:
    """The Python of a virtual environment holding cardinal-sdk, made once (it is 148 MB to install)."""
    python = VENV / "bin" / "python"
    ready = VENV / "installed"
    with one_at_a_time(VENV.with_name(f"{VENV.name}.lock")):  # the suite's workers wait for the one installing
        if ready.exists():
            return python
        base = _python_312()
        if base is None:
            if os.environ.get("CI") == "true":
                pytest.fail("cardinal-sdk needs Python 3.12, and pyenv has none (~/.pyenv/versions/3.12*)")
            pytest.skip("cardinal-sdk needs Python 3.12, and pyenv has none (~/.pyenv/versions/3.12*)")
        subprocess.run([str(base), "-m", "venv", "--clear", str(VENV)], check=True, capture_output=True)
        install = [str(python), "-m", "pip", "install", "--quiet", f"cardinal-sdk=={CARDINAL_VERSION}"]
        done = subprocess.run(install, capture_output=True, text=True)
        assert done.returncode == 0, f"installing cardinal-sdk failed:\n{done.stdout}\n{done.stderr}"
        ready.write_text(CARDINAL_VERSION)
        return python


async def _run_once(python: Path, script: Path, config: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The guide's JSON result (None if it stalled or was killed by a signal) and everything it printed."""
    process = await asyncio.create_subprocess_exec(
        str(python),
        str(script),
        json.dumps(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), RUN_SECONDS)
    except TimeoutError:
        process.kill()
        output, _ = await process.communicate()
        return None, output.decode(errors="replace")
    text = output.decode(errors="replace")
    if process.returncode is not None and process.returncode < 0:
        return None, f"killed by signal {-process.returncode}\n{text}"
    lines = [line for line in text.splitlines() if line.startswith("{")]
    return (json.loads(lines[-1]) if lines else {"error": "no result printed"}), text


async def run_client(python: Path, config: dict[str, Any], script: Path = GUIDE) -> dict[str, Any]:
    outputs: list[str] = []
    for _ in range(ATTEMPTS):
        result, output = await _run_once(python, script, config)
        outputs.append(output)
        if result is not None:
            assert "error" not in result, f"the guide failed: {result.get('traceback') or result}"
            result["attempts"] = len(outputs)
            return result
    raise AssertionError(f"the client stalled or crashed {ATTEMPTS} times; its output:\n" + "\n---\n".join(outputs))


@pytest_asyncio.fixture(scope="module", params=["sqlite", "postgresql"])
async def default_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    """A server with the default settings: it requires encryption."""
    async with serve(request.param, tmp_path_factory.mktemp(f"default-{request.param}")) as running:
        yield running


@contextlib.asynccontextmanager
async def admin_http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        login = {"username": server.admin_login, "password": server.admin_password}
        token = (await client.post("/rest/v1/auth/login", json=login)).json()["token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


async def _get(client: httpx.AsyncClient, path: str) -> Any:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


async def _exchange_data_of(client: httpx.AsyncClient, owner: str) -> list[str]:
    match = {"$type": "ExchangeDataByDelegatorFilter", "delegatorId": owner}
    response = await client.post("/rest/v1/exchange-data/match", json=match)
    assert response.status_code == 200, response.text
    ids: list[str] = response.json()
    return ids


def _check_guide(result: dict[str, Any], doctor: Doctor) -> None:
    assert result["user"] == {"login": doctor.login, "healthcarePartyId": doctor.id}
    patient = result["patient"]
    assert (patient["firstName"], patient["lastName"], patient["note"]) == ("John", "Snow", "Winter is coming")
    assert result["connected"][0] == "Connected"
    assert result["settled"], f"no probe came back as an event: {result}"
    written = result["written"]
    assert written["tagged_contact_services"] == [written["tagged"]]
    # Exactly one event, the tagged service's, which the client decrypted; none for the untagged one.
    assert result["events"] == [
        {
            "id": written["tagged"],
            "contactId": written["tagged_contact"],
            "tags": ["IC-TEST|TEST"],
            "content": {"en": "Hello world"},
        }
    ]
    # The contact modified (cardinal's modify_contact, PUT /rest/v2/contact): one UPDATE, its service, decrypted.
    assert result["modified_contact"]["rev"].startswith("2-")
    assert result["modified_contact"]["services"] == [{"en": "Hello again"}]
    assert result["modified_events"] == [
        {
            "id": written["tagged"],
            "contactId": written["tagged_contact"],
            "tags": ["IC-TEST|TEST"],
            "content": {"en": "Hello again"},
        }
    ]
    # The filter selects the tagged service (among the probes) and not the untagged one; both read back decrypted.
    assert written["tagged"] in result["matched"] and written["untagged"] not in result["matched"]
    assert result["read_back"] == {written["tagged"]: {"en": "Hello again"}, written["untagged"]: {"en": "Not for you"}}
    assert result["close_reason"] == "IntentionallyClosed"


async def _run_guide_twice(
    server: RunningServer, doctor: Doctor, config: dict[str, Any], python: Path
) -> dict[str, Any]:
    """The guide, then again with the same key store, which reuses the keys and the exchange data."""
    async with admin_http(server) as admin:
        before = await _get(admin, f"/rest/v1/healthcare-professionals/{doctor.id}")
        assert "publicKeysForOaepWithSha256" not in before

        first = await run_client(python, config)
        _check_guide(first, doctor)

        # The client published its RSA public key on the professional, beside Medstream's own key records.
        hcp = await _get(admin, f"/rest/v1/healthcare-professionals/{doctor.id}")
        assert 1 <= len(hcp["publicKeysForOaepWithSha256"]) <= first["attempts"]
        exchange_data = await _exchange_data_of(admin, doctor.id)
        assert 1 <= len(exchange_data) <= first["attempts"]

        second = await run_client(python, config)
        _check_guide(second, doctor)
        assert await _get(admin, f"/rest/v1/healthcare-professionals/{doctor.id}") == hcp
        assert await _exchange_data_of(admin, doctor.id) == exchange_data
    return first


async def _stored(server: RunningServer, path: str) -> dict[str, Any]:
    async with admin_http(server) as admin:
        found: dict[str, Any] = await _get(admin, path)
    return found


async def test_cardinal_runs_the_events_guide_on_a_default_server(
    default_server: RunningServer, cardinal_python: Path, tmp_path: Path
) -> None:
    """With the fields the server requires encrypted added to its configuration, cardinal runs the guide; the
    server holds the patient's names and the service's content only in encryptedSelf."""
    doctor = await new_doctor(default_server)
    first = await _run_guide_twice(default_server, doctor, doctor.config(default_server, tmp_path), cardinal_python)

    stored_patient = await _stored(default_server, f"/rest/v1/patients/{first['patient']['id']}")
    clear = {name: stored_patient.get(name) for name in ("firstName", "lastName", "names", "note")}
    assert clear == {"firstName": None, "lastName": None, "names": [], "note": None}, stored_patient
    assert stored_patient["encryptedSelf"]
    sample = await _stored(default_server, f"/rest/v1/data-samples/{first['written']['tagged']}")
    assert sample["batchId"] == first["written"]["tagged_contact"]
    assert sample["labels"] == [{"id": "IC-TEST|TEST|1", "type": "IC-TEST", "code": "TEST", "version": "1"}]
    assert sample["content"] == {} and sample["encryptedSelf"] and sample["secretForeignKeys"]
    assert doctor.id in {d["delegate"] for d in sample["securityMetadata"]["secureDelegations"].values()}


async def test_cardinal_with_its_default_configuration_is_refused_by_a_default_server(
    default_server: RunningServer, cardinal_python: Path, tmp_path: Path
) -> None:
    """Cardinal's default configuration sends a patient's names in clear: the server refuses the patient with a
    400 naming them and the option that encrypts them, and stores nothing."""
    doctor = await new_doctor(default_server)
    config = doctor.config(default_server, tmp_path, encryption="default")
    result, output = await _run_once(cardinal_python, GUIDE, config)
    assert result is not None, output
    error = result.get("error", "")
    assert "400" in error and "firstName, lastName" in error, result
    assert "EncryptedFieldsConfiguration(patient=" in error and "icureEncryptedFields" in error, result
    assert "patient" not in result  # the creation failed
    async with httpx.AsyncClient(base_url=default_server.url, timeout=30) as client:
        login = {"username": doctor.login, "password": doctor.password}
        token = (await client.post("/rest/v2/auth/login", json=login)).json()["token"]
        found = await client.get(
            f"/rest/v2/patient/{result['patient_id']}", headers={"Authorization": f"Bearer {token}"}
        )
        assert found.status_code == 404, found.text


async def test_cardinal_with_its_default_configuration_runs_the_guide_without_the_requirement(
    server: RunningServer, cardinal_python: Path, tmp_path: Path
) -> None:
    """On a server with the requirement turned off, cardinal's default configuration works: the server then holds
    the names in clear (cardinal's default), the note encrypted."""
    doctor = await new_doctor(server)
    config = doctor.config(server, tmp_path, encryption="default")
    first = await _run_guide_twice(server, doctor, config, cardinal_python)

    stored_patient = await _stored(server, f"/rest/v1/patients/{first['patient']['id']}")
    assert (stored_patient["firstName"], stored_patient["lastName"]) == ("John", "Snow")
    assert "note" not in stored_patient and stored_patient["encryptedSelf"]
    sample = await _stored(server, f"/rest/v1/data-samples/{first['written']['tagged']}")
    assert sample["content"] == {} and sample["encryptedSelf"]
    contact = await _stored(server, f"/rest/v1/contacts/{first['written']['tagged_contact']}")
    assert contact["dataSampleIds"] == [first["written"]["tagged"]]


async def test_cardinal_receives_patient_events_from_a_default_server(
    default_server: RunningServer, cardinal_python: Path, tmp_path: Path
) -> None:
    """A patient subscription (cardinal asks for CREATE and UPDATE): its creation, the change of its note and its
    deletion, which iCure shows as an update with `deletionDate`, each decrypted. A subscription with cardinal's
    `difference(union(women, born in the sixties), women knights)` receives exactly the creations and changes of
    the patients that combination selects."""
    doctor = await new_doctor(default_server)
    result = await run_client(cardinal_python, doctor.config(default_server, tmp_path), PATIENTS)
    assert result["connected"] == "Connected" and result["settled"], result
    created, changed, deleted = result["written"]
    assert result["events"] == [
        {"rev": created, "note": "A girl has no name", "deleted": False},
        {"rev": changed, "note": "Valar morghulis", "deleted": False},
        {"rev": deleted, "note": "Valar morghulis", "deleted": True},
    ]
    assert result["combined_connected"] == "Connected", result
    cersei, queen, ned = result["combined_written"]
    assert result["combined"] == [["Cersei", cersei], ["Ned", ned], ["Cersei", queen]]


SHARING = ROOT / "tests" / "icure_clients" / "sharing.py"


async def _two_doctors(server: RunningServer, tmp_path: Path) -> tuple[Doctor, Doctor, dict[str, Any]]:
    """Professionals A and B, and the configuration of a script that runs a client of each, each with its key
    store."""
    a, b = await new_doctor(server), await new_doctor(server)
    config: dict[str, Any] = {"url": server.url}
    for name, doctor in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        config[name] = {"login": doctor.login, "password": doctor.password, "storage": str(tmp_path / name)}
    return a, b, config


async def test_cardinal_shares_between_two_professionals(
    default_server: RunningServer, cardinal_python: Path, tmp_path: Path
) -> None:
    """Two professionals, each with a cardinal client: B reads nothing of A's and receives no event of it until A
    shares the patient and the contact (cardinal's `share_with`); then B reads them decrypted and receives the
    events of what A shares with it, and never of what A keeps."""
    server = default_server
    a, b, config = await _two_doctors(server, tmp_path)
    result = await run_client(cardinal_python, config, SHARING)
    assert result["connected"] == "Connected" and result["settled"], result
    written = result["written"]
    assert result["before"] == {"patient": None, "contact": None, "service": None}
    assert written["first"] not in result["matched_before"]

    # The share rewrites the contact's services (an UPDATE each), and the contact made for B too is a CREATE:
    # B receives both, decrypted, and nothing of the contact A kept.
    assert sorted((e["id"], e["contactId"], e["content"]["en"]) for e in result["events"]) == sorted(
        [
            (written["first"], written["first_contact"], "Shared later"),
            (written["for_b"], written["for_b_contact"], "For both of us"),
        ]
    )
    assert result["after"] == {
        "patient": {"lastName": "Stark", "note": "Lady of Winterfell"},
        "contact": [{"en": "Shared later"}],
        "service": {"en": "Shared later"},
    }
    assert result["kept_read"] is None
    assert {written["first"], written["for_b"]} <= set(result["matched"])
    assert written["kept"] not in result["matched"]

    # What the server holds: A's delegation to B, made by A, with the exchange data A made for B.
    async with admin_http(server) as admin:
        sample = await _get(admin, f"/rest/v1/data-samples/{written['first']}")
        to_b = [d for d in sample["securityMetadata"]["secureDelegations"].values() if d["delegate"] == b.id]
        assert len(to_b) == 1 and to_b[0]["delegator"] == a.id and to_b[0]["encryptionKeys"]
        exchange = await _get(admin, f"/rest/v1/exchange-data/{to_b[0]['exchangeDataId']}")
        assert (exchange["delegator"], exchange["delegate"]) == (a.id, b.id)
        kept = await _get(admin, f"/rest/v1/data-samples/{written['kept']}")
        assert b.id not in {d["delegate"] for d in kept["securityMetadata"]["secureDelegations"].values()}


HEALTH_ELEMENTS = ROOT / "tests" / "icure_clients" / "health_elements.py"


def _notes(events: list[dict[str, Any]], element_id: str) -> list[tuple[str, str, bool]]:
    return [(e["rev"], e["note"], e["deleted"]) for e in events if e.get("id") == element_id]


async def test_cardinal_health_elements_events_and_sharing(
    default_server: RunningServer, cardinal_python: Path, tmp_path: Path
) -> None:
    """Health elements, with two professionals' clients in one run: A's subscriptions "for self" and "by tag for
    self" receive the creation, change and deletion (an update with `deletionDate`) of a tagged health element,
    decrypted, and only the first one an untagged one; B reads, matches and receives nothing of A's until A shares
    the untagged one, then reads it decrypted, finds it with its filter and receives its UPDATE."""
    server = default_server
    a, b, config = await _two_doctors(server, tmp_path)
    result = await run_client(cardinal_python, config, HEALTH_ELEMENTS)
    assert result["connected"] == ["Connected"] * 3 and result["settled"] == [True, True], result
    written = result["written"]
    untagged, tagged = written["untagged"], written["tagged"]
    created, shared = written["untagged_revs"]
    tagged_revs = written["tagged_revs"]
    tagged_events = [
        (tagged_revs[0], "Diabetes", False),
        (tagged_revs[1], "Diabetes, insulin", False),
        (tagged_revs[2], "Diabetes, insulin", True),
    ]
    events = result["events"]
    assert all("other" not in e for stream in events.values() for e in stream), events
    # "For self": everything, in the order written (the share is an update).
    assert [e["id"] for e in events["a_all"]] == [untagged, tagged, tagged, tagged, untagged]
    assert _notes(events["a_all"], tagged) == tagged_events
    assert _notes(events["a_all"], untagged) == [(created, "Asthma", False), (shared, "Asthma", False)]
    # "By tag for self": the tagged one only (the untagged one, written first, would have come first).
    assert _notes(events["a_tagged"], tagged) == tagged_events and len(events["a_tagged"]) == 3
    # B: the share's UPDATE of the untagged one, decrypted, and nothing of the tagged one, written before it.
    assert events["b_all"] == [{"id": untagged, "rev": shared, "note": "Asthma", "deleted": False}]

    assert result["before"] == {"untagged": None, "tagged": None}
    assert result["matched_before"] == []
    assert result["after"] == {"untagged": {"note": "Asthma", "descr": "about Asthma", "tags": []}, "tagged": None}
    assert result["matched_after"] == [untagged]
    assert result["filtered_after"] == [[untagged, "Asthma"]]

    # What the server holds: the note and description only encrypted; the tag in clear; A's delegation to B.
    async with admin_http(server) as admin:
        stored = await _get(admin, f"/rest/v1/healthcare-elements/{untagged}")
        assert "note" not in stored and "description" not in stored and stored["encryptedSelf"], stored
        assert stored["secretForeignKeys"] and "patientId" not in stored
        to_b = [d for d in stored["securityMetadata"]["secureDelegations"].values() if d["delegate"] == b.id]
        assert len(to_b) == 1 and to_b[0]["delegator"] == a.id
        gone = await _get(admin, f"/rest/v1/healthcare-elements/{tagged}")
        assert gone["deletionDate"] > 0 and gone["labels"][0]["code"] == "TEST"
