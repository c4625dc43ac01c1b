"""DataSample: one medical observation about a patient (a measure, a text, a document...), and its content."""

from __future__ import annotations

from typing import ClassVar

from pydantic import ConfigDict, Field

from medstream.model.base import MedstreamModel
from medstream.model.common import (
    Base64Text,
    CodingSet,
    Entity,
    EntityId,
    FuzzyDateTime,
    Identifier,
    Int64,
    SecretLinks,
    StringSet,
)


class Measure(MedstreamModel):
    """A measured quantity with its unit, reference range and severity."""

    # JSON has no NaN or infinity: refuse them rather than send them as null.
    model_config = ConfigDict(allow_inf_nan=False)

    value: float | None = None
    min: float | None = None
    max: float | None = None
    ref: float | None = None
    severity: Int64 | None = None
    severity_code: str | None = None
    evolution: Int64 | None = None
    unit: str | None = None
    unit_codes: CodingSet = Field(default_factory=set)
    comment: str | None = None
    comparator: str | None = None


class TimeSeries(MedstreamModel):
    """Samples over time: one row of `samples` per instant, one column per name in `fields`."""

    model_config = ConfigDict(allow_inf_nan=False)

    fields: list[str] = Field(default_factory=list)
    samples: list[list[float]] = Field(default_factory=list)
    min: list[float] = Field(default_factory=list)
    max: list[float] = Field(default_factory=list)
    mean: list[float] = Field(default_factory=list)
    median: list[float] = Field(default_factory=list)
    variance: list[float] = Field(default_factory=list)


class Content(MedstreamModel):
    """The value of a DataSample in one language; usually exactly one of the value fields is set."""

    model_config = ConfigDict(allow_inf_nan=False)

    string_value: str | None = None
    number_value: float | None = None
    boolean_value: bool | None = None
    instant_value: Int64 | None = None  # epoch ms
    fuzzy_date_value: FuzzyDateTime | None = None
    binary_value: Base64Text | None = None
    document_id: str | None = None
    measure_value: Measure | None = None
    time_series: TimeSeries | None = None
    compound_value: list[DataSample] = Field(default_factory=list)
    ratio: list[Measure] = Field(default_factory=list)
    range: list[Measure] = Field(default_factory=list)


class DataSample(Entity, SecretLinks):
    """A medical observation about a patient, with its content keyed by language code."""

    entity_type: ClassVar[str] = "DataSample"

    transaction_id: str | None = None
    identifiers: list[Identifier] = Field(default_factory=list)
    patient_id: EntityId | None = None  # the patient it is about; set by the server from the URL on create
    batch_id: str | None = None  # the id of the enclosing contact
    healthcare_element_ids: StringSet = Field(default_factory=set)
    canvases_ids: StringSet = Field(default_factory=set)
    index: Int64 | None = None
    content: dict[str, Content] = Field(default_factory=dict)
    value_date: FuzzyDateTime | None = None
    opening_date: FuzzyDateTime | None = None
    closing_date: FuzzyDateTime | None = None
    end_of_life: Int64 | None = None
    comment: str | None = None
    qualified_links: dict[str, dict[str, str]] = Field(default_factory=dict)


# Content and DataSample refer to each other: resolve the forward references now that both exist.
Content.model_rebuild()
DataSample.model_rebuild()
