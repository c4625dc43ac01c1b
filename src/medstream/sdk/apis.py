"""The entity sub-APIs, with the method names of the Medtech SDK in snake_case."""

from __future__ import annotations

from collections.abc import Sequence

from medstream.model.contact import Contact
from medstream.model.data_sample import DataSample
from medstream.model.entities import KIND_BY_NAME
from medstream.model.exchange_data import ExchangeData
from medstream.model.healthcare_element import HealthcareElement
from medstream.model.healthcare_professional import HealthcareProfessional
from medstream.model.medical_device import MedicalDevice
from medstream.model.notification import Notification
from medstream.model.patient import Patient
from medstream.model.user import User
from medstream.sdk.entity_api import EntityApi


class PatientApi(EntityApi[Patient]):
    kind = KIND_BY_NAME["Patient"]
    create_or_modify_patient = EntityApi.create_or_modify
    create_or_modify_patients = EntityApi.create_or_modify_many
    get_patient = EntityApi.get
    subscribe_to_patient_events = EntityApi.subscribe_to_events
    get_patients = EntityApi.get_many
    delete_patient = EntityApi.delete
    delete_patients = EntityApi.delete_many
    filter_patients_by = EntityApi.filter_by
    match_patients_by = EntityApi.match_by


class DataSampleApi(EntityApi[DataSample]):
    kind = KIND_BY_NAME["DataSample"]
    get_data_sample = EntityApi.get
    subscribe_to_data_sample_events = EntityApi.subscribe_to_events
    get_data_samples = EntityApi.get_many
    delete_data_sample = EntityApi.delete
    delete_data_samples = EntityApi.delete_many
    filter_data_samples_by = EntityApi.filter_by
    match_data_samples_by = EntityApi.match_by

    async def create_or_modify_data_sample_for(self, patient_id: str, data_sample: DataSample) -> DataSample:
        """Create or modify a data sample of the patient `patient_id` (which you must be able to read)."""
        path = f"/rest/v1/patients/{patient_id}/data-samples"
        return await self._one(await self._transport.request("POST", path, await self._write_body(data_sample)))

    async def create_or_modify_data_samples_for(
        self, patient_id: str, data_samples: Sequence[DataSample]
    ) -> list[DataSample]:
        """Create or modify several data samples of one patient, all or none."""
        path = f"/rest/v1/patients/{patient_id}/data-samples/batch"
        body = [await self._write_body(sample) for sample in data_samples]
        return await self._many(await self._transport.request("POST", path, body))


class ContactApi(EntityApi[Contact]):
    kind = KIND_BY_NAME["Contact"]
    create_or_modify_contact = EntityApi.create_or_modify
    create_or_modify_contacts = EntityApi.create_or_modify_many
    get_contact = EntityApi.get
    subscribe_to_contact_events = EntityApi.subscribe_to_events
    get_contacts = EntityApi.get_many
    delete_contact = EntityApi.delete
    delete_contacts = EntityApi.delete_many
    filter_contacts_by = EntityApi.filter_by
    match_contacts_by = EntityApi.match_by


class HealthcareElementApi(EntityApi[HealthcareElement]):
    kind = KIND_BY_NAME["HealthcareElement"]
    create_or_modify_healthcare_element = EntityApi.create_or_modify
    create_or_modify_healthcare_elements = EntityApi.create_or_modify_many
    get_healthcare_element = EntityApi.get
    subscribe_to_healthcare_element_events = EntityApi.subscribe_to_events
    get_healthcare_elements = EntityApi.get_many
    delete_healthcare_element = EntityApi.delete
    delete_healthcare_elements = EntityApi.delete_many
    filter_healthcare_elements_by = EntityApi.filter_by
    match_healthcare_elements_by = EntityApi.match_by


class HealthcareProfessionalApi(EntityApi[HealthcareProfessional]):
    kind = KIND_BY_NAME["HealthcareProfessional"]
    create_or_modify_healthcare_professional = EntityApi.create_or_modify
    create_or_modify_healthcare_professionals = EntityApi.create_or_modify_many
    get_healthcare_professional = EntityApi.get
    subscribe_to_healthcare_professional_events = EntityApi.subscribe_to_events
    get_healthcare_professionals = EntityApi.get_many
    delete_healthcare_professional = EntityApi.delete
    delete_healthcare_professionals = EntityApi.delete_many
    filter_healthcare_professionals_by = EntityApi.filter_by
    match_healthcare_professionals_by = EntityApi.match_by


class MedicalDeviceApi(EntityApi[MedicalDevice]):
    kind = KIND_BY_NAME["MedicalDevice"]
    create_or_modify_medical_device = EntityApi.create_or_modify
    create_or_modify_medical_devices = EntityApi.create_or_modify_many
    get_medical_device = EntityApi.get
    subscribe_to_medical_device_events = EntityApi.subscribe_to_events
    get_medical_devices = EntityApi.get_many
    delete_medical_device = EntityApi.delete
    delete_medical_devices = EntityApi.delete_many
    filter_medical_devices_by = EntityApi.filter_by
    match_medical_devices_by = EntityApi.match_by


class NotificationApi(EntityApi[Notification]):
    kind = KIND_BY_NAME["Notification"]
    create_or_modify_notification = EntityApi.create_or_modify
    create_or_modify_notifications = EntityApi.create_or_modify_many
    get_notification = EntityApi.get
    subscribe_to_notification_events = EntityApi.subscribe_to_events
    get_notifications = EntityApi.get_many
    delete_notification = EntityApi.delete
    delete_notifications = EntityApi.delete_many
    filter_notifications_by = EntityApi.filter_by
    match_notifications_by = EntityApi.match_by


class UserApi(EntityApi[User]):
    kind = KIND_BY_NAME["User"]

    async def create_or_modify_user(self, user: User) -> User:
        """Create or modify a user. A new password for the logged-in user ends its sessions on the server: this
        API logs in again with it."""
        stored = await self.create_or_modify(user)
        self._keep_own_password([user])
        return stored

    async def create_or_modify_users(self, users: Sequence[User]) -> list[User]:
        stored = await self.create_or_modify_many(users)
        self._keep_own_password(users)
        return stored

    def _keep_own_password(self, users: Sequence[User]) -> None:
        for user in users:
            if user.password is not None and user.login is not None:
                self._transport.password_changed(user.login, user.password)

    get_user = EntityApi.get
    subscribe_to_user_events = EntityApi.subscribe_to_events
    get_users = EntityApi.get_many
    delete_user = EntityApi.delete
    delete_users = EntityApi.delete_many
    filter_users_by = EntityApi.filter_by
    match_users_by = EntityApi.match_by

    async def get_logged_user(self) -> User:
        """The user you are logged in as."""
        return await self._one(await self._transport.request("GET", "/rest/v1/users/current"))


class ExchangeDataApi(EntityApi[ExchangeData]):
    """The exchange data you are the delegator or the delegate of (the keys data owners share)."""

    kind = KIND_BY_NAME["ExchangeData"]
    create_or_modify_exchange_data = EntityApi.create_or_modify
    create_or_modify_exchange_data_records = EntityApi.create_or_modify_many
    get_exchange_data = EntityApi.get
    subscribe_to_exchange_data_events = EntityApi.subscribe_to_events
    get_exchange_data_records = EntityApi.get_many
    delete_exchange_data = EntityApi.delete
    delete_exchange_data_records = EntityApi.delete_many
    filter_exchange_data_by = EntityApi.filter_by
    match_exchange_data_by = EntityApi.match_by
