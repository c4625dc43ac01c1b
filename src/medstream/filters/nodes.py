"""The leaf filter nodes, one per Medtech filter `$type`, each lowered to its constraint atoms.

Wire names are the Medtech SDK's filter `$type`s (docs/filters.md). "ByHealthcareParty" nodes restrict to the
entities shared with the data owner `healthcarePartyId` (`hcpId` in the two nodes Medtech names so).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from medstream.filters.base import (
    ByBlindIndex,
    ByHcpId,
    ByIdentifiers,
    ByIds,
    ByPatients,
    ForDataOwner,
    Int64,
    LabelCodeFilter,
    LeafFilter,
    NonEmptyText,
    StringSet,
    TagCodeFilter,
    searchable,
)
from medstream.filters.constraints import (
    Constraint,
    FieldBetween,
    FieldIn,
    HasHealthcareElement,
    NameContains,
)
from medstream.model.notification import NotificationType
from medstream.model.patient import Gender
from medstream.model.text import normalize_for_search

# --- DataSample --------------------------------------------------------------------------------------------


class DataSampleByIdsFilter(ByIds):
    entity_type: ClassVar[str] = "DataSample"
    filter_type: Literal["DataSampleByIdsFilter"] = Field("DataSampleByIdsFilter", alias="$type")


class DataSampleByHealthcarePartyFilter(ByHcpId):
    """Every data sample shared with `hcpId` (the builder's default)."""

    entity_type: ClassVar[str] = "DataSample"
    filter_type: Literal["DataSampleByHealthcarePartyFilter"] = Field(
        "DataSampleByHealthcarePartyFilter", alias="$type"
    )


class DataSampleByHealthcarePartyIdentifiersFilter(ByIdentifiers):
    entity_type: ClassVar[str] = "DataSample"
    filter_type: Literal["DataSampleByHealthcarePartyIdentifiersFilter"] = Field(
        "DataSampleByHealthcarePartyIdentifiersFilter", alias="$type"
    )


class DataSampleByHealthcarePartyBlindIndexFilter(ByBlindIndex):
    """Data samples whose blind index holds one of `tokens` under `field` (`identifiers`)."""

    entity_type: ClassVar[str] = "DataSample"
    filter_type: Literal["DataSampleByHealthcarePartyBlindIndexFilter"] = Field(
        "DataSampleByHealthcarePartyBlindIndexFilter", alias="$type"
    )


class DataSampleByHealthcarePartyTagCodeDateFilter(TagCodeFilter):
    """Label and code parts, and `valueDate` within [startValueDate, endValueDate]. `descending` is kept for
    Medtech compatibility and changes nothing: results are ordered by id."""

    entity_type: ClassVar[str] = "DataSample"
    filter_type: Literal["DataSampleByHealthcarePartyTagCodeDateFilter"] = Field(
        "DataSampleByHealthcarePartyTagCodeDateFilter", alias="$type"
    )
    start_value_date: Int64 | None = None
    end_value_date: Int64 | None = None
    descending: bool = False

    def _constraints(self) -> Iterator[Constraint]:
        yield from super()._constraints()
        if self.start_value_date is not None or self.end_value_date is not None:
            yield FieldBetween("value_date", self.start_value_date, self.end_value_date)


class DataSampleByHealthcarePartyPatientFilter(ByPatients):
    entity_type: ClassVar[str] = "DataSample"
    filter_type: Literal["DataSampleByHealthcarePartyPatientFilter"] = Field(
        "DataSampleByHealthcarePartyPatientFilter", alias="$type"
    )


class DataSampleByHealthcarePartyHealthcareElementIdsFilter(ForDataOwner):
    entity_type: ClassVar[str] = "DataSample"
    filter_type: Literal["DataSampleByHealthcarePartyHealthcareElementIdsFilter"] = Field(
        "DataSampleByHealthcarePartyHealthcareElementIdsFilter", alias="$type"
    )
    healthcare_element_ids: StringSet

    def _constraints(self) -> Iterator[Constraint]:
        yield from super()._constraints()
        yield HasHealthcareElement(self.healthcare_element_ids)


# --- Patient -----------------------------------------------------------------------------------------------


class PatientByIdsFilter(ByIds):
    entity_type: ClassVar[str] = "Patient"
    filter_type: Literal["PatientByIdsFilter"] = Field("PatientByIdsFilter", alias="$type")


class PatientByHealthcarePartyFilter(ForDataOwner):
    """Every patient shared with `healthcarePartyId` (the builder's default)."""

    entity_type: ClassVar[str] = "Patient"
    filter_type: Literal["PatientByHealthcarePartyFilter"] = Field("PatientByHealthcarePartyFilter", alias="$type")


class PatientByHealthcarePartyIdentifiersFilter(ByIdentifiers):
    entity_type: ClassVar[str] = "Patient"
    filter_type: Literal["PatientByHealthcarePartyIdentifiersFilter"] = Field(
        "PatientByHealthcarePartyIdentifiersFilter", alias="$type"
    )


class PatientByHealthcarePartyBlindIndexFilter(ByBlindIndex):
    """Patients whose blind index holds one of `tokens` under `field` (`ssin`, `identifiers` or `names`)."""

    entity_type: ClassVar[str] = "Patient"
    filter_type: Literal["PatientByHealthcarePartyBlindIndexFilter"] = Field(
        "PatientByHealthcarePartyBlindIndexFilter", alias="$type"
    )


class PatientByHealthcarePartyGenderEducationProfessionFilter(ForDataOwner):
    entity_type: ClassVar[str] = "Patient"
    filter_type: Literal["PatientByHealthcarePartyGenderEducationProfessionFilter"] = Field(
        "PatientByHealthcarePartyGenderEducationProfessionFilter", alias="$type"
    )
    gender: Gender
    education: str | None = None
    profession: str | None = None

    def _constraints(self) -> Iterator[Constraint]:
        yield from super()._constraints()
        yield FieldIn("gender", frozenset({self.gender.value}))
        if self.education is not None:
            yield FieldIn("education", frozenset({self.education}))
        if self.profession is not None:
            yield FieldIn("profession", frozenset({self.profession}))


class PatientByHealthcarePartySsinsFilter(ForDataOwner):
    entity_type: ClassVar[str] = "Patient"
    filter_type: Literal["PatientByHealthcarePartySsinsFilter"] = Field(
        "PatientByHealthcarePartySsinsFilter", alias="$type"
    )
    ssins: StringSet

    def _constraints(self) -> Iterator[Constraint]:
        yield from super()._constraints()
        yield FieldIn("ssin", self.ssins)


class PatientByHealthcarePartyDateOfBirthBetweenFilter(ForDataOwner):
    """`dateOfBirth` (YYYYMMDD) within [minDateOfBirth, maxDateOfBirth]; an absent bound is open."""

    entity_type: ClassVar[str] = "Patient"
    filter_type: Literal["PatientByHealthcarePartyDateOfBirthBetweenFilter"] = Field(
        "PatientByHealthcarePartyDateOfBirthBetweenFilter", alias="$type"
    )
    min_date_of_birth: Int64 | None = None
    max_date_of_birth: Int64 | None = None

    def _constraints(self) -> Iterator[Constraint]:
        yield from super()._constraints()
        if self.min_date_of_birth is not None or self.max_date_of_birth is not None:
            yield FieldBetween("date_of_birth", self.min_date_of_birth, self.max_date_of_birth)


class PatientByHealthcarePartyNameContainsFuzzyFilter(ForDataOwner):
    """Accent- and case-insensitive "contains" over the patient's names (see `names.search_name`)."""

    entity_type: ClassVar[str] = "Patient"
    filter_type: Literal["PatientByHealthcarePartyNameContainsFuzzyFilter"] = Field(
        "PatientByHealthcarePartyNameContainsFuzzyFilter", alias="$type"
    )
    search_string: str

    _check_search_string = field_validator("search_string")(searchable)

    def _constraints(self) -> Iterator[Constraint]:
        yield from super()._constraints()
        yield NameContains(normalize_for_search(self.search_string))


# --- HealthcareElement -------------------------------------------------------------------------------------


class HealthcareElementByIdsFilter(ByIds):
    entity_type: ClassVar[str] = "HealthcareElement"
    filter_type: Literal["HealthcareElementByIdsFilter"] = Field("HealthcareElementByIdsFilter", alias="$type")


class HealthcareElementByHealthcarePartyFilter(ByHcpId):
    """Every healthcare element shared with `hcpId` (the builder's default)."""

    entity_type: ClassVar[str] = "HealthcareElement"
    filter_type: Literal["HealthcareElementByHealthcarePartyFilter"] = Field(
        "HealthcareElementByHealthcarePartyFilter", alias="$type"
    )


class HealthcareElementByHealthcarePartyIdentifiersFilter(ByIdentifiers):
    entity_type: ClassVar[str] = "HealthcareElement"
    filter_type: Literal["HealthcareElementByHealthcarePartyIdentifiersFilter"] = Field(
        "HealthcareElementByHealthcarePartyIdentifiersFilter", alias="$type"
    )


class HealthcareElementByHealthcarePartyBlindIndexFilter(ByBlindIndex):
    """Healthcare elements whose blind index holds one of `tokens` under `field` (`identifiers`)."""

    entity_type: ClassVar[str] = "HealthcareElement"
    filter_type: Literal["HealthcareElementByHealthcarePartyBlindIndexFilter"] = Field(
        "HealthcareElementByHealthcarePartyBlindIndexFilter", alias="$type"
    )


class HealthcareElementByHealthcarePartyLabelCodeFilter(TagCodeFilter):
    entity_type: ClassVar[str] = "HealthcareElement"
    filter_type: Literal["HealthcareElementByHealthcarePartyLabelCodeFilter"] = Field(
        "HealthcareElementByHealthcarePartyLabelCodeFilter", alias="$type"
    )


class HealthcareElementByHealthcarePartyPatientFilter(ByPatients):
    entity_type: ClassVar[str] = "HealthcareElement"
    filter_type: Literal["HealthcareElementByHealthcarePartyPatientFilter"] = Field(
        "HealthcareElementByHealthcarePartyPatientFilter", alias="$type"
    )


# --- HealthcareProfessional --------------------------------------------------------------------------------


class HealthcareProfessionalByIdsFilter(ByIds):
    entity_type: ClassVar[str] = "HealthcareProfessional"
    filter_type: Literal["HealthcareProfessionalByIdsFilter"] = Field(
        "HealthcareProfessionalByIdsFilter", alias="$type"
    )


class AllHealthcareProfessionalsFilter(LeafFilter):
    entity_type: ClassVar[str] = "HealthcareProfessional"
    filter_type: Literal["AllHealthcareProfessionalsFilter"] = Field("AllHealthcareProfessionalsFilter", alias="$type")


class HealthcareProfessionalByLabelCodeFilter(LabelCodeFilter):
    entity_type: ClassVar[str] = "HealthcareProfessional"
    filter_type: Literal["HealthcareProfessionalByLabelCodeFilter"] = Field(
        "HealthcareProfessionalByLabelCodeFilter", alias="$type"
    )


class HealthcareProfessionalByNameFilter(LeafFilter):
    """Accent- and case-insensitive "contains" over the professional's names (see `names.search_name`)."""

    entity_type: ClassVar[str] = "HealthcareProfessional"
    filter_type: Literal["HealthcareProfessionalByNameFilter"] = Field(
        "HealthcareProfessionalByNameFilter", alias="$type"
    )
    search_string: str

    _check_search_string = field_validator("search_string")(searchable)

    def _constraints(self) -> Iterator[Constraint]:
        yield NameContains(normalize_for_search(self.search_string))


# --- Contact -----------------------------------------------------------------------------------------------


class ContactByIdsFilter(ByIds):
    entity_type: ClassVar[str] = "Contact"
    filter_type: Literal["ContactByIdsFilter"] = Field("ContactByIdsFilter", alias="$type")


class AllContactsFilter(LeafFilter):
    entity_type: ClassVar[str] = "Contact"
    filter_type: Literal["AllContactsFilter"] = Field("AllContactsFilter", alias="$type")


class ContactByLabelCodeFilter(LabelCodeFilter):
    entity_type: ClassVar[str] = "Contact"
    filter_type: Literal["ContactByLabelCodeFilter"] = Field("ContactByLabelCodeFilter", alias="$type")


# --- MedicalDevice -----------------------------------------------------------------------------------------


class MedicalDeviceByIdsFilter(ByIds):
    entity_type: ClassVar[str] = "MedicalDevice"
    filter_type: Literal["MedicalDeviceByIdsFilter"] = Field("MedicalDeviceByIdsFilter", alias="$type")


class AllMedicalDevicesFilter(LeafFilter):
    entity_type: ClassVar[str] = "MedicalDevice"
    filter_type: Literal["AllMedicalDevicesFilter"] = Field("AllMedicalDevicesFilter", alias="$type")


class MedicalDeviceByLabelCodeFilter(LabelCodeFilter):
    entity_type: ClassVar[str] = "MedicalDevice"
    filter_type: Literal["MedicalDeviceByLabelCodeFilter"] = Field("MedicalDeviceByLabelCodeFilter", alias="$type")


# --- Notification ------------------------------------------------------------------------------------------


class NotificationsByIdFilter(ByIds):
    entity_type: ClassVar[str] = "Notification"
    filter_type: Literal["NotificationsByIdFilter"] = Field("NotificationsByIdFilter", alias="$type")


class NotificationsByHcPartyAndTypeFilter(ForDataOwner):
    entity_type: ClassVar[str] = "Notification"
    filter_type: Literal["NotificationsByHcPartyAndTypeFilter"] = Field(
        "NotificationsByHcPartyAndTypeFilter", alias="$type"
    )
    type: NotificationType

    def _constraints(self) -> Iterator[Constraint]:
        yield from super()._constraints()
        yield FieldIn("type", frozenset({self.type.value}))


class NotificationsAfterDateFilter(ForDataOwner):
    """Notifications created at or after `date` (epoch ms, inclusive: `date: 0` means all, as in Medtech)."""

    entity_type: ClassVar[str] = "Notification"
    filter_type: Literal["NotificationsAfterDateFilter"] = Field("NotificationsAfterDateFilter", alias="$type")
    date: Int64

    def _constraints(self) -> Iterator[Constraint]:
        yield from super()._constraints()
        yield FieldBetween("created", self.date, None)


# --- User --------------------------------------------------------------------------------------------------


class UserByIdsFilter(ByIds):
    entity_type: ClassVar[str] = "User"
    filter_type: Literal["UserByIdsFilter"] = Field("UserByIdsFilter", alias="$type")


class UsersByPatientIdFilter(LeafFilter):
    """The users acting as the patient `patientId`."""

    entity_type: ClassVar[str] = "User"
    filter_type: Literal["UsersByPatientIdFilter"] = Field("UsersByPatientIdFilter", alias="$type")
    patient_id: NonEmptyText

    def _constraints(self) -> Iterator[Constraint]:
        yield FieldIn("patient_id", frozenset({self.patient_id}))


class AllUsersFilter(LeafFilter):
    entity_type: ClassVar[str] = "User"
    filter_type: Literal["AllUsersFilter"] = Field("AllUsersFilter", alias="$type")


# --- ExchangeData ------------------------------------------------------------------------------------------


class ExchangeDataByIdsFilter(ByIds):
    entity_type: ClassVar[str] = "ExchangeData"
    filter_type: Literal["ExchangeDataByIdsFilter"] = Field("ExchangeDataByIdsFilter", alias="$type")


class ExchangeDataByDelegatorFilter(LeafFilter):
    """The exchange data whose delegator is `delegatorId` (the data owner that shares its keys)."""

    entity_type: ClassVar[str] = "ExchangeData"
    filter_type: Literal["ExchangeDataByDelegatorFilter"] = Field("ExchangeDataByDelegatorFilter", alias="$type")
    delegator_id: NonEmptyText

    def _constraints(self) -> Iterator[Constraint]:
        yield FieldIn("delegator", frozenset({self.delegator_id}))


class ExchangeDataByDelegateFilter(LeafFilter):
    """The exchange data whose delegate is `delegateId` (the data owner the keys are shared with)."""

    entity_type: ClassVar[str] = "ExchangeData"
    filter_type: Literal["ExchangeDataByDelegateFilter"] = Field("ExchangeDataByDelegateFilter", alias="$type")
    delegate_id: NonEmptyText

    def _constraints(self) -> Iterator[Constraint]:
        yield FieldIn("delegate", frozenset({self.delegate_id}))


class AllExchangeDataFilter(LeafFilter):
    entity_type: ClassVar[str] = "ExchangeData"
    filter_type: Literal["AllExchangeDataFilter"] = Field("AllExchangeDataFilter", alias="$type")


LEAF_TYPES: tuple[type[LeafFilter], ...] = (
    DataSampleByIdsFilter,
    DataSampleByHealthcarePartyFilter,
    DataSampleByHealthcarePartyIdentifiersFilter,
    DataSampleByHealthcarePartyBlindIndexFilter,
    DataSampleByHealthcarePartyTagCodeDateFilter,
    DataSampleByHealthcarePartyPatientFilter,
    DataSampleByHealthcarePartyHealthcareElementIdsFilter,
    PatientByIdsFilter,
    PatientByHealthcarePartyFilter,
    PatientByHealthcarePartyIdentifiersFilter,
    PatientByHealthcarePartyBlindIndexFilter,
    PatientByHealthcarePartyGenderEducationProfessionFilter,
    PatientByHealthcarePartySsinsFilter,
    PatientByHealthcarePartyDateOfBirthBetweenFilter,
    PatientByHealthcarePartyNameContainsFuzzyFilter,
    HealthcareElementByIdsFilter,
    HealthcareElementByHealthcarePartyFilter,
    HealthcareElementByHealthcarePartyIdentifiersFilter,
    HealthcareElementByHealthcarePartyBlindIndexFilter,
    HealthcareElementByHealthcarePartyLabelCodeFilter,
    HealthcareElementByHealthcarePartyPatientFilter,
    HealthcareProfessionalByIdsFilter,
    AllHealthcareProfessionalsFilter,
    HealthcareProfessionalByLabelCodeFilter,
    HealthcareProfessionalByNameFilter,
    MedicalDeviceByIdsFilter,
    AllMedicalDevicesFilter,
    MedicalDeviceByLabelCodeFilter,
    ContactByIdsFilter,
    AllContactsFilter,
    ContactByLabelCodeFilter,
    NotificationsByIdFilter,
    NotificationsByHcPartyAndTypeFilter,
    NotificationsAfterDateFilter,
    UserByIdsFilter,
    UsersByPatientIdFilter,
    AllUsersFilter,
    ExchangeDataByIdsFilter,
    ExchangeDataByDelegatorFilter,
    ExchangeDataByDelegateFilter,
    AllExchangeDataFilter,
)
