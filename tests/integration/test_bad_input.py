"""Bad input gets a clear 4xx with a JSON `{"error", "message"}` body and leaves stored data unchanged.

Every request here is raw httpx against the running server, and aims at an existing patient (or one of its data
samples) with its current rev, so that a request wrongly accepted would change it; after each, the entity is
read again and must be byte-for-byte what it was.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest_asyncio

from medstream.model import MAX_STRING_LENGTH, CodingReference, Content, DataSample, Patient
from medstream.sdk import MedTechApi
from medstream.server.settings import Settings
from tests.conftest import ProfessionalFactory, RunningServer
from tests.integration.kinds import expired_access_token

DEFAULTS = Settings()


@dataclass
class Target:
    """An existing entity, the path that writes it, and its exact stored bytes."""

    client: httpx.AsyncClient  # authenticated as the entity's owner
    write_path: str
    read_path: str
    raw: bytes

    @property
    def current(self) -> dict[str, Any]:
        """The entity as stored: sending it back with a change would modify it."""
        return orjson.loads(self.raw)  # type: ignore[no-any-return]

    def changed(self, **fields: Any) -> dict[str, Any]:
        return {**self.current, **fields}

    async def assert_unchanged(self) -> None:
        response = await self.client.get(self.read_path)
        assert response.status_code == 200, response.text
        assert response.content == self.raw, "the stored entity changed"


@dataclass
class Targets:
    patient: Target
    sample: Target
    api: MedTechApi


@pytest_asyncio.fixture
async def targets(server: RunningServer, new_professional: ProfessionalFactory) -> AsyncIterator[Targets]:
    doctor = await new_professional()
    patient = await doctor.api.patient_api.create_or_modify_patient(
        Patient(first_name="John", last_name="Snow", ssin="850131-123-45", date_of_birth=19850131)
    )
    assert patient.id is not None
    sample = await doctor.api.data_sample_api.create_or_modify_data_sample_for(
        patient.id,
        DataSample(labels={CodingReference(type="IC-TEST", code="TEST")}, content={"en": Content(string_value="Hi")}),
    )
    token = await doctor.api.transport.access_token()
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as client:

        async def target(write_path: str, read_path: str) -> Target:
            response = await client.get(read_path)
            assert response.status_code == 200, response.text
            return Target(client, write_path, read_path, response.content)

        yield Targets(
            patient=await target("/rest/v1/patients", f"/rest/v1/patients/{patient.id}"),
            sample=await target(f"/rest/v1/patients/{patient.id}/data-samples", f"/rest/v1/data-samples/{sample.id}"),
            api=doctor.api,
        )


def assert_error(response: httpx.Response, status: int, error: str, *mentions: str) -> dict[str, Any]:
    """A JSON error body with this status and code, whose message mentions each of `mentions`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert isinstance(body["message"], str) and body["message"]
    for mention in mentions:
        assert mention in body["message"], f"{mention!r} not in {body['message']!r}"
    return body


def json_bytes(value: Any) -> bytes:
    return orjson.dumps(value)


async def post_big(target: Target, value: Any) -> httpx.Response:
    """POST JSON that may hold integers of any size (orjson refuses those over 64 bits)."""
    content = json.dumps(value).encode()
    return await target.client.post(target.write_path, content=content, headers={"Content-Type": "application/json"})


async def test_malformed_json_is_400(targets: Targets) -> None:
    t = targets.patient
    good = json_bytes(t.changed(note="changed"))
    for bad in (good[:-1], good + b"}", good.replace(b'"note"', b"'note'"), b"{", b"", b"\xff\xfe"):
        response = await t.client.post(t.write_path, content=bad, headers={"Content-Type": "application/json"})
        assert_error(response, 400, "validation_error")
    await t.assert_unchanged()


async def test_a_body_that_is_not_an_object_is_400(targets: Targets) -> None:
    t = targets.patient
    for bad in (None, [], "a patient", 42, [t.changed(note="changed")]):
        assert_error(await t.client.post(t.write_path, json=bad), 400, "validation_error", "body")
    await t.assert_unchanged()


async def test_a_wrong_type_is_400_naming_the_field_path(targets: Targets) -> None:
    t = targets.patient
    cases: list[tuple[dict[str, Any], str]] = [
        ({"firstName": 42}, "body.firstName"),
        ({"dateOfBirth": "yesterday"}, "body.dateOfBirth"),
        ({"addresses": [{"city": "Winterfell"}, {"telecoms": [{"telecomNumber": ["0470"]}]}]}, "body.addresses.1"),
        ({"gender": "dragon"}, "body.gender"),
        ({"labels": "IC-TEST"}, "body.labels"),
    ]
    for change, path in cases:
        body = assert_error(await t.client.post(t.write_path, json=t.changed(**change)), 400, "validation_error", path)
        assert any(detail["path"].startswith(path) for detail in body["details"])
    body = assert_error(
        await t.client.post(t.write_path, json=t.changed(addresses=[{"telecoms": [{"telecomNumber": 470}]}])),
        400,
        "validation_error",
        "body.addresses.0.telecoms.0.telecomNumber",
    )
    await t.assert_unchanged()

    s = targets.sample
    response = await s.client.post(s.write_path, json=s.changed(content={"en": {"measureValue": {"value": "high"}}}))
    assert_error(response, 400, "validation_error", "body.content.en.measureValue.value")
    await s.assert_unchanged()


async def test_an_unknown_field_is_400_naming_it(targets: Targets) -> None:
    t = targets.patient
    assert_error(await t.client.post(t.write_path, json=t.changed(shoeSize=44)), 400, "validation_error", "shoeSize")
    response = await t.client.post(t.write_path, json=t.changed(addresses=[{"city": "Winterfell", "planet": "Mars"}]))
    assert_error(response, 400, "validation_error", "body.addresses.0.planet")
    # snake_case is accepted as a name; a misspelled field is not silently dropped
    assert_error(
        await t.client.post(t.write_path, json=t.changed(fristName="Jon")), 400, "validation_error", "fristName"
    )
    await t.assert_unchanged()


async def test_a_body_over_max_body_bytes_is_413(targets: Targets) -> None:
    t = targets.patient
    body = json_bytes(t.changed(note=""))
    padding = DEFAULTS.max_body_bytes + 1 - len(body)
    body = json_bytes(t.changed(note="x" * padding))
    assert len(body) == DEFAULTS.max_body_bytes + 1

    response = await t.client.post(t.write_path, content=body, headers={"Content-Type": "application/json"})

    assert_error(response, 413, "payload_too_large", str(DEFAULTS.max_body_bytes))
    await t.assert_unchanged()


async def test_a_body_exactly_at_max_body_bytes_is_not_refused_for_its_size(targets: Targets) -> None:
    t = targets.patient
    body = json_bytes(t.changed(note=""))
    body = json_bytes(t.changed(note="x" * (DEFAULTS.max_body_bytes - len(body))))
    assert len(body) == DEFAULTS.max_body_bytes

    response = await t.client.post(t.write_path, content=body, headers={"Content-Type": "application/json"})

    assert_error(response, 400, "validation_error", "body.note")  # over the string bound, but not 413
    await t.assert_unchanged()


async def test_a_streamed_chunked_body_over_max_body_bytes_is_413(targets: Targets) -> None:
    t = targets.patient
    head = json_bytes(t.changed(note=""))[:-2]  # ... "note":"
    total = DEFAULTS.max_body_bytes + 1
    chunk = 64 * 1024

    async def chunks() -> AsyncIterator[bytes]:
        yield head
        sent = len(head)
        while sent < total:
            size = min(chunk, total - sent)
            yield b"x" * size
            sent += size

    response = await t.client.post(t.write_path, content=chunks(), headers={"Content-Type": "application/json"})

    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_error(response, 413, "payload_too_large")
    await t.assert_unchanged()


async def test_a_string_over_the_model_bound_is_400(targets: Targets) -> None:
    t = targets.patient
    response = await t.client.post(t.write_path, json=t.changed(note="x" * (MAX_STRING_LENGTH + 1)))
    assert_error(response, 400, "validation_error", "body.note", str(MAX_STRING_LENGTH))
    await t.assert_unchanged()


async def test_a_batch_over_max_batch_size_is_400(targets: Targets) -> None:
    t = targets.patient
    batch = [t.changed(note="changed")] + [{"firstName": "Extra"}] * DEFAULTS.max_batch_size

    response = await t.client.post(f"{t.write_path}/batch", json=batch)

    assert_error(response, 400, "validation_error", str(DEFAULTS.max_batch_size))
    await t.assert_unchanged()
    too_many_ids = {"ids": [f"id-{i}" for i in range(10_001)]}
    assert_error(await t.client.post(f"{t.write_path}/delete", json=too_many_ids), 400, "validation_error", "ids")
    await t.assert_unchanged()


async def test_a_bad_or_expired_token_is_401(server: RunningServer, targets: Targets) -> None:
    t = targets.patient
    token = t.client.headers["Authorization"].removeprefix("Bearer ")
    expired = await expired_access_token(server.database_url, token)
    for headers, mention in (
        ({"Authorization": "Bearer not-a-token"}, "invalid"),
        ({"Authorization": f"Bearer {token[:-3]}"}, "invalid"),
        ({"Authorization": f"Bearer {expired}"}, "expired"),
    ):
        response = await t.client.post(t.write_path, json=t.changed(note="changed"), headers=headers)
        assert_error(response, 401, "unauthorized", mention)
    await t.assert_unchanged()


async def test_a_stale_rev_is_409(targets: Targets) -> None:
    t = targets.patient
    stale = f"1-{uuid.uuid4().hex}"
    response = await t.client.post(t.write_path, json=t.changed(rev=stale, note="changed"))
    assert_error(response, 409, "conflict", stale)
    response = await t.client.post(t.write_path, json={k: v for k, v in t.changed(note="x").items() if k != "rev"})
    assert_error(response, 409, "conflict", "already exists")
    await t.assert_unchanged()


async def test_a_wrong_method_is_405_naming_every_method_the_path_allows(targets: Targets) -> None:
    t = targets.patient
    response = await t.client.put(t.read_path, json=t.changed(note="changed"))
    assert_error(response, 405, "method_not_allowed", "PUT", "not allowed", "DELETE, GET, HEAD")
    assert response.headers["Allow"] == "DELETE, GET, HEAD"
    collection = await t.client.patch(t.write_path, json=t.changed(note="changed"))
    assert_error(collection, 405, "method_not_allowed", "PATCH")
    assert collection.headers["Allow"] == "GET, HEAD, POST"
    await t.assert_unchanged()


async def test_a_bad_query_or_path_parameter_is_400(targets: Targets) -> None:
    t = targets.patient
    assert_error(await t.client.get(t.write_path, params={"limit": 0}), 400, "validation_error", "query.limit")
    assert_error(await t.client.get(f"{t.write_path}/not an id!"), 400, "validation_error", "path.entity_id")
    await t.assert_unchanged()


async def test_an_integer_out_of_storable_range_is_400(targets: Targets) -> None:
    t = targets.patient
    for value in (2**31, -(2**31) - 1):  # dateOfBirth is a 32-bit column
        response = await post_big(t, t.changed(note="changed", dateOfBirth=value))
        assert_error(response, 400, "validation_error", "dateOfBirth", "range")
    # Beyond 64 bits, an integer is refused by validation, whatever its column, before any column is checked.
    for value in (2**63, 2**70):
        response = await post_big(t, t.changed(note="changed", dateOfBirth=value))
        assert_error(response, 400, "validation_error", "dateOfBirth", "9223372036854775807")
    await t.assert_unchanged()
    s = targets.sample
    for value in (2**63, 2**64 - 1, 2**70):  # valueDate is a 64-bit column
        response = await post_big(s, s.changed(comment="changed", valueDate=value))
        assert_error(response, 400, "validation_error", "valueDate", "9223372036854775807")
    # Fields without a column are held to 64 bits as well: every stored document is JSON any client parses alike.
    for beyond, path, bound in (
        ({"index": 2**64}, "index", "9223372036854775807"),
        ({"index": -(2**63) - 1}, "index", "-9223372036854775808"),
        (
            {"content": {"en": {"compoundValue": [{"index": -(2**70)}]}}},
            "compoundValue.0.index",
            "-9223372036854775808",
        ),
        ({"content": {"en": {"measureValue": {"severity": 2**63}}}}, "measureValue.severity", "9223372036854775807"),
    ):
        response = await post_big(s, s.changed(comment="changed", **beyond))
        assert_error(response, 400, "validation_error", path, bound)
    await s.assert_unchanged()


async def test_integers_at_the_edge_of_their_column_are_stored(targets: Targets) -> None:
    t = targets.patient
    response = await post_big(t, t.changed(dateOfBirth=2**31 - 1))
    assert response.status_code == 200, response.text
    assert response.json()["dateOfBirth"] == 2**31 - 1
    s = targets.sample
    response = await post_big(s, s.changed(valueDate=2**63 - 1, index=-(2**63)))
    assert response.status_code == 200, response.text
    assert (await s.client.get(s.read_path)).json()["valueDate"] == 2**63 - 1


async def test_a_string_too_long_for_its_indexed_column_is_400(targets: Targets, admin_api: MedTechApi) -> None:
    t = targets.patient
    response = await t.client.post(t.write_path, json=t.changed(ssin="1" * 65))
    assert_error(response, 400, "validation_error", "ssin")
    response = await t.client.post(t.write_path, json=t.changed(labels=[{"type": "IC-TEST", "code": "c" * 257}]))
    assert_error(response, 400, "validation_error", "label")
    response = await t.client.post(t.write_path, json=t.changed(identifiers=[{"system": "s" * 257, "value": "1"}]))
    assert_error(response, 400, "validation_error", "identifier")
    await t.assert_unchanged()
    s = targets.sample
    response = await s.client.post(s.write_path, json=s.changed(healthcareElementIds=["h" * 257]))
    assert_error(response, 400, "validation_error")
    await s.assert_unchanged()

    login = "l" * 257
    admin_token = await admin_api.transport.access_token()
    response = await t.client.post(
        "/rest/v1/users", json={"login": login}, headers={"Authorization": f"Bearer {admin_token}"}
    )
    assert_error(response, 400, "validation_error", "login")


async def test_a_nul_character_in_an_indexed_field_is_400(targets: Targets) -> None:
    t = targets.patient
    for change in ({"firstName": "Jo\u0000hn"}, {"ssin": "85\u0000"}, {"labels": [{"type": "T\u0000", "code": "c"}]}):
        response = await t.client.post(t.write_path, json=t.changed(**change))
        assert_error(response, 400, "validation_error", "NUL")
    await t.assert_unchanged()


async def test_nesting_deeper_than_can_be_stored_is_400(targets: Targets) -> None:
    s = targets.sample
    nested: dict[str, Any] = {"comment": "innermost"}
    for _ in range(80):
        nested = {"content": {"en": {"compoundValue": [nested]}}}

    response = await s.client.post(s.write_path, json=s.changed(content=nested["content"]))

    assert_error(response, 400, "validation_error")
    await s.assert_unchanged()
