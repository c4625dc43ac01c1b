"""iCure's JavaScript client, the npm package @icure/cardinal-sdk 1.0.0-RC.7 under Node.js, unchanged and with its
default settings (strict JSON), runs iCure's guide "Subscribing to iCure events" against a real Medstream server
with the default settings (encryption required), on SQLite and PostgreSQL: the same steps and the same checks as
the Python client's (`test_icure_cardinal.py`), then again with the same key store, which reuses its keys and
exchange data. Like the Python client, it adds to cardinal's default encrypted fields those the server requires
encrypted, read from `GET /rest/v1/crypto/configuration` (`icureEncryptedFields`).

This client needs a group: it lists the user's groups (`GET /rest/v2/user/matches`) and enters the one it finds
(`POST /rest/v2/auth/switch/{groupId}`) before anything else, which Medstream answers with its one group.

The package is installed with npm once per checkout under `.venv/cardinal-sdk-js-1.0.0-RC.7` (`cardinal_js`);
without node and npm the test is skipped, except in CI.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningServer, new_doctor
from tests.integration.test_icure_cardinal import (
    _check_guide,
    _exchange_data_of,
    _get,
    admin_http,
    default_server,
)
from tests.locks import one_at_a_time

__all__ = ["default_server"]  # the fixture, shared with the Python client's test

CARDINAL_JS_VERSION = "1.0.0-RC.7"
ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / ".venv" / f"cardinal-sdk-js-{CARDINAL_JS_VERSION}"
GUIDE = ROOT / "tests" / "icure_clients" / "guide.mjs"
# One run of the guide takes a few seconds. A run that stalls past RUN_SECONDS (the client has been seen to hang
# on a socket it lost) or is killed by a signal is run again with the same key store, at most ATTEMPTS times in
# all. Any other failure fails the test at once, with the client's output.
RUN_SECONDS = 45
ATTEMPTS = 3


def _tools() -> tuple[str, str] | None:
    node, npm = shutil.which("node"), shutil.which("npm")
    return (node, npm) if node and npm else None


@pytest.fixture(scope="session")
def cardinal_js() -> tuple[str, Path]:
    """node, and the directory of an npm install of @icure/cardinal-sdk, made once (it is about 60 MB)."""
    tools = _tools()
    if tools is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the JavaScript cardinal-sdk needs node and npm on the PATH")
        pytest.skip("the JavaScript cardinal-sdk needs node and npm on the PATH")
    node, npm = tools
    ready = INSTALL / "installed"
    with one_at_a_time(INSTALL.with_name(f"{INSTALL.name}.lock")):  # the suite's workers wait for the one installing
        if not ready.exists():
            INSTALL.mkdir(parents=True, exist_ok=True)
            install = [npm, "install", "--prefix", str(INSTALL), "--no-audit", "--no-fund"]
            package = f"@icure/cardinal-sdk@{CARDINAL_JS_VERSION}"
            done = subprocess.run([*install, package], capture_output=True, text=True)
            assert done.returncode == 0, f"installing @icure/cardinal-sdk failed:\n{done.stdout}\n{done.stderr}"
            ready.write_text(CARDINAL_JS_VERSION)
    return node, INSTALL


async def _run_once(node: str, config: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The guide's JSON result (None if it stalled or was killed by a signal) and everything it printed."""
    process = await asyncio.create_subprocess_exec(
        node, str(GUIDE), json.dumps(config), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), RUN_SECONDS)
    except TimeoutError:
        process.kill()
        output, _ = await process.communicate()
        return None, f"stalled for {RUN_SECONDS} s\n{output.decode(errors='replace')}"
    text = output.decode(errors="replace")
    if process.returncode is not None and process.returncode < 0:
        return None, f"killed by signal {-process.returncode}\n{text}"
    lines = [line for line in text.splitlines() if line.startswith("{")]
    return (json.loads(lines[-1]) if lines else {"error": "no result printed"}), text


async def run_guide(node: str, config: dict[str, Any]) -> dict[str, Any]:
    outputs: list[str] = []
    for _ in range(ATTEMPTS):
        result, output = await _run_once(node, config)
        outputs.append(output)
        if result is not None:
            assert "error" not in result, f"the guide failed: {result.get('traceback') or result}\n{output}"
            result["attempts"] = len(outputs)
            return result
    raise AssertionError(f"the client stalled or crashed {ATTEMPTS} times; its output:\n" + "\n---\n".join(outputs))


async def test_cardinal_js_runs_the_events_guide_on_a_default_server(
    default_server: RunningServer, cardinal_js: tuple[str, Path], tmp_path: Path
) -> None:
    """With the fields the server requires encrypted added to its configuration, the JavaScript client runs the
    guide twice; the server holds the patient's names and the service's content only in encryptedSelf."""
    server = default_server
    node, sdk = cardinal_js
    doctor = await new_doctor(server)
    config = {
        "url": server.url,
        "login": doctor.login,
        "password": doctor.password,
        "storage": str(tmp_path),
        "sdk": str(sdk),
    }
    async with admin_http(server) as admin:
        before = await _get(admin, f"/rest/v1/healthcare-professionals/{doctor.id}")
        assert "publicKeysForOaepWithSha256" not in before

        result = await run_guide(node, config)
        _check_guide(result, doctor)
        # Cardinal's defaults, then the server's fields they do not name already.
        required = (await _get(admin, "/rest/v1/crypto/configuration"))["icureEncryptedFields"]
        assert result["encrypted_fields"] == {
            "patient": ["note", "notes[].markdown", *(f for f in required["Patient"] if f not in ("note", "notes"))],
            "contact": ["descr", "notes[].markdown", *(f for f in required["Contact"] if f not in ("descr", "notes"))],
            "service": ["notes[].markdown", *(f for f in required["Service"] if f != "notes")],
        }
        assert {"firstName", "lastName"} <= set(result["encrypted_fields"]["patient"])

        # The client published its RSA public key on the professional and made its exchange data with itself.
        hcp = await _get(admin, f"/rest/v1/healthcare-professionals/{doctor.id}")
        assert 1 <= len(hcp["publicKeysForOaepWithSha256"]) <= result["attempts"]
        exchange_data = await _exchange_data_of(admin, doctor.id)
        assert 1 <= len(exchange_data) <= result["attempts"]

        # What the server holds: the patient's names and note, and the service's content, only encrypted; the
        # service's tag in clear.
        patient = await _get(admin, f"/rest/v1/patients/{result['patient']['id']}")
        clear = {name: patient.get(name) for name in ("firstName", "lastName", "names", "note")}
        assert clear == {"firstName": None, "lastName": None, "names": [], "note": None}, patient
        assert patient["encryptedSelf"]
        sample = await _get(admin, f"/rest/v1/data-samples/{result['written']['tagged']}")
        assert sample["batchId"] == result["written"]["tagged_contact"]
        assert sample["labels"] == [{"id": "IC-TEST|TEST|1", "type": "IC-TEST", "code": "TEST", "version": "1"}]
        assert sample["content"] == {} and sample["encryptedSelf"] and sample["secretForeignKeys"]

        # A second run with the same key store (files in `storage`) reuses the keys and the exchange data.
        second = await run_guide(node, config)
        _check_guide(second, doctor)
        assert await _get(admin, f"/rest/v1/healthcare-professionals/{doctor.id}") == hcp
        assert await _exchange_data_of(admin, doctor.id) == exchange_data
