"""What every filter node shares: the pydantic base, the field types, and the label/code rule.

A leaf node is a conjunction of constraint atoms (`constraints.py`): what a node means is exactly the tuple its
`constraints` property returns, which both evaluators and the subscription index read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Annotated, Any, ClassVar, Self

from pydantic import ConfigDict, Field, PlainSerializer, StringConstraints, model_serializer, model_validator

from medstream.filters.constraints import (
    Constraint,
    FieldIn,
    HasBlindToken,
    HasCoding,
    HasIdentifier,
    IdIn,
    SharedWith,
)
from medstream.model.base import MedstreamModel
from medstream.model.blind_index import MAX_TOKENS_PER_FIELD, TOKEN_PATTERN, check_blind_index_field
from medstream.model.common import Identifier
from medstream.model.text import normalize_for_search

# Bound on every list of a node (ids, identifiers, patient ids, ssins...); parse_filter also bounds the tree.
MAX_LIST_SIZE = 10_000

# A set of strings (ids, ssins): duplicates dropped, written back sorted so that equal filters give equal JSON.
StringSet = Annotated[frozenset[str], PlainSerializer(sorted, return_type=list[str]), Field(max_length=MAX_LIST_SIZE)]
NonEmptyText = Annotated[str, Field(min_length=1)]
# Dates and instants: bounded to what both databases store (BIGINT).
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
Identifiers = Annotated[tuple[Identifier, ...], Field(max_length=MAX_LIST_SIZE)]
# Blind-index tokens, each of the crypto core's shape; written back sorted, like StringSet.
Token = Annotated[str, StringConstraints(pattern=TOKEN_PATTERN)]
TokenSet = Annotated[
    frozenset[Token], PlainSerializer(sorted, return_type=list[str]), Field(max_length=MAX_TOKENS_PER_FIELD)
]


class FilterNode(MedstreamModel):
    """Base of every node: immutable, `$type` first on the wire, and an optional free-text `description` (as in
    the Medtech SDK) that never changes what the filter matches."""

    model_config = ConfigDict(frozen=True)

    description: str | None = None

    @model_serializer(mode="wrap")
    def _type_first(self, handler: Callable[[Any], Any]) -> Any:
        data = handler(self)
        if isinstance(data, dict) and "$type" in data:
            return {"$type": data.pop("$type"), **data}
        return data


class LeafFilter(FilterNode):
    """A node that constrains entities of one type directly."""

    entity_type: ClassVar[str]

    @cached_property
    def constraints(self) -> tuple[Constraint, ...]:
        """What this node means: every atom must hold; with none, every entity of its type matches."""
        return tuple(self._constraints())

    def _constraints(self) -> Iterator[Constraint]:
        return iter(())


class ForDataOwner(LeafFilter):
    """A node restricted to the entities shared with one data owner, `healthcarePartyId`."""

    healthcare_party_id: NonEmptyText

    def _constraints(self) -> Iterator[Constraint]:
        yield SharedWith(self.healthcare_party_id)


def identifier_pairs(identifiers: tuple[Identifier, ...]) -> frozenset[tuple[str, str]]:
    """The (system, value) pairs an identifier filter looks for; a missing part is "" (as the store keeps it)."""
    return frozenset((i.system or "", i.value or "") for i in identifiers)


def check_codings(
    label_type: str | None,
    label_code: str | None,
    code_type: str | None,
    code_code: str | None,
    label_names: tuple[str, str],
) -> None:
    """A label or code part needs its type (so every such part is indexed by type), and a node needs one part."""
    type_name, code_name = label_names
    if label_code is not None and label_type is None:
        raise ValueError(f"{code_name} needs {type_name}")
    if code_code is not None and code_type is None:
        raise ValueError("codeCode needs codeType")
    if label_type is None and code_type is None:
        raise ValueError(f"give {type_name} or codeType (or both)")


def codings(
    label_type: str | None, label_code: str | None, code_type: str | None, code_code: str | None
) -> Iterator[HasCoding]:
    """The atoms of a label part and a code part; a part with no code matches any code of its type."""
    if label_type is not None:
        yield HasCoding("label", label_type, label_code)
    if code_type is not None:
        yield HasCoding("code", code_type, code_code)


# --- shapes several nodes share ------------------------------------------------------------------------------


def searchable(text: str) -> str:
    """A name search text, refused when nothing is left of it once normalised (it would match every name)."""
    if not normalize_for_search(text):
        raise ValueError("searchString must contain something other than spaces and accents")
    return text


class TagCodeFilter(ForDataOwner):
    """A data-owner node with a label part (tagType, tagCode) and a code part (codeType, codeCode)."""

    tag_type: NonEmptyText | None = None
    tag_code: NonEmptyText | None = None
    code_type: NonEmptyText | None = None
    code_code: NonEmptyText | None = None

    @model_validator(mode="after")
    def _check_codings(self) -> Self:
        check_codings(self.tag_type, self.tag_code, self.code_type, self.code_code, ("tagType", "tagCode"))
        return self

    def _constraints(self) -> Iterator[Constraint]:
        yield from super()._constraints()
        yield from codings(self.tag_type, self.tag_code, self.code_type, self.code_code)


class LabelCodeFilter(LeafFilter):
    """A node with a label part (labelType, labelCode) and a code part (codeType, codeCode), for every data owner."""

    label_type: NonEmptyText | None = None
    label_code: NonEmptyText | None = None
    code_type: NonEmptyText | None = None
    code_code: NonEmptyText | None = None

    @model_validator(mode="after")
    def _check_codings(self) -> Self:
        check_codings(self.label_type, self.label_code, self.code_type, self.code_code, ("labelType", "labelCode"))
        return self

    def _constraints(self) -> Iterator[Constraint]:
        yield from codings(self.label_type, self.label_code, self.code_type, self.code_code)


class ByIds(LeafFilter):
    """The entities with one of `ids`."""

    ids: StringSet

    def _constraints(self) -> Iterator[Constraint]:
        yield IdIn(self.ids)


class ByIdentifiers(ForDataOwner):
    """The entities shared with the data owner that have one of `identifiers`."""

    identifiers: Identifiers

    def _constraints(self) -> Iterator[Constraint]:
        yield from super()._constraints()
        yield HasIdentifier(identifier_pairs(self.identifiers))


class ByBlindIndex(ForDataOwner):
    """The entities shared with the data owner whose blind index holds, under `field`, one of `tokens`: the
    equality search over a field that travels encrypted. The SDK computes the tokens from clear values with
    its index key; the server compares them as they are."""

    field: NonEmptyText
    tokens: TokenSet

    @model_validator(mode="after")
    def _check_field(self) -> Self:
        check_blind_index_field(self.entity_type, self.field)
        return self

    def _constraints(self) -> Iterator[Constraint]:
        yield from super()._constraints()
        yield HasBlindToken(self.field, self.tokens)


class ByPatients(ForDataOwner):
    """The entities shared with the data owner about one of `patientIds`."""

    patient_ids: StringSet

    def _constraints(self) -> Iterator[Constraint]:
        yield from super()._constraints()
        yield FieldIn("patient_id", self.patient_ids)


class ByHcpId(LeafFilter):
    """Every entity shared with the data owner `hcpId`."""

    hcp_id: NonEmptyText

    def _constraints(self) -> Iterator[Constraint]:
        yield SharedWith(self.hcp_id)
