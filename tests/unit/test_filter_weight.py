"""filter_weight: the estimate follows the memory a subscription really holds for its filter.

Memory is measured with tracemalloc: what three subscriptions with equally shaped filters (of distinct values)
keep allocated once read from JSON, parsed and indexed, divided by three.
"""

from __future__ import annotations

import base64
import gc
import secrets
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from medstream.access import Actor
from medstream.events.index import SubscriptionIndex
from medstream.events.subscription import Subscription
from medstream.events.types import EventType
from medstream.filters.parse import parse_filter
from medstream.filters.weight import filter_weight

Shape = Callable[[], dict[str, Any]]


def _ids(count: int, length: int = 36) -> list[str]:
    return [uuid.uuid4().hex.ljust(length, "x")[:length] for _ in range(count)]


def _deep() -> dict[str, Any]:
    tree: dict[str, Any] = {"$type": "PatientByIdsFilter", "ids": _ids(1)}
    for _ in range(30):
        owner = {"$type": "PatientByHealthcarePartyFilter", "healthcarePartyId": _ids(1)[0]}
        tree = {"$type": "ComplementFilter", "superSet": owner, "subSet": tree}
    return tree


SHAPES: dict[str, Shape] = {
    "10,000 ids": lambda: {"$type": "PatientByIdsFilter", "ids": _ids(10_000)},
    "1,000 long ids": lambda: {"$type": "PatientByIdsFilter", "ids": _ids(1_000, 200)},
    "999 nodes": lambda: {
        "$type": "UnionFilter",
        "filters": [{"$type": "PatientByHealthcarePartyFilter", "healthcarePartyId": i} for i in _ids(999)],
    },
    "5,000 ssins": lambda: {
        "$type": "PatientByHealthcarePartySsinsFilter",
        "healthcarePartyId": _ids(1)[0],
        "ssins": _ids(5_000, 11),
    },
    "3,000 identifiers": lambda: {
        "$type": "PatientByHealthcarePartyIdentifiersFilter",
        "healthcarePartyId": _ids(1)[0],
        "identifiers": [{"system": "urn:system", "value": v} for v in _ids(3_000)],
    },
    "1,000 blind-index tokens": lambda: {
        "$type": "PatientByHealthcarePartyBlindIndexFilter",
        "healthcarePartyId": _ids(1)[0],
        "field": "names",
        "tokens": [base64.b64encode(secrets.token_bytes(16)).decode() for _ in range(1_000)],
    },
    "100 KB of text": lambda: {
        "$type": "PatientByHealthcarePartyFilter",
        "healthcarePartyId": _ids(1)[0],
        "description": "d" * 100_000,
    },
    "61 nodes, 31 deep": _deep,
}


def _measured(shape: Shape, event_types: frozenset[EventType]) -> tuple[float, int]:
    """Bytes held per subscription, and the weight of its filter."""
    # As the server reads them: JSON text, parsed while measuring (the parsed strings are the filter's own).
    data = [orjson.dumps(shape()) for _ in range(3)]
    index = SubscriptionIndex()
    kept: list[Subscription] = []
    actor = Actor(user_id="u", data_owner_id="owner")
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for number, text in enumerate(data):
            subscription = Subscription(
                id=f"s{number}",
                entity_type="Patient",
                event_types=event_types,
                filter=parse_filter(orjson.loads(text), "Patient"),
                actor=actor,
                sink=None,  # type: ignore[arg-type]  # never delivered to
                cursor=0,
            )
            index.add(subscription)
            kept.append(subscription)
        del data
        gc.collect()
        held = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    return held, filter_weight(kept[0].filter, len(event_types))


@pytest.mark.parametrize(
    "event_types", [frozenset({EventType.CREATE}), frozenset(EventType)], ids=["1-type", "3-types"]
)
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_the_weight_is_within_a_factor_of_two_of_the_memory_held(
    shape: Shape, event_types: frozenset[EventType]
) -> None:
    held, weight = _measured(shape, event_types)
    assert held / 2 <= weight <= held * 2, f"weight {weight}, {held:.0f} bytes held"


def test_no_filter_weighs_nothing_and_more_event_types_weigh_more() -> None:
    assert filter_weight(None, 3) == 0
    tree = parse_filter({"$type": "PatientByIdsFilter", "ids": _ids(100)}, "Patient")
    assert filter_weight(tree, 3) > filter_weight(tree, 1) > 100 * 36
