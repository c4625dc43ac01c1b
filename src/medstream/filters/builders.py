"""Filter builders as in the Medtech SDK: `await DataSampleFilter(api).for_self().by_label_code_filter(...).build()`.

Each method adds one constraint and returns the builder. `await build()` returns the constraint alone, the
IntersectionFilter of all of them, or with none the builder's default: everything shared with the data owner,
or, for the kinds without a data owner (professionals, devices, users), every entity. Builders of data-owner
nodes act for the logged-in user's data owner unless `for_data_owner(id)` names another (the Medtech SDK
requires `for_self()` or `for_data_owner()`; we default to self). `.sort.<method>(...)` adds a constraint and
puts it first; results are always ordered by id. A missing or contradictory argument is a ValidationError at
the call that passed it. `FilterComposition` combines built filters of one entity type.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any, ClassVar, Self

from medstream.errors import ValidationError
from medstream.filters.base import LeafFilter
from medstream.filters.builder_base import DataOwnerFilterBuilder, DataOwnerProvider, FilterBuilder, adds_constraint
from medstream.filters.nodes import (
    AllContactsFilter,
    AllExchangeDataFilter,
    AllHealthcareProfessionalsFilter,
    AllMedicalDevicesFilter,
    AllUsersFilter,
    ContactByIdsFilter,
    ContactByLabelCodeFilter,
    DataSampleByHealthcarePartyBlindIndexFilter,
    DataSampleByHealthcarePartyFilter,
    DataSampleByHealthcarePartyHealthcareElementIdsFilter,
    DataSampleByHealthcarePartyIdentifiersFilter,
    DataSampleByHealthcarePartyPatientFilter,
    DataSampleByHealthcarePartyTagCodeDateFilter,
    DataSampleByIdsFilter,
    ExchangeDataByDelegateFilter,
    ExchangeDataByDelegatorFilter,
    ExchangeDataByIdsFilter,
    HealthcareElementByHealthcarePartyBlindIndexFilter,
    HealthcareElementByHealthcarePartyFilter,
    HealthcareElementByHealthcarePartyIdentifiersFilter,
    HealthcareElementByHealthcarePartyLabelCodeFilter,
    HealthcareElementByHealthcarePartyPatientFilter,
    HealthcareElementByIdsFilter,
    HealthcareProfessionalByIdsFilter,
    HealthcareProfessionalByLabelCodeFilter,
    HealthcareProfessionalByNameFilter,
    MedicalDeviceByIdsFilter,
    MedicalDeviceByLabelCodeFilter,
    NotificationsAfterDateFilter,
    NotificationsByHcPartyAndTypeFilter,
    NotificationsByIdFilter,
    PatientByHealthcarePartyBlindIndexFilter,
    PatientByHealthcarePartyDateOfBirthBetweenFilter,
    PatientByHealthcarePartyFilter,
    PatientByHealthcarePartyGenderEducationProfessionFilter,
    PatientByHealthcarePartyIdentifiersFilter,
    PatientByHealthcarePartyNameContainsFuzzyFilter,
    PatientByHealthcarePartySsinsFilter,
    PatientByIdsFilter,
    UserByIdsFilter,
    UsersByPatientIdFilter,
)
from medstream.filters.tree import ComplementFilter, Filter, IntersectionFilter, UnionFilter
from medstream.model.common import Identifier
from medstream.model.notification import NotificationType
from medstream.model.patient import Gender, Patient


class DataSampleFilter(DataOwnerFilterBuilder):
    """Data samples; without constraints, every data sample shared with the data owner."""

    _default = DataSampleByHealthcarePartyFilter

    @adds_constraint
    def by_ids(self, ids: Sequence[str]) -> Self:
        return self._add("by_ids", DataSampleByIdsFilter, ids=self._strings("by_ids", ids))

    @adds_constraint
    def by_identifiers(self, identifiers: Sequence[Identifier]) -> Self:
        """Data samples with one of these identifiers (matched on system and value); through blind-index tokens
        when the server encrypts identifiers."""
        identifiers = self._identifiers(identifiers)
        blind = self._blind(DataSampleByHealthcarePartyBlindIndexFilter, "identifiers", _wire(identifiers))
        node = DataSampleByHealthcarePartyIdentifiersFilter
        return self._add("by_identifiers", node, blind, identifiers=identifiers)

    @adds_constraint
    def by_blind_index(self, field: str, tokens: Sequence[str]) -> Self:
        """Data samples whose blind index holds one of `tokens` under `field` (`identifiers`): the search over encrypted
        values, by the tokens computed from clear values with the index key."""
        return self._blind_index(DataSampleByHealthcarePartyBlindIndexFilter, field, tokens)

    @adds_constraint
    def by_label_code_filter(
        self,
        label_type: str | None = None,
        label_code: str | None = None,
        code_type: str | None = None,
        code_code: str | None = None,
    ) -> Self:
        """Data samples with this label (its type, and its code if given) and this code (likewise)."""
        self._check_codings("by_label_code_filter", "label", label_type, label_code, code_type, code_code)
        return self._add(
            "by_label_code_filter",
            DataSampleByHealthcarePartyTagCodeDateFilter,
            tag_type=label_type,
            tag_code=label_code,
            code_type=code_type,
            code_code=code_code,
        )

    @adds_constraint
    def by_label_code_date_filter(
        self,
        tag_type: str | None = None,
        tag_code: str | None = None,
        code_type: str | None = None,
        code_code: str | None = None,
        start_value_date: int | None = None,
        end_value_date: int | None = None,
        descending: bool | None = None,
    ) -> Self:
        """As `by_label_code_filter`, with `value_date` within [start_value_date, end_value_date], inclusive,
        either omitted for an open bound; `value_date` is YYYYMMDDhhmmss, so give bounds in that form too.
        `descending` is kept for Medtech compatibility: results are ordered by id."""
        method = "by_label_code_date_filter"
        self._check_codings(method, "tag", tag_type, tag_code, code_type, code_code)
        if start_value_date is not None and end_value_date is not None and start_value_date > end_value_date:
            message = f"start_value_date {start_value_date} is after end_value_date {end_value_date}"
            raise ValidationError(f"{self._where(method)}: {message}")
        return self._add(
            method,
            DataSampleByHealthcarePartyTagCodeDateFilter,
            tag_type=tag_type,
            tag_code=tag_code,
            code_type=code_type,
            code_code=code_code,
            start_value_date=start_value_date,
            end_value_date=end_value_date,
            descending=bool(descending),
        )

    @adds_constraint
    def for_patients(self, patients: Sequence[Patient] | Sequence[str]) -> Self:
        """Data samples of these patients (stored Patients, or patient ids)."""
        patient_ids = self._patient_ids(patients)
        return self._add("for_patients", DataSampleByHealthcarePartyPatientFilter, patient_ids=patient_ids)

    @adds_constraint
    def by_health_element_ids(self, ids: Sequence[str]) -> Self:
        """Data samples linked to one of these healthcare elements."""
        ids = self._strings("by_health_element_ids", ids, "healthcare element id")
        node = DataSampleByHealthcarePartyHealthcareElementIdsFilter
        return self._add("by_health_element_ids", node, healthcare_element_ids=ids)


class PatientFilter(DataOwnerFilterBuilder):
    """Patients; without constraints, every patient shared with the data owner."""

    _default = PatientByHealthcarePartyFilter

    @adds_constraint
    def by_ids(self, ids: Sequence[str]) -> Self:
        return self._add("by_ids", PatientByIdsFilter, ids=self._strings("by_ids", ids))

    @adds_constraint
    def by_identifiers(self, identifiers: Sequence[Identifier]) -> Self:
        """Patients with one of these identifiers (matched on system and value); through blind-index tokens when
        the server encrypts identifiers."""
        identifiers = self._identifiers(identifiers)
        blind = self._blind(PatientByHealthcarePartyBlindIndexFilter, "identifiers", _wire(identifiers))
        return self._add("by_identifiers", PatientByHealthcarePartyIdentifiersFilter, blind, identifiers=identifiers)

    @adds_constraint
    def by_blind_index(self, field: str, tokens: Sequence[str]) -> Self:
        """Patients whose blind index holds one of `tokens` under `field` (`ssin`, `identifiers` or `names`):
        the search over encrypted values, by the tokens computed from clear values with the index key."""
        return self._blind_index(PatientByHealthcarePartyBlindIndexFilter, field, tokens)

    @adds_constraint
    def by_gender_education_profession(
        self, gender: Gender | str, education: str | None = None, profession: str | None = None
    ) -> Self:
        """Patients of this gender, and this education and profession when given."""
        return self._add(
            "by_gender_education_profession",
            PatientByHealthcarePartyGenderEducationProfessionFilter,
            gender=gender,
            education=education,
            profession=profession,
        )

    @adds_constraint
    def with_ssins(self, ssins: Sequence[str]) -> Self:
        """Patients whose SSIN is one of these; through blind-index tokens when the server encrypts the SSIN."""
        ssins = self._strings("with_ssins", ssins, "ssin")
        blind = self._blind(PatientByHealthcarePartyBlindIndexFilter, "ssin", ssins)
        return self._add("with_ssins", PatientByHealthcarePartySsinsFilter, blind, ssins=ssins)

    @adds_constraint
    def of_age(self, age: int, *, today: datetime.date | None = None) -> Self:
        """Patients who are `age` years old today (or on `today`), by their date of birth: see
        `date_of_birth_bounds`."""
        if age < 0:
            raise ValidationError(f"{self._where('of_age')}: age must be 0 or more, not {age}")
        earliest, latest = date_of_birth_bounds(age, today or datetime.date.today())
        node = PatientByHealthcarePartyDateOfBirthBetweenFilter
        return self._add("of_age", node, min_date_of_birth=earliest, max_date_of_birth=latest)

    @adds_constraint
    def date_of_birth_between(self, from_date: int | None = None, to_date: int | None = None) -> Self:
        """Patients born between two dates (YYYYMMDD, both inclusive); an omitted bound is open."""
        where = self._where("date_of_birth_between")
        if from_date is None and to_date is None:
            raise ValidationError(f"{where} needs from_date or to_date (YYYYMMDD)")
        if from_date is not None and to_date is not None and from_date > to_date:
            raise ValidationError(f"{where}: from_date {from_date} is after to_date {to_date}")
        node = PatientByHealthcarePartyDateOfBirthBetweenFilter
        return self._add("date_of_birth_between", node, min_date_of_birth=from_date, max_date_of_birth=to_date)

    @adds_constraint
    def contains_fuzzy(self, search_string: str) -> Self:
        """Patients one of whose names contains `search_string`, ignoring case and accents. When the server
        encrypts names, through blind-index tokens: each word of `search_string` must be a word of one of the
        patient's names, or a prefix of 3 letters or more of one ("helene" and "DUP" find "Hélène Dupré")."""
        node = PatientByHealthcarePartyNameContainsFuzzyFilter
        blind = self._blind(PatientByHealthcarePartyBlindIndexFilter, "names", [search_string])
        return self._add("contains_fuzzy", node, blind, search_string=search_string)


def _wire(identifiers: Sequence[Identifier]) -> list[dict[str, Any]]:
    """Identifiers as wire dicts, as a blind-index search takes them (a dict is passed through as it is)."""
    return [item.to_json_dict() if isinstance(item, Identifier) else dict(item) for item in identifiers]


def date_of_birth_bounds(age: int, today: datetime.date) -> tuple[int, int]:
    """The first and last dates of birth (YYYYMMDD) of someone `age` years old on `today`: born after this
    day `age + 1` years ago, and on this day `age` years ago at the latest. Unlike the Medtech SDK (which takes
    the day of the week for the day of the month) it uses the date; someone born on 29 February has their
    birthday on 1 March in common years."""
    latest = _on_or_before(today.year - age, today.month, today.day)
    earliest = _on_or_before(today.year - age - 1, today.month, today.day) + datetime.timedelta(days=1)
    return _yyyymmdd(earliest), _yyyymmdd(latest)


def _on_or_before(year: int, month: int, day: int) -> datetime.date:
    """That date, or 28 February for a 29 February of a common year."""
    try:
        return datetime.date(year, month, day)
    except ValueError:
        return datetime.date(year, month, day - 1)


def _yyyymmdd(day: datetime.date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


class HealthcareElementFilter(DataOwnerFilterBuilder):
    """Healthcare elements; without constraints, every healthcare element shared with the data owner."""

    _default = HealthcareElementByHealthcarePartyFilter

    @adds_constraint
    def by_ids(self, ids: Sequence[str]) -> Self:
        return self._add("by_ids", HealthcareElementByIdsFilter, ids=self._strings("by_ids", ids))

    @adds_constraint
    def by_identifiers(self, identifiers: Sequence[Identifier]) -> Self:
        """Healthcare elements with one of these identifiers (matched on system and value); through blind-index
        tokens when the server encrypts identifiers."""
        identifiers = self._identifiers(identifiers)
        blind = self._blind(HealthcareElementByHealthcarePartyBlindIndexFilter, "identifiers", _wire(identifiers))
        node = HealthcareElementByHealthcarePartyIdentifiersFilter
        return self._add("by_identifiers", node, blind, identifiers=identifiers)

    @adds_constraint
    def by_blind_index(self, field: str, tokens: Sequence[str]) -> Self:
        """Healthcare elements whose blind index holds one of `tokens` under `field` (`identifiers`): the search
        over encrypted values, by the tokens computed from clear values with the index key."""
        return self._blind_index(HealthcareElementByHealthcarePartyBlindIndexFilter, field, tokens)

    @adds_constraint
    def by_label_code_filter(
        self,
        label_type: str | None = None,
        label_code: str | None = None,
        code_type: str | None = None,
        code_code: str | None = None,
    ) -> Self:
        """Healthcare elements with this label (its type, and its code if given) and this code (likewise)."""
        self._check_codings("by_label_code_filter", "label", label_type, label_code, code_type, code_code)
        return self._add(
            "by_label_code_filter",
            HealthcareElementByHealthcarePartyLabelCodeFilter,
            tag_type=label_type,
            tag_code=label_code,
            code_type=code_type,
            code_code=code_code,
        )

    @adds_constraint
    def for_patients(self, patients: Sequence[Patient] | Sequence[str]) -> Self:
        """Healthcare elements of these patients (stored Patients, or patient ids)."""
        patient_ids = self._patient_ids(patients)
        return self._add("for_patients", HealthcareElementByHealthcarePartyPatientFilter, patient_ids=patient_ids)


class _LabelCodeBuilder(FilterBuilder):
    """`by_label_code_filter` for the kinds without a data owner, whose nodes name the label part `label`."""

    _label_code_node: ClassVar[type[LeafFilter]]

    @adds_constraint
    def by_label_code_filter(
        self,
        label_type: str | None = None,
        label_code: str | None = None,
        code_type: str | None = None,
        code_code: str | None = None,
    ) -> Self:
        """Entities with this label (its type, and its code if given) and this code (likewise)."""
        self._check_codings("by_label_code_filter", "label", label_type, label_code, code_type, code_code)
        fields: dict[str, Any] = {
            "label_type": label_type,
            "label_code": label_code,
            "code_type": code_type,
            "code_code": code_code,
        }
        return self._add("by_label_code_filter", self._label_code_node, **fields)


class HealthcareProfessionalFilter(_LabelCodeBuilder):
    """Healthcare professionals; without constraints, all of them (that you may read)."""

    _default = AllHealthcareProfessionalsFilter
    _label_code_node = HealthcareProfessionalByLabelCodeFilter

    @adds_constraint
    def by_ids(self, ids: Sequence[str]) -> Self:
        return self._add("by_ids", HealthcareProfessionalByIdsFilter, ids=self._strings("by_ids", ids))

    @adds_constraint
    def by_matches(self, search_string: str) -> Self:
        """Professionals one of whose names contains `search_string`, ignoring case and accents."""
        return self._add("by_matches", HealthcareProfessionalByNameFilter, search_string=search_string)


class ContactFilter(_LabelCodeBuilder):
    """Contacts; without constraints, all of them (that you may read)."""

    _default = AllContactsFilter
    _label_code_node = ContactByLabelCodeFilter

    @adds_constraint
    def by_ids(self, ids: Sequence[str]) -> Self:
        return self._add("by_ids", ContactByIdsFilter, ids=self._strings("by_ids", ids))


class MedicalDeviceFilter(_LabelCodeBuilder):
    """Medical devices; without constraints, all of them (that you may read)."""

    _default = AllMedicalDevicesFilter
    _label_code_node = MedicalDeviceByLabelCodeFilter

    @adds_constraint
    def by_ids(self, ids: Sequence[str]) -> Self:
        return self._add("by_ids", MedicalDeviceByIdsFilter, ids=self._strings("by_ids", ids))


class NotificationFilter(DataOwnerFilterBuilder):
    """Notifications; without constraints, every notification shared with the data owner (after date 0)."""

    _default = NotificationsAfterDateFilter
    _default_fields: ClassVar[dict[str, Any]] = {"date": 0}

    @adds_constraint
    def by_ids(self, ids: Sequence[str]) -> Self:
        return self._add("by_ids", NotificationsByIdFilter, ids=self._strings("by_ids", ids))

    @adds_constraint
    def with_type(self, type: NotificationType | str) -> Self:
        """Notifications of this type."""
        return self._add("with_type", NotificationsByHcPartyAndTypeFilter, type=type)

    @adds_constraint
    def after_date(self, date: int) -> Self:
        """Notifications created at or after `date` (epoch milliseconds)."""
        return self._add("after_date", NotificationsAfterDateFilter, date=date)


class UserFilter(FilterBuilder):
    """Users; without constraints, all of them (that you may read)."""

    _default = AllUsersFilter

    @adds_constraint
    def by_ids(self, ids: Sequence[str]) -> Self:
        return self._add("by_ids", UserByIdsFilter, ids=self._strings("by_ids", ids))

    @adds_constraint
    def by_patient_id(self, patient_id: str) -> Self:
        """The users acting as the patient `patient_id`."""
        return self._add("by_patient_id", UsersByPatientIdFilter, patient_id=patient_id)


class ExchangeDataFilter(FilterBuilder):
    """Exchange data; without constraints, all of it that you may read (yours as delegator or delegate)."""

    _default = AllExchangeDataFilter

    @adds_constraint
    def by_ids(self, ids: Sequence[str]) -> Self:
        return self._add("by_ids", ExchangeDataByIdsFilter, ids=self._strings("by_ids", ids))

    @adds_constraint
    def by_delegator(self, delegator_id: str) -> Self:
        """The exchange data whose delegator is `delegator_id`."""
        return self._add("by_delegator", ExchangeDataByDelegatorFilter, delegator_id=delegator_id)

    @adds_constraint
    def by_delegate(self, delegate_id: str) -> Self:
        """The exchange data whose delegate is `delegate_id`."""
        return self._add("by_delegate", ExchangeDataByDelegateFilter, delegate_id=delegate_id)


class FilterComposition:
    """Combines built filters of one entity type (the Medtech SDK's filterDsl)."""

    @staticmethod
    def union(*filters: Filter) -> UnionFilter:
        """The entities at least one of `filters` matches."""
        return UnionFilter(filters=_of_one_type("FilterComposition.union", filters))

    @staticmethod
    def intersection(*filters: Filter) -> IntersectionFilter:
        """The entities every one of `filters` matches."""
        return IntersectionFilter(filters=_of_one_type("FilterComposition.intersection", filters))

    @staticmethod
    def complement(super_set: Filter, sub_set: Filter) -> ComplementFilter:
        """The entities `super_set` matches and `sub_set` does not."""
        _of_one_type("FilterComposition.complement", (super_set, sub_set))
        return ComplementFilter(super_set=super_set, sub_set=sub_set)


def _of_one_type(where: str, filters: tuple[Filter, ...]) -> tuple[Filter, ...]:
    if not filters:
        raise ValidationError(f"{where} needs at least one filter")
    for position, node in enumerate(filters):
        if isinstance(node, FilterBuilder):
            raise ValidationError(f"{where}: argument {position + 1} is a builder; pass `await builder.build()`")
        if not isinstance(node, LeafFilter | IntersectionFilter | UnionFilter | ComplementFilter):
            raise ValidationError(f"{where}: argument {position + 1} is a {type(node).__name__}, not a filter")
    types = list(dict.fromkeys(node.entity_type for node in filters))
    if len(types) > 1:
        raise ValidationError(f"{where} mixes entity types {' and '.join(types)}: combine filters of one type")
    return filters


__all__ = [
    "ContactFilter",
    "DataOwnerProvider",
    "DataSampleFilter",
    "FilterComposition",
    "HealthcareElementFilter",
    "HealthcareProfessionalFilter",
    "MedicalDeviceFilter",
    "NotificationFilter",
    "PatientFilter",
    "UserFilter",
    "date_of_birth_bounds",
]
