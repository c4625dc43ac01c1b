"""The entity fields a filter reads (wire names): what a server that requires encryption checks, since a filter
on a field that travels encrypted could never match what the server stores, and would tell what it searched."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

from pydantic.alias_generators import to_camel

from medstream.errors import ValidationError
from medstream.filters.base import ByBlindIndex, LeafFilter
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
from medstream.filters.names import SEARCH_NAME_FIELDS
from medstream.filters.nodes import LEAF_TYPES
from medstream.filters.tree import ComplementFilter, Filter, IntersectionFilter, UnionFilter
from medstream.model.blind_index import blind_index_field_for
from medstream.model.encrypted_fields import ENCRYPTED_FIELDS

# The blind-index node of each kind that has one: what a filter on an encrypted field should use instead.
_BLIND_INDEX_NODES: dict[str, str] = {
    node.entity_type: str(node.model_fields["filter_type"].default)
    for node in LEAF_TYPES
    if issubclass(node, ByBlindIndex)
}


def _atom_fields(entity_type: str, atom: Constraint) -> Iterator[str]:
    if isinstance(atom, FieldIn | FieldBetween):
        yield to_camel(atom.field)
    elif isinstance(atom, HasCoding):
        yield "labels" if atom.term == "label" else "codes"
    elif isinstance(atom, HasIdentifier):
        yield "identifiers"
    elif isinstance(atom, HasBlindToken):
        yield "blindIndex"
    elif isinstance(atom, HasHealthcareElement):
        yield "healthcareElementIds"
    elif isinstance(atom, IdIn):
        yield "id"
    elif isinstance(atom, SharedWith):
        yield "securityMetadata"
    elif isinstance(atom, NameContains):
        yield from sorted(SEARCH_NAME_FIELDS.get(entity_type, ()))


def fields_read(filter: Filter) -> frozenset[str]:
    """The wire names of the fields of `filter.entity_type` that `filter` reads, in any of its nodes."""
    found: set[str] = set()
    _collect(filter, found)
    return frozenset(found)


def _collect(node: Any, found: set[str]) -> None:
    if isinstance(node, LeafFilter):
        for atom in node.constraints:
            found.update(_atom_fields(node.entity_type, atom))
    elif isinstance(node, IntersectionFilter | UnionFilter):
        for child in node.filters:
            _collect(child, found)
    elif isinstance(node, ComplementFilter):
        _collect(node.super_set, found)
        _collect(node.sub_set, found)


SERVER_REQUIRES_ENCRYPTION = "this server requires encryption"


def refuse_encrypted_fields(
    filter: Filter, encrypted_fields: Collection[str] | None = None, *, reason: str = SERVER_REQUIRES_ENCRYPTION
) -> None:
    """ValidationError naming the encrypted fields `filter` reads: with encryption required, the server holds
    them only inside `encryptedSelf`; and a client that encrypts them must not send a filter that names their
    values in clear (the client's `reason`). `encrypted_fields` are the wire names of the fields of
    `filter.entity_type` that travel encrypted (the default configuration's when None). For a field with a blind
    index, the message names the filter (and its `field`) that searches it instead."""
    entity_type = filter.entity_type
    if encrypted_fields is None:
        encrypted_fields = ENCRYPTED_FIELDS.get(entity_type, ())
    encrypted = fields_read(filter) & frozenset(encrypted_fields)
    if not encrypted:
        return
    instead: dict[str, list[str]] = {}
    for field in sorted(encrypted):
        blind_field = blind_index_field_for(entity_type, field)
        if blind_field is not None:
            instead.setdefault(blind_field, []).append(field)
    message = f"{reason}: a {entity_type} filter cannot read the encrypted field(s) {', '.join(sorted(encrypted))}"
    if instead:
        node = _BLIND_INDEX_NODES[entity_type]
        searches = "; ".join(f"{', '.join(fields)} with field {name!r}" for name, fields in instead.items())
        message += f"; search them by blind-index tokens with {node} ({searches})"
    raise ValidationError(message)
