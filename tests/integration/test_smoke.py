"""The demo scenario through the SDK against a real server, on each database."""

from __future__ import annotations

from medstream.model import CodingReference, Content, DataSample, Patient
from tests.conftest import ProfessionalFactory


async def test_professional_creates_patient_and_data_sample(new_professional: ProfessionalFactory) -> None:
    doctor = await new_professional()
    patient = await doctor.api.patient_api.create_or_modify_patient(Patient(first_name="John", last_name="Snow"))
    assert patient.id is not None and patient.rev is not None
    sample = await doctor.api.data_sample_api.create_or_modify_data_sample_for(
        patient.id,
        DataSample(labels={CodingReference(type="IC-TEST", code="TEST")}, content={"en": Content(string_value="Hi")}),
    )
    assert sample.patient_id == patient.id
    assert sample.responsible == doctor.id
    fetched = await doctor.api.data_sample_api.get_data_sample(str(sample.id))
    assert fetched == sample
