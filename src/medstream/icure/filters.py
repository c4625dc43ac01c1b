"""iCure's filters (`$type`s) as Medstream filter nodes, for the subscriptions of `/ws/v2`.

Each iCure filter served is parsed with exactly its field set, and becomes the Medstream node with the same
meaning (filters.md); any other `$type` is refused, naming the ones served, or, for iCure's patient searches by
a field Medstream keeps encrypted (names, ssin, identifiers), saying so: the server cannot read those values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import pydantic
from pydantic import Field

from medstream.errors import ValidationError
from medstream.events.protocol import MAX_CLOSE_REASON_BYTES
from medstream.filters.nodes import (
    DataSampleByHealthcarePartyTagCodeDateFilter,
    HealthcareElementByHealthcarePartyFilter,
    HealthcareElementByHealthcarePartyLabelCodeFilter,
    HealthcareElementByIdsFilter,
    PatientByHealthcarePartyFilter,
)
from medstream.filters.tree import Filter
from medstream.icure.shapes import IcureModel


class ServiceByHcPartyTagCodeDateFilter(IcureModel):
    """Services shared with a data owner, by tag and/or code, and value date."""

    type_: Literal["ServiceByHcPartyTagCodeDateFilter"] = Field(alias="$type")
    desc: str | None = None
    healthcare_party_id: str | None = None
    patient_secret_foreign_keys: list[str] | None = None
    tag_type: str | None = None
    tag_code: str | None = None
    code_type: str | None = None
    code_code: str | None = None
    start_value_date: int | None = None
    end_value_date: int | None = None
    descending: bool = False


class PatientByHcPartyFilter(IcureModel):
    """Every patient shared with a data owner."""

    type_: Literal["PatientByHcPartyFilter"] = Field(alias="$type")
    desc: str | None = None
    healthcare_party_id: str | None = None


class HealthElementByHcPartyFilter(IcureModel):
    """Every health element shared with a data owner (cardinal's `HealthElementFilters` "for self" and "for data
    owner")."""

    type_: Literal["HealthElementByHcPartyFilter"] = Field(alias="$type")
    desc: str | None = None
    hcp_id: str = Field(min_length=1)


class HealthElementByHcPartyTagCodeFilter(IcureModel):
    """Health elements shared with a data owner, by tag and/or code (`by_tag_...`, `by_code_...`)."""

    type_: Literal["HealthElementByHcPartyTagCodeFilter"] = Field(alias="$type")
    desc: str | None = None
    healthcare_party_id: str = Field(min_length=1)
    code_type: str | None = None
    code_code: str | None = None
    tag_type: str | None = None
    tag_code: str | None = None
    status: int | None = None


class HealthElementByIdsFilter(IcureModel):
    """The health elements with one of `ids`."""

    type_: Literal["HealthElementByIdsFilter"] = Field(alias="$type")
    desc: str | None = None
    ids: list[str] = Field(max_length=10_000)


def _patient_by_hc_party(data: Mapping[str, Any]) -> Filter:
    parsed = PatientByHcPartyFilter.model_validate(data)
    if parsed.healthcare_party_id is None:
        raise ValidationError("PatientByHcPartyFilter: Medstream needs its healthcarePartyId")
    return PatientByHealthcarePartyFilter(healthcare_party_id=parsed.healthcare_party_id)


def _service_by_tag_code_date(data: Mapping[str, Any]) -> Filter:
    parsed = ServiceByHcPartyTagCodeDateFilter.model_validate(data)
    if parsed.healthcare_party_id is None:
        raise ValidationError("ServiceByHcPartyTagCodeDateFilter: Medstream needs its healthcarePartyId")
    if parsed.patient_secret_foreign_keys is not None:
        raise ValidationError(
            "ServiceByHcPartyTagCodeDateFilter: Medstream does not select services by patientSecretForeignKeys"
        )
    return DataSampleByHealthcarePartyTagCodeDateFilter(
        healthcare_party_id=parsed.healthcare_party_id,
        tag_type=parsed.tag_type,
        tag_code=parsed.tag_code,
        code_type=parsed.code_type,
        code_code=parsed.code_code,
        start_value_date=parsed.start_value_date,
        end_value_date=parsed.end_value_date,
        descending=parsed.descending,
    )


def _health_element_by_hc_party(data: Mapping[str, Any]) -> Filter:
    parsed = HealthElementByHcPartyFilter.model_validate(data)
    return HealthcareElementByHealthcarePartyFilter(hcp_id=parsed.hcp_id)


def _health_element_by_tag_code(data: Mapping[str, Any]) -> Filter:
    parsed = HealthElementByHcPartyTagCodeFilter.model_validate(data)
    if parsed.status is not None:
        raise ValidationError("HealthElementByHcPartyTagCodeFilter: Medstream does not select by status")
    return HealthcareElementByHealthcarePartyLabelCodeFilter(
        healthcare_party_id=parsed.healthcare_party_id,
        tag_type=parsed.tag_type,
        tag_code=parsed.tag_code,
        code_type=parsed.code_type,
        code_code=parsed.code_code,
    )


def _health_element_by_ids(data: Mapping[str, Any]) -> Filter:
    return HealthcareElementByIdsFilter(ids=set(HealthElementByIdsFilter.model_validate(data).ids))


# `$type` -> (Medstream entity type, translation).
FILTERS: Mapping[str, tuple[str, Callable[[Mapping[str, Any]], Filter]]] = {
    "ServiceByHcPartyTagCodeDateFilter": ("DataSample", _service_by_tag_code_date),
    "PatientByHcPartyFilter": ("Patient", _patient_by_hc_party),
    "HealthElementByHcPartyFilter": ("HealthcareElement", _health_element_by_hc_party),
    "HealthElementByHcPartyTagCodeFilter": ("HealthcareElement", _health_element_by_tag_code),
    "HealthElementByIdsFilter": ("HealthcareElement", _health_element_by_ids),
}


# iCure filters that search a field Medstream's encryption configuration keeps in `encryptedSelf` (its iCure name).
READS_ENCRYPTED: Mapping[str, str] = {
    "PatientByHcPartyNameContainsFuzzyFilter": "names",
    "PatientByHcPartyNameFilter": "names",
    "PatientByHcPartyAndSsinsFilter": "ssin",
    "PatientByHcPartyAndIdentifiersFilter": "identifier",
    "PatientByHcPartyAndExternalIdFilter": "externalId",
    "HealthElementByHcPartyIdentifiersFilter": "identifiers",
}


def medstream_filter(data: Mapping[str, Any], entity_type: str) -> Filter:
    """The Medstream node of an iCure filter on `entity_type`; ValidationError saying what is wrong."""
    type_name = data.get("$type")
    served = FILTERS.get(type_name) if isinstance(type_name, str) else None
    if served is None and isinstance(type_name, str) and type_name in READS_ENCRYPTED:
        # Short: it is also a websocket close reason (123 bytes at most).
        field = READS_ENCRYPTED[type_name]
        raise ValidationError(f"{type_name} not served: {field} is encrypted, the server cannot read it")
    if served is None:
        # Short: it is also a websocket close reason (123 bytes at most), so the $types of `entity_type` only, and
        # the one sent only if it fits.
        known = ", ".join(sorted(name for name, (selected, _) in FILTERS.items() if selected == entity_type))
        message = f"$type {type_name!r} not served; served: {known}"
        fits = len(message.encode()) <= MAX_CLOSE_REASON_BYTES
        raise ValidationError(message if fits else f"$type not served; served: {known}")
    if served[0] != entity_type:
        raise ValidationError(f"filter {type_name} selects {served[0]}s, not {entity_type}s")
    try:
        return served[1](data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or type_name}: {e['msg']}" for e in exc.errors())
        raise ValidationError(f"{type_name}: {problems}") from None
