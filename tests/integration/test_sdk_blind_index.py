"""The SDK's blind indexes, on SQLite and PostgreSQL, against a server that requires encryption: a write carries
the tokens of its SSIN, identifiers and names made under its data owner's search key, the SDK's filter builders
search those fields through tokens, a data owner finds what another indexed once that one shared an entity with
it (its exchange data carries the search key), a subscription with such a filter gets the events, and the server
stores no clear name, SSIN or identifier."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from medstream.crypto import create_exchange_data
from medstream.crypto.blind_index import name_tokens, token
from medstream.errors import ValidationError
from medstream.filters import DataSampleFilter, HealthcareElementFilter, PatientFilter
from medstream.model import Content, DataSample, HealthcareElement, Identifier, Patient
from medstream.sdk import MedTechApi
from tests.conftest import Professional, ProfessionalFactory, RunningServer, serve
from tests.integration.events_support import Recorder
from tests.integration.stored_rows import read_document

SSIN = "85073003328"
MRN = Identifier(system="https://hospital.example/mrn", value="A-1234")
LAB = Identifier(system="https://lab.example/orders", value="L-987")
CLEAR = ("Hélène", "helene", "Dupré", "dupre", "DUPR", SSIN, "A-1234", "hospital.example")


@pytest_asyncio.fixture(scope="module", params=["sqlite", "postgresql"])
async def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    """A server that requires encryption: the names, SSIN and identifiers reach it only inside encryptedSelf."""
    async with serve(request.param, tmp_path_factory.mktemp(request.param), require_encryption=True) as running:
        yield running


async def _helene(owner: Professional) -> Patient:
    patient = await owner.api.patient_api.create_or_modify_patient(
        Patient(first_name="Hélène", last_name="Dupré", ssin=SSIN, identifiers=[MRN], note="allergic to penicillin")
    )
    assert patient.id is not None and patient.first_name == "Hélène" and patient.ssin == SSIN
    return patient


def _searches(api: MedTechApi) -> dict[str, PatientFilter]:
    """The SDK's patient searches on encrypted fields, by name: two names, the SSIN, an identifier."""
    return {
        "helene": PatientFilter(api).contains_fuzzy("helene"),
        "DUP": PatientFilter(api).contains_fuzzy("DUP"),
        "ssin": PatientFilter(api).with_ssins([SSIN]),
        "identifier": PatientFilter(api).by_identifiers([MRN]),
    }


async def _ids(api: MedTechApi, builder: PatientFilter) -> list[str]:
    return [patient.id or "" for patient in (await api.patient_api.filter_patients_by(await builder.build())).rows]


async def _found(api: MedTechApi) -> dict[str, list[str]]:
    """For each search, the ids of the patients the SDK's builder finds."""
    return {name: await _ids(api, builder) for name, builder in _searches(api).items()}


async def test_a_patient_is_found_by_name_ssin_and_identifier_and_by_a_delegate_only_after_a_share(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    alice, bob = await new_professional(), await new_professional()
    helene = await _helene(alice)
    martin = await alice.api.patient_api.create_or_modify_patient(
        Patient(first_name="Jean", last_name="Martin", ssin="90010112345", identifiers=[LAB])
    )
    assert helene.id is not None and martin.id is not None
    assert await _found(alice.api) == {search: [helene.id] for search in _searches(alice.api)}
    assert await _ids(alice.api, PatientFilter(alice.api).contains_fuzzy("hélène DUPR")) == [helene.id]
    assert await _ids(alice.api, PatientFilter(alice.api).contains_fuzzy("martin")) == [martin.id]
    assert await _ids(alice.api, PatientFilter(alice.api).contains_fuzzy("ene")) == [], "words and prefixes only"
    built = (await PatientFilter(alice.api).with_ssins([SSIN]).build()).to_json_dict()
    assert built["$type"] == "PatientByHealthcarePartyBlindIndexFilter" and SSIN not in str(built)

    # Bob: nothing is shared with him, and he does not know Alice's search key.
    assert await _found(bob.api) == {search: [] for search in _searches(bob.api)}
    await alice.api.patient_api.give_access_to(helene, bob.id, "READ")
    assert await _found(bob.api) == {search: [helene.id] for search in _searches(bob.api)}, "found once shared"
    # Martin is indexed under the same key, but Bob may not read him.
    assert await _ids(bob.api, PatientFilter(bob.api).contains_fuzzy("martin")) == []
    # Bob's own patients are indexed under his key, and his searches use both.
    own = await bob.api.patient_api.create_or_modify_patient(Patient(first_name="Hélène", last_name="Bernard"))
    assert sorted(await _ids(bob.api, PatientFilter(bob.api).contains_fuzzy("helene"))) == sorted([helene.id, own.id])


async def test_an_update_recomputes_the_tokens_and_the_server_stores_no_clear_value(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    alice = await new_professional()
    helene = await _helene(alice)
    assert helene.id is not None
    key = alice.api.crypto.state.own_search_key
    document = await read_document(server, "Patient", helene.id)
    assert document["blindIndex"] == {
        "ssin": [token(key, "ssin", SSIN)],
        "identifiers": [token(key, "identifiers", "https://hospital.example/mrn\x00A-1234")],
        "names": sorted(name_tokens(key, "names", "Hélène") | name_tokens(key, "names", "Dupré")),
    }
    row = await _stored_row(server, helene.id)
    for clear in CLEAR:
        assert clear.casefold() not in row.casefold(), f"{clear!r} stored in clear"

    renamed = await alice.api.patient_api.create_or_modify_patient(helene.model_copy(update={"last_name": "Durand"}))
    assert renamed.last_name == "Durand"
    assert await _ids(alice.api, PatientFilter(alice.api).contains_fuzzy("durand")) == [helene.id]
    assert await _ids(alice.api, PatientFilter(alice.api).contains_fuzzy("dupre")) == []
    assert await _ids(alice.api, PatientFilter(alice.api).with_ssins([SSIN])) == [helene.id]


async def test_a_patient_whose_names_make_more_tokens_than_an_entity_may_carry_is_refused_before_it_is_sent(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    alice = await new_professional()
    listed = await alice.api.patient_api.filter_patients_by(await PatientFilter(alice.api).for_self().build())
    # A word of 1,002 letters gives 1,000 tokens (itself and its prefixes of 3 letters or more), "Zoë" one more.
    with pytest.raises(ValidationError, match=r"lastName, .* make 1001 blind-index tokens for names .*: not sent"):
        await alice.api.patient_api.create_or_modify_patient(Patient(first_name="Zoë", last_name="a" * 1002))
    after = await alice.api.patient_api.filter_patients_by(await PatientFilter(alice.api).for_self().build())
    assert after.rows == listed.rows, "nothing was stored"
    within = await alice.api.patient_api.create_or_modify_patient(Patient(last_name="a" * 1002))
    assert within.id is not None
    assert len((await read_document(server, "Patient", within.id))["blindIndex"]["names"]) == 1000


async def test_data_samples_and_healthcare_elements_are_found_by_identifier(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    alice = await new_professional()
    helene = await _helene(alice)
    assert helene.id is not None
    sample = await alice.api.data_sample_api.create_or_modify_data_sample_for(
        helene.id, DataSample(identifiers=[LAB], content={"en": Content(string_value="Hb 13.5")})
    )
    await alice.api.data_sample_api.create_or_modify_data_sample_for(
        helene.id, DataSample(identifiers=[MRN], content={"en": Content(string_value="other")})
    )
    element = await alice.api.healthcare_element_api.create_or_modify_healthcare_element(
        HealthcareElement(patient_id=helene.id, identifiers=[LAB], description="asthma")
    )
    samples = await alice.api.data_sample_api.filter_data_samples_by(
        await DataSampleFilter(alice.api).by_identifiers([LAB]).build()
    )
    assert [s.id for s in samples.rows] == [sample.id] and samples.rows[0].identifiers == [LAB]
    elements = await alice.api.healthcare_element_api.filter_healthcare_elements_by(
        await HealthcareElementFilter(alice.api).by_identifiers([LAB]).build()
    )
    assert [e.id for e in elements.rows] == [element.id]
    assert element.id is not None and "L-987" not in str(await read_document(server, "HealthcareElement", element.id))


async def test_a_subscription_with_the_ssin_filter_gets_the_patients_events(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    alice = await new_professional()
    recorder = Recorder()
    connection = await alice.api.patient_api.subscribe_to_patient_events(
        ["CREATE", "UPDATE"], await PatientFilter(alice.api).with_ssins([SSIN]).build(), recorder
    )
    await alice.api.patient_api.create_or_modify_patient(Patient(first_name="Jean", ssin="90010112345"))
    helene = await _helene(alice)
    await recorder.wait_count(1)
    await alice.api.patient_api.create_or_modify_patient(helene.model_copy(update={"note": "no allergy"}))
    await recorder.wait_count(2)
    assert [(e.entity.id, e.entity.ssin) for e in recorder.events] == [(helene.id, SSIN), (helene.id, SSIN)]
    assert recorder.events[1].entity.note == "no allergy"
    await connection.close()


async def _stored_row(server: RunningServer, patient_id: str) -> str:
    """Everything the database holds of the patient: its row (every column) and its terms rows, as text."""
    if server.backend == "sqlite":
        path = server.database_url.removeprefix("sqlite:///")

        def read() -> str:
            with sqlite3.connect(path) as db:
                row = db.execute("SELECT * FROM patients WHERE id = ?", (patient_id,)).fetchall()
                terms = db.execute("SELECT * FROM entity_terms WHERE entity_id = ?", (patient_id,)).fetchall()
                assert row and terms
                return repr(row) + repr(terms)

        return await asyncio.to_thread(read)
    conn = await asyncpg.connect(server.database_url)
    try:
        row = await conn.fetch("SELECT row_to_json(p)::text FROM patients p WHERE id = $1", patient_id)
        terms = await conn.fetch("SELECT row_to_json(t)::text FROM entity_terms t WHERE entity_id = $1", patient_id)
        assert row and terms
        return repr([r[0] for r in row]) + repr([t[0] for t in terms])
    finally:
        await conn.close()


async def test_exchange_data_made_without_a_search_key_gets_it_at_the_next_share(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    """Exchange data from Alice to Bob signed before search keys existed: Alice's next share through it adds her
    search key, signed again, and Bob then finds what she indexed."""
    alice, bob = await new_professional(), await new_professional()
    own = alice.api.crypto.state.store.active_key_pairs()
    recipients = [keys.public for keys in own] + await alice.api.crypto.trusted_keys(bob.id)
    old, _ = create_exchange_data(uuid.uuid4().hex, alice.id, bob.id, own, recipients)
    assert "searchKey" not in old
    await alice.api.transport.request("POST", "/rest/v1/exchange-data", old)
    helene = await _helene(alice)
    await alice.api.patient_api.give_access_to(helene, bob.id, "READ")
    stored = await read_document(server, "ExchangeData", old["id"])
    assert set(stored["searchKey"]) == set(stored["exchangeKey"]), "wrapped for every key the record serves"
    assert stored["delegatorSignature"] != old["delegatorSignature"], "signed again over the search key"
    assert await _found(bob.api) == {search: [helene.id] for search in _searches(bob.api)}
