"""The atoms every leaf filter is a conjunction of: the one place the meaning of a filter is defined.

Each leaf node lowers to a tuple of these atoms (all must hold; an empty tuple holds for every entity). The
matcher, the SQL compiler and the subscription index each implement the dozen atoms once, rather than the
thirty-odd node types, so the two evaluators cannot drift apart node by node.

Rules shared by all atoms: a missing entity field never matches; an empty set of wanted values matches
nothing; bounds are inclusive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class SharedWith:
    """The entity is shared with this data owner (it is one of the entity's readers)."""

    data_owner_id: str


@dataclass(frozen=True, slots=True)
class IdIn:
    """The entity's id is one of `ids`."""

    ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class HasCoding:
    """The entity has a label (or code, by `term`) of this type, and of this code when `code` is given."""

    term: Literal["label", "code"]
    type: str
    code: str | None


@dataclass(frozen=True, slots=True)
class HasIdentifier:
    """One of the entity's identifiers has a (system, value) pair in `pairs`; a missing part counts as ""."""

    pairs: frozenset[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class HasBlindToken:
    """The entity's blind index holds, under `field`, one of `tokens` (opaque: compared, never read)."""

    field: str
    tokens: frozenset[str]


@dataclass(frozen=True, slots=True)
class HasHealthcareElement:
    """The entity (a data sample) is linked to one of these healthcare elements."""

    ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class FieldIn:
    """A scalar field, stored in the entity table's column of the same name, has one of `values`."""

    field: str
    values: frozenset[str]


@dataclass(frozen=True, slots=True)
class FieldBetween:
    """An integer field (a date), stored in the column of the same name, lies in [minimum, maximum]; a missing
    bound is open."""

    field: str
    minimum: int | None
    maximum: int | None


@dataclass(frozen=True, slots=True)
class NameContains:
    """The entity's normalised search name (see `names.search_name`) contains `text`, itself normalised."""

    text: str


Constraint = (
    SharedWith
    | IdIn
    | HasCoding
    | HasIdentifier
    | HasBlindToken
    | HasHealthcareElement
    | FieldIn
    | FieldBetween
    | NameContains
)
