"""Turn a filter's JSON tree into nodes, or reject it with an error that names the bad node and its path.

The tree is walked top-down before any node is validated, so an unknown `$type`, a node of the wrong entity
type, a tree over its bounds or a NUL character (no stored text holds one) is reported without building
anything. Paths read like
`filters[1].subSet` (the root is ""); every error is a ValidationError (PayloadTooLargeError for a bound),
whose `details` hold one entry per problem: `path` (the node), `node` (its `$type`), `field` (inside the
node), `message` and `type`.
"""

from __future__ import annotations

from typing import Any

import pydantic
from pydantic import TypeAdapter

from medstream.errors import PayloadTooLargeError, ValidationError
from medstream.filters.base import MAX_LIST_SIZE, LeafFilter
from medstream.filters.tree import NODE_TYPES, Filter
from medstream.model.entities import KIND_BY_NAME

MAX_DEPTH = 32
MAX_NODES = 1000
# All the values in all the lists of one tree together (ids, identifiers...): keeps a compiled query well
# under the bound-parameter limits of SQLite and PostgreSQL (32,766).
MAX_VALUES = 10_000

_CHILD_LISTS = ("filters",)
_CHILD_NODES = ("superSet", "subSet", "super_set", "sub_set")
_WIRE_WORDS = (("valid frozenset", "list"), ("valid tuple", "list"), ("Tuple", "List"), ("Frozenset", "List"))
_FILTER_ADAPTER: TypeAdapter[Filter] = TypeAdapter(Filter)


def parse_filter(data: Any, entity_type: str) -> Filter:
    """The filter `data` (a JSON tree) describes, which must select entities of `entity_type`."""
    if entity_type not in KIND_BY_NAME:
        raise ValidationError(f"unknown entity type {entity_type!r}; known: {', '.join(KIND_BY_NAME)}")
    return _Parser(entity_type).node(data, "", 1)


def _join(path: str, step: str) -> str:
    return f"{path}.{step}" if path and not step.startswith("[") else f"{path}{step}"


def _field(loc: tuple[int | str, ...]) -> str:
    field = ""
    for part in loc:
        field = _join(field, f"[{part}]" if isinstance(part, int) else part)
    return field


def _error(
    path: str,
    node: str | None,
    message: str,
    *,
    kind: str,
    field: str = "",
    too_large: bool = False,
) -> ValidationError:
    where = f"{node or 'filter'} at {path or 'the root'}"
    detail: dict[str, Any] = {"path": path, "node": node, "field": field, "message": message, "type": kind}
    error_class = PayloadTooLargeError if too_large else ValidationError
    prefix = f"{field}: " if field else ""
    return error_class(f"invalid filter: {where}: {prefix}{message}", details=[detail])


def _nul_field(value: Any, field: str, depth: int = 0) -> str | None:
    """The field (as `identifiers[0].value`) of the first text holding a NUL character, looking as deep as a
    node's fields go (deeper input is refused by validation anyway)."""
    if isinstance(value, str):
        return field if "\x00" in value else None
    if depth < 3 and isinstance(value, list):
        return next((f for i, item in enumerate(value) if (f := _nul_field(item, f"{field}[{i}]", depth + 1))), None)
    if depth < 3 and isinstance(value, dict):
        return next((f for k, v in value.items() if (f := _nul_field(v, _join(field, str(k)), depth + 1))), None)
    return None


def _readable(message: str) -> str:
    """Pydantic's message in JSON terms: sets and tuples of nodes arrive as lists."""
    message = message.removeprefix("Value error, ")
    for python, wire in _WIRE_WORDS:
        message = message.replace(python, wire)
    return message


class _Parser:
    def __init__(self, entity_type: str) -> None:
        self.entity_type = entity_type
        self.nodes = 0
        self.values = 0

    def node(self, data: Any, path: str, depth: int) -> Filter:
        if depth > MAX_DEPTH:
            raise _error(path, None, f"the tree is deeper than {MAX_DEPTH} levels", kind="too_deep", too_large=True)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _error(path, None, f"the tree has more than {MAX_NODES} nodes", kind="too_many_nodes", too_large=True)
        if not isinstance(data, dict):
            raise _error(path, None, "a filter must be a JSON object with a $type", kind="not_an_object")
        type_name = data.get("$type")
        if type_name is None:
            raise _error(path, None, "missing $type", kind="missing_type")
        if not isinstance(type_name, str) or type_name not in NODE_TYPES:
            raise _error(path, None, f"unknown $type {type_name}", kind="unknown_type")
        cls = NODE_TYPES[type_name]
        if issubclass(cls, LeafFilter):
            if cls.entity_type != self.entity_type:
                message = f"a {cls.entity_type} filter where a {self.entity_type} filter is expected"
                raise _error(path, type_name, message, kind="wrong_entity_type")
            self._check_fields(data, path, type_name)
            return self._validate(data, path, type_name)
        self._check_fields(data, path, type_name)
        fields = dict(data)
        for key in _CHILD_LISTS:
            children = fields.get(key)
            if isinstance(children, list):
                fields[key] = [
                    self.node(child, _join(path, f"{key}[{i}]"), depth + 1) for i, child in enumerate(children)
                ]
        for key in _CHILD_NODES:
            if key in fields:
                fields[key] = self.node(fields[key], _join(path, key), depth + 1)
        return self._validate(fields, path, type_name)

    def _check_fields(self, data: dict[str, Any], path: str, type_name: str) -> None:
        """The node's own fields (not its children): list sizes, the tree's total, and no NUL character."""
        for key, value in data.items():
            if key in _CHILD_LISTS or key in _CHILD_NODES:
                continue
            if isinstance(value, list):
                if len(value) > MAX_LIST_SIZE:
                    message = f"more than {MAX_LIST_SIZE} values"
                    raise _error(path, type_name, message, kind="too_many_values", field=key, too_large=True)
                self.values += len(value)
                if self.values > MAX_VALUES:
                    message = f"the lists of the tree hold more than {MAX_VALUES} values together"
                    raise _error(path, type_name, message, kind="too_many_values", too_large=True)
            if field := _nul_field(value, key):
                # No stored value holds one (the store refuses them), and PostgreSQL cannot even compare one.
                message = "text may not hold a NUL character (U+0000)"
                raise _error(path, type_name, message, kind="nul_character", field=field)

    def _validate(self, data: dict[str, Any], path: str, type_name: str) -> Filter:
        try:
            return _FILTER_ADAPTER.validate_python(data)
        except pydantic.ValidationError as exc:
            details = []
            for error in exc.errors(include_url=False, include_input=False):
                # The first step of `loc` is the tag the discriminated union dispatched on.
                loc = tuple(error["loc"])[1:]
                message = _readable(str(error["msg"]))
                details.append(
                    {"path": path, "node": type_name, "field": _field(loc), "message": message, "type": error["type"]}
                )
            first = details[0]
            where = f"{type_name} at {path or 'the root'}"
            field = f"{first['field']}: " if first["field"] else ""
            more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
            raise ValidationError(
                f"invalid filter: {where}: {field}{first['message']}{more}", details=details
            ) from None
