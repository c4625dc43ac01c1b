"""The in-memory evaluator: does a filter select an entity? Pure, for the event dispatcher's hot path.

It implements each constraint atom exactly as `store/filter_sql.py` does in SQL (a missing field never matches,
an empty set matches nothing, bounds are inclusive). It looks at content only: a tombstone matches as the entity
did, and who may read the entity is the caller's concern (queries add the access rule, dispatch checks readers).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

from medstream.filters.base import LeafFilter
from medstream.filters.constraints import (
    Constraint,
    FieldBetween,
    FieldIn,
    HasBlindToken,
    HasCoding,
    HasHealthcareElement,
    HasIdentifier,
    IdIn,
    NameContains,
    SharedWith,
)
from medstream.filters.names import search_name
from medstream.filters.nodes import LEAF_TYPES
from medstream.filters.tree import ComplementFilter, Filter, IntersectionFilter, UnionFilter
from medstream.model.common import Entity


def matches(filter: Filter, entity: Entity) -> bool:
    """Whether `filter` selects `entity`; an entity of another type than the filter's never matches."""
    if entity.entity_type != filter.entity_type:
        return False
    return _NODES[type(filter)](filter, entity)


# --- atoms --------------------------------------------------------------------------------------------------


def _shared_with(atom: SharedWith, entity: Entity) -> bool:
    metadata = entity.security_metadata
    return metadata is not None and atom.data_owner_id in metadata.readers


def _id_in(atom: IdIn, entity: Entity) -> bool:
    return entity.id in atom.ids


def _has_coding(atom: HasCoding, entity: Entity) -> bool:
    wanted_type, wanted_code = atom.type, atom.code
    for coding in entity.labels if atom.term == "label" else entity.codes:
        if coding.type == wanted_type and (wanted_code is None or coding.code == wanted_code):
            return True
    return False


def _has_identifier(atom: HasIdentifier, entity: Entity) -> bool:
    pairs = atom.pairs
    for identifier in getattr(entity, "identifiers", ()):
        if (identifier.system or "", identifier.value or "") in pairs:
            return True
    return False


def _has_blind_token(atom: HasBlindToken, entity: Entity) -> bool:
    blind_index = entity.blind_index
    return blind_index is not None and not atom.tokens.isdisjoint(blind_index.get(atom.field, ()))


def _has_healthcare_element(atom: HasHealthcareElement, entity: Entity) -> bool:
    return not atom.ids.isdisjoint(getattr(entity, "healthcare_element_ids", ()))


def _field_in(atom: FieldIn, entity: Entity) -> bool:
    value = getattr(entity, atom.field, None)
    if isinstance(value, Enum):
        value = value.value
    return value is not None and value in atom.values


def _field_between(atom: FieldBetween, entity: Entity) -> bool:
    value = getattr(entity, atom.field, None)
    if value is None:
        return False
    return (atom.minimum is None or value >= atom.minimum) and (atom.maximum is None or value <= atom.maximum)


def _name_contains(atom: NameContains, entity: Entity) -> bool:
    text = search_name(entity)
    return text is not None and atom.text in text


_ATOMS: dict[type[Any], Callable[[Any, Entity], bool]] = {
    SharedWith: _shared_with,
    IdIn: _id_in,
    HasCoding: _has_coding,
    HasIdentifier: _has_identifier,
    HasBlindToken: _has_blind_token,
    HasHealthcareElement: _has_healthcare_element,
    FieldIn: _field_in,
    FieldBetween: _field_between,
    NameContains: _name_contains,
}


def atom_holds(atom: Constraint, entity: Entity) -> bool:
    """Whether one constraint atom holds for `entity`."""
    return _ATOMS[type(atom)](atom, entity)


# --- nodes --------------------------------------------------------------------------------------------------
# Plain loops rather than all()/any(): no generator object per call on the dispatcher's hot path.


def _leaf(node: LeafFilter, entity: Entity) -> bool:
    for atom in node.constraints:  # noqa: SIM110
        if not _ATOMS[type(atom)](atom, entity):
            return False
    return True


def _intersection(node: IntersectionFilter, entity: Entity) -> bool:
    for child in node.filters:  # noqa: SIM110
        if not _NODES[type(child)](child, entity):
            return False
    return True


def _union(node: UnionFilter, entity: Entity) -> bool:
    for child in node.filters:  # noqa: SIM110
        if _NODES[type(child)](child, entity):
            return True
    return False


def _complement(node: ComplementFilter, entity: Entity) -> bool:
    return _NODES[type(node.super_set)](node.super_set, entity) and not _NODES[type(node.sub_set)](node.sub_set, entity)


_NODES: dict[type[Any], Callable[[Any, Entity], bool]] = {
    **dict.fromkeys(LEAF_TYPES, _leaf),
    IntersectionFilter: _intersection,
    UnionFilter: _union,
    ComplementFilter: _complement,
}
