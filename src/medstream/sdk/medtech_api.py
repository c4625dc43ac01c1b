"""MedTechApi: the SDK's entry point, built with `await MedTechApi.builder()...build()`."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from medstream.crypto.key_store_format import Argon2Parameters
from medstream.errors import DecryptionError, NotFoundError, ValidationError
from medstream.model.entities import KIND_BY_NAME
from medstream.model.healthcare_professional import HealthcareProfessional
from medstream.model.medical_device import MedicalDevice
from medstream.model.patient import Patient
from medstream.sdk.apis import (
    ContactApi,
    DataSampleApi,
    ExchangeDataApi,
    HealthcareElementApi,
    HealthcareProfessionalApi,
    MedicalDeviceApi,
    NotificationApi,
    PatientApi,
    UserApi,
)
from medstream.sdk.crypto_api import CryptoApi
from medstream.sdk.event_stream import EventStreams
from medstream.sdk.key_setup import KeyStoreOptions, open_crypto
from medstream.sdk.transport import Transport

DataOwnerType = Literal["HealthcareProfessional", "Patient", "MedicalDevice"]


@dataclass(frozen=True)
class DataOwnerWithType:
    """The data owner a user acts as, and which kind of data owner it is."""

    type: DataOwnerType
    data_owner: HealthcareProfessional | Patient | MedicalDevice


class MedTechApi:
    """One logged-in connection to a Medstream server, with a sub-API per entity type."""

    def __init__(self, transport: Transport, crypto: CryptoApi | None = None) -> None:
        self.transport = transport
        self.event_streams = EventStreams(transport)
        self._crypto = crypto
        streams = self.event_streams
        self.patient_api = PatientApi(transport, streams, crypto)
        self.data_sample_api = DataSampleApi(transport, streams, crypto)
        self.contact_api = ContactApi(transport, streams, crypto)
        self.healthcare_element_api = HealthcareElementApi(transport, streams, crypto)
        self.healthcare_professional_api = HealthcareProfessionalApi(transport, streams, crypto)
        self.medical_device_api = MedicalDeviceApi(transport, streams, crypto)
        self.notification_api = NotificationApi(transport, streams, crypto)
        self.user_api = UserApi(transport, streams, crypto)
        self.exchange_data_api = ExchangeDataApi(transport, streams, crypto)

    @property
    def crypto(self) -> CryptoApi:
        """The logged-in data owner's keys: fingerprints, verifying a counterparty's key, recovery codes, the key
        vault. ValidationError for a user that acts as no data owner (it has no keys, and encrypts nothing)."""
        if self._crypto is None:
            raise ValidationError("this user acts as no data owner: it has no keys")
        return self._crypto

    @staticmethod
    def builder() -> MedTechApiBuilder:
        return MedTechApiBuilder()

    async def get_data_owner(self) -> DataOwnerWithType:
        """The healthcare professional, patient or device the logged-in user acts as."""
        payload = await self.transport.request("GET", "/rest/v1/data-owners/current")
        kind = KIND_BY_NAME[payload["type"]]
        wire = payload["dataOwner"]
        if self._crypto is not None and self._crypto.encrypts(kind.name):
            # A patient's own record it was not given the key of: its clear fields (id, keys...) still serve.
            with contextlib.suppress(DecryptionError):
                wire = await self._crypto.decrypt(kind.name, wire)
        owner = kind.model.model_validate(wire)
        assert isinstance(owner, HealthcareProfessional | Patient | MedicalDevice)
        return DataOwnerWithType(type=payload["type"], data_owner=owner)

    async def blind_index_tokens(self, entity_type: str, field: str, values: Sequence[Any]) -> list[list[str]] | None:
        """For the filter builders: the token groups that search `values` in the blind-index `field` of
        `entity_type` under every search key this data owner knows (its own, and each delegator's carried by
        exchange data delegated to it); None when the field is searched in clear (the configuration neither
        requires encryption nor encrypts the field, or this user acts as no data owner)."""
        if self._crypto is None:
            return None
        return await self._crypto.blind_search(entity_type, field, values)

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
        self._key_store = KeyStoreOptions()

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

    def with_key_store(
        self, path: str | Path | None = None, passphrase: str | None = None, *, argon2: Argon2Parameters | None = None
    ) -> MedTechApiBuilder:
        """Where the data owner's key store is (default: `$XDG_DATA_HOME/medstream/keys/<host>/<data owner>.json`)
        and the passphrase its private keys are sealed under (none: the file's mode 0600 protects them)."""
        self._key_store = replace(
            self._key_store, path=Path(path) if path is not None else None, passphrase=passphrase, argon2=argon2
        )
        return self

    def with_recovery(self, code: str, blob: str) -> MedTechApiBuilder:
        """A recovery code and the blob `api.crypto.create_recovery_code()` gave with it: when the key store
        lacks the data owner's published keys, they are restored from it (and saved) at login."""
        self._key_store = replace(self._key_store, recovery=(code, blob))
        return self

    def with_key_vault(self, passphrase: str) -> MedTechApiBuilder:
        """The passphrase of the key vault the server keeps for this user (`api.crypto.upload_key_vault`): when the
        key store lacks the data owner's published keys, they are restored from the vault (and saved) at login."""
        self._key_store = replace(self._key_store, vault_passphrase=passphrase)
        return self

    def with_new_key_pair_after_loss(self) -> MedTechApiBuilder:
        """When the data owner's published keys are lost for good (no key store holds them, no recovery code, no
        key vault): make a new key pair at login instead of refusing with MissingKeysError. The lost keys stay
        published as RETIRED, the new one is published, and each counterparty the data owner has exchange data with
        gets a KEY_PAIR_UPDATE notification; what a counterparty shared with it, or it shared with a counterparty,
        becomes readable again once that counterparty answers (`api.crypto.answer_key_pair_updates()`). What it
        shared with no one is lost. Keys at hand are never replaced: with them, this option does nothing."""
        self._key_store = replace(self._key_store, new_key_pair_after_loss=True)
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
            crypto = await self._open_crypto(transport)
        except BaseException:
            await transport.close()
            raise
        return MedTechApi(transport, crypto)

    async def _open_crypto(self, transport: Transport) -> CryptoApi | None:
        """The data owner's keys, opened or made (key_setup.py); None for a user that acts as no data owner."""
        try:
            payload = await transport.request("GET", "/rest/v1/data-owners/current")
        except NotFoundError:
            return None
        return await open_crypto(transport, str(payload["type"]), payload["dataOwner"], self._key_store)
