"""End-to-end encryption through the SDK, on SQLite and PostgreSQL: the server stores ciphertext, a data owner
reads another's data only once it is shared with its keys, revoking rotates the key, and tampering with what
the server stores fails to decrypt instead of giving wrong data."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from medstream.crypto import DataOwnerKeyPair
from medstream.errors import DecryptionError, KeyVerificationError, NotFoundError, ValidationError
from medstream.filters import DataSampleFilter
from medstream.model import MAX_STRING_LENGTH, CodingReference, Content, DataSample, Patient
from medstream.sdk import MedTechApi
from medstream.sdk.connection import SubscriptionEvent
from tests.conftest import Professional, ProfessionalFactory, RunningServer, serve
from tests.integration.events_support import Calls, Recorder
from tests.integration.stored_rows import read_document, write_document


@pytest_asyncio.fixture(scope="module", params=["sqlite", "postgresql"])
async def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    """A server that requires encryption (`MEDSTREAM_REQUIRE_ENCRYPTION` on): every medical field these tests
    write reaches it encrypted by the SDK, or the write is refused."""
    async with serve(request.param, tmp_path_factory.mktemp(request.param), require_encryption=True) as running:
        yield running


LABEL = CodingReference(type="IC-TEST", code="TEST")


async def _sample(api: MedTechApi, patient_id: str, text: str) -> DataSample:
    return await api.data_sample_api.create_or_modify_data_sample_for(
        patient_id, DataSample(labels={LABEL}, content={"en": Content(string_value=text)}, comment=f"{text} note")
    )


async def _patient(owner: Professional) -> str:
    patient = await owner.api.patient_api.create_or_modify_patient(
        Patient(first_name="John", last_name="Snow", note="Winter is coming")
    )
    assert patient.id is not None
    return patient.id


async def _subscribe(api: MedTechApi, recorder: Recorder, errors: Calls | None = None) -> object:
    connection = await api.data_sample_api.subscribe_to_data_sample_events(
        ["CREATE", "UPDATE"], await DataSampleFilter(api).by_label_code_filter("IC-TEST", "TEST").build(), recorder
    )
    if errors is not None:
        connection.on_error(errors)
    return connection


async def test_the_guide_scenario_decrypts_in_the_callback_while_the_server_stores_ciphertext(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    api = doctor.api
    received: list[DataSample] = []
    arrived = asyncio.Event()

    def on_event(data_sample: DataSample) -> None:
        received.append(data_sample)
        arrived.set()

    connection = await api.data_sample_api.subscribe_to_data_sample_events(
        ["CREATE"], await DataSampleFilter(api).for_self().by_label_code_filter("IC-TEST", "TEST").build(), on_event
    )
    patient_id = await _patient(doctor)
    created = await _sample(api, patient_id, "Hello world")
    await asyncio.wait_for(arrived.wait(), 10)
    assert received[0].content["en"].string_value == "Hello world"
    assert created.content["en"].string_value == "Hello world" and created.comment == "Hello world note"
    assert created.security_metadata is not None, "kept on the model: an update finds the entity's key through it"

    assert created.id is not None
    stored = await read_document(server, "DataSample", created.id)
    assert not stored.get("content") and "comment" not in stored and "encryptedSelf" in stored
    assert b"Hello world" not in base64.b64decode(stored["encryptedSelf"])
    assert stored["labels"] == [{"type": "IC-TEST", "code": "TEST"}], "labels stay in clear, for filters"
    patient = await read_document(server, "Patient", patient_id)
    assert "lastName" not in patient and "note" not in patient and "Snow" not in str(patient)
    with pytest.raises(ValidationError, match="lastName"):  # this server refuses what the SDK did not encrypt
        await api.transport.request("POST", "/rest/v1/patients", {"lastName": "Snow"})
    await connection.close()


async def test_another_data_owner_reads_nothing_until_given_access_then_reads_and_gets_events(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    alice, bob = await new_professional(), await new_professional()
    recorder, errors = Recorder(), Calls()
    connection = await _subscribe(bob.api, recorder, errors)
    sample = await _sample(alice.api, await _patient(alice), "first reading")
    assert sample.id is not None
    with pytest.raises(NotFoundError):
        await bob.api.data_sample_api.get_data_sample(sample.id)
    ciphertext = (await read_document(server, "DataSample", sample.id))["encryptedSelf"]

    shared = await alice.api.data_sample_api.give_access_to(sample, bob.id, "READ")
    assert shared.content["en"].string_value == "first reading"
    assert (await read_document(server, "DataSample", sample.id))["encryptedSelf"] == ciphertext, "not re-encrypted"
    read = await bob.api.data_sample_api.get_data_sample(sample.id)
    assert read.content["en"].string_value == "first reading" and read.comment == "first reading note"
    await recorder.wait_count(1)
    assert recorder.events[0].entity.content["en"].string_value == "first reading"

    updated = await alice.api.data_sample_api.create_or_modify(
        shared.model_copy(update={"content": {"en": Content(string_value="second reading")}})
    )
    await recorder.wait_count(2)
    assert recorder.events[1].entity.content["en"].string_value == "second reading"
    assert recorder.events[1].entity.rev == updated.rev and errors.values == []
    await connection.close()  # type: ignore[attr-defined]


async def test_a_row_read_from_the_database_does_not_decrypt_for_a_data_owner_it_is_not_shared_with(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    alice, bob = await new_professional(), await new_professional()
    sample = await _sample(alice.api, await _patient(alice), "secret")
    assert sample.id is not None
    row = await read_document(server, "DataSample", sample.id)
    with pytest.raises(DecryptionError, match=f"DataSample {sample.id}"):
        await bob.api.crypto.decrypt("DataSample", row)
    assert (await alice.api.crypto.decrypt("DataSample", row))["content"]["en"]["stringValue"] == "secret"


async def test_a_delegation_added_in_the_database_delivers_an_event_that_fails_to_decrypt_and_events_go_on(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    """A delegation to Bob without his key (added by hand, as a server could) makes Bob a reader: the event
    comes, Bob's `on_error` gets a DecryptionError with its seq, and the next event shared with him arrives."""
    alice, bob = await new_professional(), await new_professional()
    recorder, errors = Recorder(), Calls()
    connection = await _subscribe(bob.api, recorder, errors)
    patient_id = await _patient(alice)
    sample = await _sample(alice.api, patient_id, "not for bob")
    assert sample.id is not None
    document = await read_document(server, "DataSample", sample.id)
    forged = {"delegator": alice.id, "delegate": bob.id, "encryptionKeys": [], "permissions": "READ"}
    document["securityMetadata"]["secureDelegations"]["ab" * 32] = forged
    await write_document(server, "DataSample", sample.id, document)
    # Alice's next write sends the delegations as stored (her model does not carry them): an UPDATE Bob may read.
    rewritten = await alice.api.data_sample_api.create_or_modify(
        sample.model_copy(update={"security_metadata": None, "comment": "touched"})
    )
    await errors.wait_count(1, "decryption errors")
    error = errors.values[0]
    assert isinstance(error, DecryptionError) and error.seq is not None and f"event {error.seq}" in str(error)
    assert recorder.events == []

    later = await alice.api.data_sample_api.give_access_to(await _sample(alice.api, patient_id, "for bob"), bob.id)
    await recorder.wait_count(1)
    event: SubscriptionEvent[DataSample] = recorder.events[0]
    assert event.entity.id == later.id and event.entity.content["en"].string_value == "for bob"
    assert event.seq > error.seq and rewritten.rev is not None
    await connection.close()  # type: ignore[attr-defined]


async def test_after_a_revoke_the_key_rotates_and_the_revoked_data_owner_cannot_decrypt_the_new_revision(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    alice, bob, carol = await new_professional(), await new_professional(), await new_professional()
    sample = await _sample(alice.api, await _patient(alice), "before revoke")
    assert sample.id is not None
    await alice.api.data_sample_api.give_access_to(sample, bob.id)
    await alice.api.data_sample_api.give_access_to(sample, carol.id)
    assert (await bob.api.data_sample_api.get_data_sample(sample.id)).comment == "before revoke note"
    old = await read_document(server, "DataSample", sample.id)

    revoked = await alice.api.data_sample_api.revoke_access(sample, bob.id)
    assert bob.id not in revoked.readers and carol.id in revoked.readers
    changed = await alice.api.data_sample_api.create_or_modify(revoked.model_copy(update={"comment": "after revoke"}))
    new = await read_document(server, "DataSample", sample.id)
    assert base64.b64decode(new["encryptedSelf"])[1:9] != base64.b64decode(old["encryptedSelf"])[1:9], "new kid"
    with pytest.raises(NotFoundError):
        await bob.api.data_sample_api.get_data_sample(sample.id)
    with pytest.raises(DecryptionError):  # even handed the new revision, with the old key in its cache
        await bob.api.crypto.decrypt("DataSample", new)
    assert (await carol.api.data_sample_api.get_data_sample(sample.id)).comment == "after revoke", "re-wrapped"
    assert changed.comment == "after revoke"
    again = await alice.api.data_sample_api.revoke_access(changed, bob.id)
    assert again.rev == changed.rev, "nothing to revoke: no write, no rotation"


async def test_a_flipped_byte_in_the_stored_encrypted_self_fails_to_decrypt(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    alice = await new_professional()
    sample = await _sample(alice.api, await _patient(alice), "intact")
    assert sample.id is not None
    document = await read_document(server, "DataSample", sample.id)
    raw = bytearray(base64.b64decode(document["encryptedSelf"]))
    raw[-20] ^= 0x01
    document["encryptedSelf"] = base64.b64encode(bytes(raw)).decode()
    await write_document(server, "DataSample", sample.id, document)
    with pytest.raises(DecryptionError, match="authentication failed"):
        await alice.api.data_sample_api.get_data_sample(sample.id)


async def test_a_data_sample_whose_every_string_is_within_its_bound_is_stored_encrypted_whatever_their_sum(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    alice = await new_professional()
    longest = "QUJD" * (MAX_STRING_LENGTH // 4)  # as long as one string of an entity may be, in clear
    sample = await alice.api.data_sample_api.create_or_modify_data_sample_for(
        await _patient(alice), DataSample(content={"en": Content(binary_value=longest)}, comment="é" * 1000)
    )
    assert sample.id is not None and sample.content["en"].binary_value == longest
    assert len((await read_document(server, "DataSample", sample.id))["encryptedSelf"]) > MAX_STRING_LENGTH
    again = await alice.api.data_sample_api.get_data_sample(sample.id)
    assert again.content == sample.content and again.comment == "é" * 1000


async def test_a_public_key_substituted_on_the_server_is_refused_by_a_counterparty_that_pinned_the_old_one(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    alice, bob = await new_professional(), await new_professional()
    sample = await _sample(alice.api, await _patient(alice), "pinned")
    await alice.api.data_sample_api.give_access_to(sample, bob.id)  # Alice pins Bob's key
    assert sample.id is not None
    await bob.api.data_sample_api.get_data_sample(sample.id)  # and Bob pins Alice's, checking her signature

    document = await read_document(server, "HealthcareProfessional", alice.id)
    impostor = DataOwnerKeyPair.generate(1).public
    document["cryptoKeys"] = [impostor.to_wire()]
    await write_document(server, "HealthcareProfessional", alice.id, document)
    bobs = await _sample(bob.api, await _patient(bob), "for alice?")
    with pytest.raises(KeyVerificationError, match=alice.id) as refused:
        await bob.api.data_sample_api.give_access_to(bobs, alice.id)
    assert impostor.fingerprint in str(refused.value)
    assert await bob.api.crypto.fingerprint(alice.id, impostor.id) == impostor.fingerprint

    await bob.api.crypto.verify_key(alice.id, impostor.id)  # a person compared the fingerprint, and accepts it
    shared = await bob.api.data_sample_api.give_access_to(bobs, alice.id)
    assert alice.id in shared.readers


async def test_batches_pages_filters_and_tombstones_come_back_decrypted(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    alice = await new_professional()
    patient_id = await _patient(alice)
    samples = await alice.api.data_sample_api.create_or_modify_data_samples_for(
        patient_id, [DataSample(labels={LABEL}, comment=f"batch {i}") for i in range(3)]
    )
    ids = [s.id for s in samples]
    assert [s.comment for s in samples] == ["batch 0", "batch 1", "batch 2"]
    for sample_id in ids:
        assert sample_id is not None
        assert "comment" not in await read_document(server, "DataSample", sample_id)
    by_label = await DataSampleFilter(alice.api).for_self().by_label_code_filter("IC-TEST", "TEST").build()
    page = await alice.api.data_sample_api.filter_data_samples_by(by_label, limit=2)
    rows = [row async for row in page.all_rows()]
    assert sorted(r.comment or "" for r in rows) == ["batch 0", "batch 1", "batch 2"]
    assert sorted(await alice.api.data_sample_api.match_data_samples_by(by_label)) == sorted(ids)  # type: ignore[type-var]
    assert [s.comment for s in await alice.api.data_sample_api.get_data_samples(ids)] == [
        "batch 0",
        "batch 1",
        "batch 2",
    ]  # type: ignore[arg-type]
    listed = {s.id: s.comment for s in await alice.api.data_sample_api.list_page()}
    assert {listed[i] for i in ids} == {"batch 0", "batch 1", "batch 2"}  # type: ignore[index]
    assert ids[0] is not None
    tombstone = await alice.api.data_sample_api.delete_data_sample(ids[0])
    assert tombstone.is_deleted and tombstone.comment == "batch 0"
