"""A filter's most selective indexable constraint, for the subscription index of the event dispatcher.

The promise (soundness): every entity a filter matches has at least one of the constraint's `values` among
`entity_index_values(entity, key)`. So the dispatcher may look an event up by the entity's values and never
miss a subscription that wants it; it still runs `matches` on the candidates it finds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from medstream.filters.base import LeafFilter
from medstream.filters.constraints import FieldIn, HasBlindToken, HasCoding, IdIn, SharedWith
from medstream.filters.tree import ComplementFilter, Filter, IntersectionFilter, UnionFilter
from medstream.model.common import Entity

IndexKey = Literal["id", "blind_index", "label", "patient", "data_owner"]
# An id, a patient id or a data owner id; a label as (type, code), or (type, None) for "any code"; or a
# blind-index token as (field, token).
IndexValue = str | tuple[str, str | None]

# Most selective first: a blind-index token stands for one value (an ssin, an identifier, a name word).
_PREFERENCE: tuple[IndexKey, ...] = ("id", "blind_index", "label", "patient", "data_owner")
# Keys under which an entity has at most one value: two constraints on them can be intersected.
_SINGLE_VALUED = frozenset({"id", "patient"})


@dataclass(frozen=True, slots=True)
class IndexConstraint:
    """Every entity the filter matches has one of `values` under `key` (an empty set: it matches none)."""

    key: IndexKey
    values: frozenset[IndexValue]


def index_constraint(filter: Filter) -> IndexConstraint | None:
    """The most selective indexable constraint (ids, then blind-index tokens, label, patient, data owner), or
    None if the filter has none (e.g. "all professionals", or a union whose members share no key)."""
    found = _constraints(filter)
    for key in _PREFERENCE:
        if key in found:
            return IndexConstraint(key, found[key])
    return None


def entity_index_values(entity: Entity, key: str) -> frozenset[IndexValue]:
    """The values `entity` has under `key`, as `index_constraint` names them."""
    if key == "id":
        return frozenset({entity.id}) if entity.id is not None else frozenset()
    if key == "blind_index":
        blind_index = entity.blind_index or {}
        return frozenset((field, token) for field, tokens in blind_index.items() for token in tokens)
    if key == "label":
        values: set[IndexValue] = set()
        for label in entity.labels:
            if label.type is not None:
                values.add((label.type, label.code))
                values.add((label.type, None))
        return frozenset(values)
    if key == "patient":
        patient_id = getattr(entity, "patient_id", None)
        return frozenset({patient_id}) if patient_id is not None else frozenset()
    if key == "data_owner":
        return entity.readers
    raise ValueError(f"unknown index key {key!r}; known: {', '.join(_PREFERENCE)}")


def _constraints(node: Any) -> dict[IndexKey, frozenset[IndexValue]]:
    """Every sound constraint of `node`, by key."""
    if isinstance(node, LeafFilter):
        return _leaf_constraints(node)
    if isinstance(node, IntersectionFilter):
        merged: dict[IndexKey, frozenset[IndexValue]] = {}
        for child in node.filters:
            for key, values in _constraints(child).items():
                merged[key] = _narrowest(key, merged[key], values) if key in merged else values
        return merged
    if isinstance(node, UnionFilter):
        children = [_constraints(child) for child in node.filters]
        common = set(children[0]).intersection(*children[1:])
        return {key: frozenset().union(*(child[key] for child in children)) for key in common}
    assert isinstance(node, ComplementFilter)
    return _constraints(node.super_set)


def _narrowest(key: IndexKey, left: frozenset[IndexValue], right: frozenset[IndexValue]) -> frozenset[IndexValue]:
    # An entity has one id and one patient, so it must be in both sets; but it may have several labels or
    # readers, one matching each constraint, so only either set alone is sound there.
    if key in _SINGLE_VALUED:
        return left & right
    return left if len(left) <= len(right) else right


def _leaf_constraints(node: LeafFilter) -> dict[IndexKey, frozenset[IndexValue]]:
    found: dict[IndexKey, frozenset[IndexValue]] = {}
    for atom in node.constraints:
        key: IndexKey
        if isinstance(atom, IdIn):
            key, values = "id", frozenset[IndexValue](atom.ids)
        elif isinstance(atom, HasBlindToken):
            key, values = "blind_index", frozenset((atom.field, token) for token in atom.tokens)
        elif isinstance(atom, HasCoding) and atom.term == "label":
            key, values = "label", frozenset({(atom.type, atom.code)})
        elif isinstance(atom, FieldIn) and atom.field == "patient_id":
            key, values = "patient", frozenset[IndexValue](atom.values)
        elif isinstance(atom, SharedWith):
            key, values = "data_owner", frozenset({atom.data_owner_id})
        else:
            continue
        found[key] = _narrowest(key, found[key], values) if key in found else values
    return found
