"""SubscriptionIndex: every subscription that wants an event is among its candidates, removed ones never are, and
the candidates of an event do not grow with subscriptions it cannot match.

Real filters (medstream.filters), real entities (tests/strategies.py), and the dispatcher's own view of an event
(`EventView.values_of`, which reads the entity back from the stored JSON as the dispatcher does).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medstream.access import Actor
from medstream.delegations import server_metadata
from medstream.events.index import SubscriptionIndex
from medstream.events.matching import EventView
from medstream.events.subscription import Subscription
from medstream.events.types import EntityEvent, EventType
from medstream.filters import (
    DataSampleByHealthcarePartyFilter,
    DataSampleByHealthcarePartyPatientFilter,
    DataSampleByHealthcarePartyTagCodeDateFilter,
    DataSampleByIdsFilter,
    Filter,
    matches,
)
from medstream.model import ENTITY_KINDS, CodingReference, DataSample, Entity
from tests.filter_strategies import DATA_OWNERS, FilterPool, entities_for_filters, filters_for

KIND_NAMES = [kind.name for kind in ENTITY_KINDS]
_numbers = itertools.count()


class NoSink:
    def deliver(self, frame: bytes) -> None:
        raise AssertionError("the index never delivers")

    async def wait_for_room(self) -> int:
        raise AssertionError("the index never delivers")


def subscription(
    entity_type: str,
    filter: Filter | None,
    actor: Actor,
    event_types: frozenset[EventType] = frozenset(EventType),
) -> Subscription:
    return Subscription(
        id=f"s{next(_numbers)}",
        entity_type=entity_type,
        event_types=event_types,
        filter=filter,
        actor=actor,
        sink=NoSink(),
        cursor=0,
    )


def event_view(entity: Entity, event_type: EventType) -> EventView:
    """The event as the dispatcher sees it: the entity's stored JSON and its readers."""
    assert entity.id is not None
    return EventView(
        EntityEvent(
            seq=1,
            entity_type=entity.entity_type,
            entity_id=entity.id,
            rev="1-abc",
            event_type=event_type,
            document=entity.to_json(),
            readers=entity.readers,
            created=0,
        )
    )


def candidates_of(index: SubscriptionIndex, entity: Entity, event_type: EventType) -> set[Subscription]:
    return index.candidates(entity.entity_type, event_type, event_view(entity, event_type).values_of)


def wants(sub: Subscription, entity: Entity, event_type: EventType) -> bool:
    """Everything the dispatcher checks after the index: event type, access, entity type and filter."""
    return (
        sub.entity_type == entity.entity_type
        and sub.wants(event_type, entity.readers)
        and (sub.filter is None or matches(sub.filter, entity))
    )


# -- soundness: no subscription that wants an event is missed ---------------------------------------------------


def actors(data_owners: tuple[str, ...]) -> st.SearchStrategy[Actor]:
    return st.builds(
        Actor,
        user_id=st.just("user"),
        data_owner_id=st.none() | st.sampled_from(data_owners),
        is_admin=st.booleans(),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(kind=st.sampled_from(KIND_NAMES), data=st.data())
def test_every_subscription_that_wants_an_event_is_a_candidate_and_removed_ones_never_are(
    kind: str, data: st.DataObject
) -> None:
    entities = [
        e if e.id is not None else e.model_copy(update={"id": f"generated-{n}"})
        for n, e in enumerate(data.draw(st.lists(entities_for_filters(kind), min_size=1, max_size=4), label="entities"))
    ]
    pool = FilterPool.of(entities, data_owners=DATA_OWNERS)
    other_kind = data.draw(st.sampled_from([k for k in KIND_NAMES if k != kind]), label="other kind")
    subscriptions = data.draw(
        st.lists(
            st.builds(
                subscription,
                entity_type=st.just(kind),
                filter=st.none() | filters_for(kind, pool, max_leaves=4),
                actor=actors(pool.data_owners),
                event_types=st.frozensets(st.sampled_from(EventType), min_size=1),
            ),
            min_size=1,
            max_size=10,
        ),
        label="subscriptions",
    )
    # Subscriptions to another entity type, without a filter, by admins: they could match anything of theirs.
    others = [subscription(other_kind, None, Actor("admin", None, is_admin=True)) for _ in range(2)]
    index = SubscriptionIndex()
    for sub in [*subscriptions, *others]:
        index.add(sub)
    removed = data.draw(st.lists(st.sampled_from(subscriptions), unique_by=id, max_size=3), label="removed")
    for sub in removed:
        index.remove(sub)
    assert len(index) == len(subscriptions) + len(others) - len(removed)

    for entity, event_type in itertools.product(entities, EventType):
        found = candidates_of(index, entity, event_type)
        for sub in subscriptions:
            if sub in removed:
                assert sub not in found, "a removed subscription is never a candidate"
            elif wants(sub, entity, event_type):
                assert sub in found, (sub.filter, sub.actor, entity)
        assert all(c.entity_type == kind and event_type in c.event_types for c in found)


def test_remove_forgets_every_value_and_leaves_no_candidate() -> None:
    index = SubscriptionIndex()
    doctor = Actor("u", "hcp-1")
    entity = sample("ds-1", patient="pat-1", label=("T", "C"), readers={"hcp-1"})
    subscriptions = [
        subscription("DataSample", DataSampleByIdsFilter(ids=frozenset({"ds-1", "ds-2"})), doctor),
        subscription("DataSample", by_label("hcp-1", "T", "C"), doctor),
        subscription("DataSample", DataSampleByHealthcarePartyFilter(hcp_id="hcp-1"), doctor),
        subscription("DataSample", None, doctor),
        subscription("DataSample", None, Actor("admin", None, is_admin=True)),
    ]
    for sub in subscriptions:
        index.add(sub)
    assert candidates_of(index, entity, EventType.CREATE) == set(subscriptions)
    for sub in subscriptions:
        index.remove(sub)
        index.remove(sub)  # twice: nothing more happens
    assert len(index) == 0
    assert all(candidates_of(index, entity, t) == set() for t in EventType)
    assert not any(index._by_value.values()), "no value of a removed subscription is kept"
    assert not any(index._keys_in_use.values()) and not any(index._catch_all.values())


# -- cost: candidates are counted, never timed -----------------------------------------------------------------


def sample(entity_id: str, *, patient: str, label: tuple[str, str], readers: set[str]) -> DataSample:
    return DataSample(
        id=entity_id,
        patient_id=patient,
        labels={CodingReference(type=label[0], code=label[1])},
        security_metadata=server_metadata(None, frozenset(readers)),
    )


def by_label(owner: str, label_type: str, label_code: str) -> DataSampleByHealthcarePartyTagCodeDateFilter:
    return DataSampleByHealthcarePartyTagCodeDateFilter(
        healthcare_party_id=owner, tag_type=label_type, tag_code=label_code
    )


DOCTOR = Actor("doctor", "hcp-1")

# For each index key: subscription number i, which the event below cannot match, by a value of that key.
NON_MATCHING: dict[str, Callable[[int], Subscription]] = {
    "other labels": lambda i: subscription("DataSample", by_label("hcp-1", "T", f"code-{i}"), DOCTOR),
    "other ids": lambda i: subscription("DataSample", DataSampleByIdsFilter(ids=frozenset({f"ds-{i}"})), DOCTOR),
    "other patients": lambda i: subscription(
        "DataSample",
        DataSampleByHealthcarePartyPatientFilter(healthcare_party_id="hcp-1", patient_ids=frozenset({f"pat-{i}"})),
        DOCTOR,
    ),
    "other data owners": lambda i: subscription(
        "DataSample", DataSampleByHealthcarePartyFilter(hcp_id=f"hcp-other-{i}"), Actor(f"u{i}", f"hcp-other-{i}")
    ),
    "other readers, no filter": lambda i: subscription("DataSample", None, Actor(f"u{i}", f"hcp-other-{i}")),
    "other entity types": lambda i: subscription(
        KIND_NAMES[i % len(KIND_NAMES)] if KIND_NAMES[i % len(KIND_NAMES)] != "DataSample" else "Patient",
        None,
        Actor(f"u{i}", "hcp-1"),
    ),
    "other event types": lambda i: subscription("DataSample", None, DOCTOR, frozenset({EventType.DELETE})),
}


@pytest.mark.parametrize("other", list(NON_MATCHING))
def test_the_candidates_of_an_event_do_not_grow_with_subscriptions_it_cannot_match(other: str) -> None:
    # The event: a CREATE of data sample "ds-matching", about patient "pat-matching", labelled T/C, read by hcp-1.
    entity = sample("ds-matching", patient="pat-matching", label=("T", "C"), readers={"hcp-1"})
    matching = [
        subscription("DataSample", by_label("hcp-1", "T", "C"), DOCTOR),
        subscription("DataSample", DataSampleByIdsFilter(ids=frozenset({"ds-matching"})), DOCTOR),
        subscription("DataSample", DataSampleByHealthcarePartyFilter(hcp_id="hcp-1"), DOCTOR),
        subscription("DataSample", None, DOCTOR),
        subscription("DataSample", None, Actor("admin", None, is_admin=True)),
    ]
    assert all(wants(sub, entity, EventType.CREATE) for sub in matching)
    counts = []
    for count in (10, 1_000, 10_000):
        index = SubscriptionIndex()
        non_matching = [NON_MATCHING[other](i) for i in range(count)]
        assert not any(wants(sub, entity, EventType.CREATE) for sub in non_matching[:100])
        for sub in [*matching, *non_matching]:
            index.add(sub)
        assert len(index) == count + len(matching)
        found = candidates_of(index, entity, EventType.CREATE)
        assert set(matching) <= found
        counts.append(len(found))
    assert counts == [len(matching)] * 3, f"candidates for 10, 1,000, 10,000 non-matching subscriptions: {counts}"
