"""The iCure guide "Subscribing to iCure events", in Python, against a real server and real sockets."""

from __future__ import annotations

import asyncio

import pytest

from medstream.errors import ValidationError
from medstream.filters import DataSampleFilter
from medstream.model import CodingReference, Content, DataSample, Patient
from medstream.sdk import MedTechApi
from medstream.sdk.connection import SubscriptionEvent
from tests.conftest import ProfessionalFactory

SETTLE = 0.3  # how long to wait for an event that must NOT arrive


async def _labelled_sample(api: MedTechApi, patient_id: str, label: bool = True) -> DataSample:
    labels = {CodingReference(type="IC-TEST", code="TEST")} if label else set()
    return await api.data_sample_api.create_or_modify_data_sample_for(
        patient_id, DataSample(labels=labels, content={"en": Content(string_value="Hello world")})
    )


async def test_guide_scenario_gets_exactly_one_callback_and_one_close(new_professional: ProfessionalFactory) -> None:
    doctor = await new_professional()
    api = doctor.api
    received: list[DataSample] = []
    statuses: list[str] = []
    arrived = asyncio.Event()

    async def on_event(sample: DataSample) -> None:
        received.append(sample)
        arrived.set()

    connection = await api.data_sample_api.subscribe_to_data_sample_events(
        ["CREATE"],
        await DataSampleFilter(api).for_self().by_label_code_filter("IC-TEST", "TEST").build(),
        on_event,
        None,
    )
    connection.on_connected(lambda: statuses.append("CONNECTED")).on_closed(lambda: statuses.append("CLOSED"))

    patient = await api.patient_api.create_or_modify_patient(
        Patient(first_name="John", last_name="Snow", note="Winter is coming")
    )
    assert patient.id is not None
    await _labelled_sample(api, patient.id, label=False)  # no label: no callback
    created = await _labelled_sample(api, patient.id)
    await asyncio.wait_for(arrived.wait(), 10)
    await asyncio.sleep(SETTLE)

    assert [s.id for s in received] == [created.id]
    assert received[0].content["en"].string_value == "Hello world"
    await connection.close()
    await connection.close()
    assert statuses == ["CONNECTED", "CLOSED"]


async def test_data_sample_of_another_unshared_owner_gives_no_callback(new_professional: ProfessionalFactory) -> None:
    watcher, other = await new_professional(), await new_professional()
    events: list[SubscriptionEvent[DataSample]] = []
    connection = await watcher.api.data_sample_api.subscribe_to_data_sample_events(
        ["CREATE", "UPDATE"],
        await DataSampleFilter(watcher.api).by_label_code_filter("IC-TEST", "TEST").build(),
        lambda _sample, event: events.append(event),
    )
    patient = await other.api.patient_api.create_or_modify_patient(Patient(first_name="Arya"))
    assert patient.id is not None
    hidden = await _labelled_sample(other.api, patient.id)
    await asyncio.sleep(SETTLE)
    assert events == []

    shared = await other.api.data_sample_api.give_access_to(hidden, watcher.id)  # now readable: an UPDATE
    for _ in range(100):
        if events:
            break
        await asyncio.sleep(0.05)
    assert [(e.type, e.entity.id, e.entity.rev) for e in events] == [("UPDATE", shared.id, shared.rev)]
    await connection.close()


async def test_an_oversized_filter_is_refused_before_it_disturbs_the_socket(
    new_professional: ProfessionalFactory,
) -> None:
    doctor = await new_professional()
    api = doctor.api
    arrived = asyncio.Event()
    kept = await api.patient_api.subscribe_to_patient_events(["CREATE"], None, lambda _patient: arrived.set())
    huge = {"$type": "PatientByIdsFilter", "ids": [f"{i:08d}" + "x" * 100 for i in range(3000)]}
    with pytest.raises(ValidationError, match="KiB"):
        await api.patient_api.subscribe_to_patient_events(["CREATE"], huge, lambda _patient: None)
    await api.patient_api.create_or_modify_patient(Patient(first_name="Still", last_name="Here"))
    await asyncio.wait_for(arrived.wait(), 10)  # the subscription sharing the socket was not disturbed
    assert kept.is_connected
    await kept.close()
