"""What a parsed filter weighs: an estimate, in bytes, of the memory a server holds for a subscription with it.

A subscription keeps its filter's nodes, the lists of values they hold (ids, identifiers...), the text of those
values, and the subscription index's entries for the values of its indexed constraint, one per value and event
type. The weight counts each at its cost as measured with tracemalloc on CPython (64-bit), from filters that
are each made of one of them in bulk (10,000 ids, 5,000 ssins, 3,000 identifiers, 1,000 nodes, 100 KB of text);
`tests/unit/test_filter_weight.py` keeps the estimate within a factor of two of the measured memory:

- a filter node (the pydantic model, its fields, its cached constraints): NODE_BYTES;
- another model inside a node (an identifier): MODEL_BYTES;
- an item of a list or set (its slot in the node and in the node's constraints): ITEM_BYTES;
- a string: STRING_BYTES for the object, plus its UTF-8 bytes;
- a value of the indexed constraint, per event type subscribed to (an entry of the index, and the set of
  subscriptions it holds): INDEX_BYTES.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from medstream.filters.base import FilterNode
from medstream.filters.index import index_constraint
from medstream.filters.tree import Filter

NODE_BYTES = 550
MODEL_BYTES = 600
ITEM_BYTES = 100
STRING_BYTES = 50
INDEX_BYTES = 250


def filter_weight(filter: Filter | None, event_types: int = 1) -> int:
    """The estimated bytes a subscription to `event_types` event types holds for `filter` (0 for none)."""
    if filter is None:
        return 0
    constraint = index_constraint(filter)
    indexed = len(constraint.values) if constraint is not None else 0
    return _weight(filter) + indexed * max(1, event_types) * INDEX_BYTES


def _weight(value: Any) -> int:
    if isinstance(value, str):
        return STRING_BYTES + len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, BaseModel):
        own = NODE_BYTES if isinstance(value, FilterNode) else MODEL_BYTES
        return own + sum(_weight(getattr(value, name)) for name in type(value).model_fields)
    if isinstance(value, (tuple, list, frozenset, set)):
        return sum(ITEM_BYTES + _weight(item) for item in value)
    return 0
