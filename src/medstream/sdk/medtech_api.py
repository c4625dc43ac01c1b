"""MedTechApi: the SDK's entry point, built with `await MedTechApi.builder()...build()`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

from medstream.errors import ValidationError
from medstream.model.entities import KIND_BY_NAME
from medstream.model.healthcare_professional import HealthcareProfessional
from medstream.model.medical_device import MedicalDevice
from medstream.model.patient import Patient
from medstream.sdk.apis import (
    DataSampleApi,
    ExchangeDataApi,
    HealthcareElementApi,
    HealthcareProfessionalApi,
    MedicalDeviceApi,
    NotificationApi,
    PatientApi,
    UserApi,
)
from medstream.sdk.event_stream import EventStreams
from medstream.sdk.transport import Transport

DataOwnerType = Literal["HealthcareProfessional", "Patient", "MedicalDevice"]


@dataclass(frozen=True)
class DataOwnerWithType:
    """The data owner a user acts as, and which kind of data owner it is."""

    type: DataOwnerType
    data_owner: HealthcareProfessional | Patient | MedicalDevice


class MedTechApi:
    """One logged-in connection to a Medstream server, with a sub-API per entity type."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.event_streams = EventStreams(transport)
        self.patient_api = PatientApi(transport, self.event_streams)
        self.data_sample_api = DataSampleApi(transport, self.event_streams)
        self.healthcare_element_api = HealthcareElementApi(transport, self.event_streams)
        self.healthcare_professional_api = HealthcareProfessionalApi(transport, self.event_streams)
        self.medical_device_api = MedicalDeviceApi(transport, self.event_streams)
        self.notification_api = NotificationApi(transport, self.event_streams)
        self.user_api = UserApi(transport, self.event_streams)
        self.exchange_data_api = ExchangeDataApi(transport, self.event_streams)

    @staticmethod
    def builder() -> MedTechApiBuilder:
        return MedTechApiBuilder()

    async def get_data_owner(self) -> DataOwnerWithType:
        """The healthcare professional, patient or device the logged-in user acts as."""
        payload = await self.transport.request("GET", "/rest/v1/data-owners/current")
        kind = KIND_BY_NAME[payload["type"]]
        owner = kind.model.model_validate(payload["dataOwner"])
        assert isinstance(owner, HealthcareProfessional | Patient | MedicalDevice)
        return DataOwnerWithType(type=payload["type"], data_owner=owner)

    async def logout(self) -> None:
        """End every session of the logged-in user on the server, then close: the user's tokens stop working
        everywhere (other MedTechApi instances of the user log in again on their next call), and its event
        sockets are closed."""
        try:
            await self.transport.logout()
        finally:
            await self.close()

    async def close(self) -> None:
        """Close every subscription, then the HTTP connections. The user's sessions stay open (`logout` ends
        them): other instances logged in as the same user keep working."""
        await self.event_streams.close()
        await self.transport.close()

    async def __aenter__(self) -> MedTechApi:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class MedTechApiBuilder:
    """Collects the server URL and credentials; `await build()` logs in and returns the API."""

    def __init__(self) -> None:
        self._urls: list[str] = []
        self._username: str | None = None
        self._password: str | None = None
        self._timeout = 30.0

    def with_url(self, url: str) -> MedTechApiBuilder:
        self._urls = [url]
        return self

    def with_urls(self, urls: Sequence[str]) -> MedTechApiBuilder:
        """Several nodes of one deployment: calls and subscriptions move to the next when one is unreachable."""
        self._urls = list(urls)
        return self

    def with_username(self, username: str) -> MedTechApiBuilder:
        self._username = username
        return self

    def with_password(self, password: str) -> MedTechApiBuilder:
        self._password = password
        return self

    def with_timeout(self, seconds: float) -> MedTechApiBuilder:
        self._timeout = seconds
        return self

    async def build(self) -> MedTechApi:
        missing = [
            name
            for name, value in (
                ("url", self._urls),
                ("username", self._username),
                ("password", self._password),
            )
            if not value
        ]
        if missing:
            raise ValidationError(f"MedTechApi.builder() needs {', '.join(missing)}")
        assert self._urls and self._username and self._password
        transport = Transport(self._urls, self._username, self._password, timeout=self._timeout)
        try:
            await transport.login()
        except BaseException:
            await transport.close()
            raise
        return MedTechApi(transport)
