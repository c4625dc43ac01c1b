"""events.matching: an event reaches exactly the live subscriptions that want it (event type, access, filter),
once, past their cursor, as the protocol's `event` frame; replays and gaps move cursors as the protocol says.

Real filters, real entities (tests/strategies.py), a real subscription index; the sink is the one seam, a list of
the frames a socket's send queue would have received.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medstream.access import Actor
from medstream.delegations import server_metadata
from medstream.events.index import SubscriptionIndex
from medstream.events.matching import EventView, deliver, dispatch_event, replay_event, skip_live_to, skip_to
from medstream.events.subscription import Subscription
from medstream.events.types import EntityEvent, EventType
from medstream.filters import DataSampleByIdsFilter, Filter, PatientByIdsFilter, matches
from medstream.model import CodingReference, DataSample, Entity, Patient
from tests.filter_strategies import DATA_OWNERS, FilterPool, entities_for_filters, filters_for

_numbers = itertools.count()
DOCTOR = Actor("doctor", "hcp-1")
ADMIN = Actor("admin", None, is_admin=True)


class Frames:
    """An event sink that keeps what it is handed."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def deliver(self, frame: bytes) -> None:
        self.frames.append(frame)

    async def wait_for_room(self) -> int:
        return 1_000


def subscription(
    entity_type: str,
    filter: Filter | None = None,
    actor: Actor = DOCTOR,
    event_types: frozenset[EventType] = frozenset(EventType),
    *,
    cursor: int = 0,
    live: bool = True,
) -> Subscription:
    return Subscription(
        id=f"s{next(_numbers)}",
        entity_type=entity_type,
        event_types=event_types,
        filter=filter,
        actor=actor,
        sink=Frames(),
        cursor=cursor,
        live=live,
    )


def raw_frames_of(sub: Subscription) -> list[bytes]:
    assert isinstance(sub.sink, Frames)
    return sub.sink.frames


def frames_of(sub: Subscription) -> list[dict[str, Any]]:
    return [orjson.loads(frame) for frame in raw_frames_of(sub)]


def event_of(entity: Entity, seq: int = 1, event_type: EventType = EventType.CREATE) -> EntityEvent:
    assert entity.id is not None
    return EntityEvent(
        seq=seq,
        entity_type=entity.entity_type,
        entity_id=entity.id,
        rev="1-abc",
        event_type=event_type,
        document=entity.to_json(),
        readers=entity.readers,
        created=0,
    )


def sample(entity_id: str = "ds-1", readers: tuple[str, ...] = ("hcp-1",)) -> DataSample:
    return DataSample(
        id=entity_id,
        labels={CodingReference(type="T", code="C")},
        security_metadata=server_metadata(None, frozenset(readers)),
    )


def indexed(*subscriptions: Subscription) -> SubscriptionIndex:
    index = SubscriptionIndex()
    for sub in subscriptions:
        index.add(sub)
    return index


# -- who receives an event ---------------------------------------------------------------------------------------


def test_a_matching_event_reaches_each_live_subscription_as_its_event_frame() -> None:
    entity = sample()
    by_id = subscription("DataSample", DataSampleByIdsFilter(ids=frozenset({"ds-1"})))
    unfiltered = subscription("DataSample")
    catching_up = subscription("DataSample", live=False)
    dispatch_event(indexed(by_id, unfiltered, catching_up), event_of(entity, seq=7))
    for sub in (by_id, unfiltered):
        assert frames_of(sub) == [
            {
                "type": "event",
                "id": sub.id,
                "seq": 7,
                "event": "CREATE",
                "entityType": "DataSample",
                "entity": orjson.loads(entity.to_json()),
            }
        ]
        assert (sub.cursor, sub.delivered) == (7, 1)
    assert frames_of(catching_up) == [] and catching_up.cursor == 0, "a subscription catching up is left alone"


def test_an_event_at_or_before_the_cursor_is_not_delivered_again() -> None:
    sub = subscription("DataSample", cursor=5)
    index = indexed(sub)
    for seq in (4, 5):
        dispatch_event(index, event_of(sample(), seq=seq))
    assert frames_of(sub) == [] and sub.cursor == 5
    dispatch_event(index, event_of(sample(), seq=6))
    assert [f["seq"] for f in frames_of(sub)] == [6]


def test_unwanted_event_types_unreadable_entities_and_non_matching_filters_are_not_delivered() -> None:
    only_deletes = subscription("DataSample", event_types=frozenset({EventType.DELETE}))
    other_owner = subscription("DataSample", DataSampleByIdsFilter(ids=frozenset({"ds-1"})), Actor("u", "hcp-2"))
    no_owner = subscription("DataSample", DataSampleByIdsFilter(ids=frozenset({"ds-1"})), Actor("u", None))
    other_id = subscription("DataSample", DataSampleByIdsFilter(ids=frozenset({"ds-2"})))
    admin = subscription("DataSample", DataSampleByIdsFilter(ids=frozenset({"ds-1"})), ADMIN)
    dispatch_event(indexed(only_deletes, other_owner, no_owner, other_id, admin), event_of(sample(), seq=3))
    for sub in (only_deletes, other_owner, no_owner, other_id):
        assert frames_of(sub) == [] and sub.cursor == 0, sub
    assert [f["seq"] for f in frames_of(admin)] == [3], "an admin reads every entity"


def test_an_event_nothing_looks_into_is_sent_as_stored_without_being_parsed() -> None:
    event = event_of(sample(), seq=2)
    unparseable = EntityEvent(**{**{f: getattr(event, f) for f in event.__slots__}, "document": b'{"id":"ds-1"'})
    sub = subscription("DataSample")  # no filter: indexed under its reader, which needs no entity
    dispatch_event(indexed(sub), unparseable)
    assert sub.delivered == 1
    (frame,) = raw_frames_of(sub)
    assert frame.endswith(b',"entity":{"id":"ds-1"}'), frame


def test_a_view_parses_its_entity_once_and_uses_the_one_it_is_given() -> None:
    entity = sample()
    event = event_of(entity)
    assert EventView(event, entity).entity is entity
    view = EventView(event)
    parsed = view.entity
    assert parsed == entity and view.entity is parsed
    assert view.values_of("id") == {"ds-1"} and view.values_of("reader") == {"hcp-1"}
    assert ("T", "C") in view.values_of("label")


def test_deliver_counts_and_moves_the_cursor_only_when_it_sends() -> None:
    view = EventView(event_of(sample(), seq=9))
    wanting, not_wanting = subscription("DataSample"), subscription("DataSample", actor=Actor("u", "hcp-2"))
    for sub in (wanting, not_wanting):
        deliver(view, sub)
        deliver(view, sub)  # the second time it is at the cursor
    assert (wanting.cursor, wanting.delivered, len(frames_of(wanting))) == (9, 1, 1)
    assert (not_wanting.cursor, not_wanting.delivered, frames_of(not_wanting)) == (0, 0, [])


def entities_with_ids(kind: str) -> st.SearchStrategy[list[Entity]]:
    return st.lists(entities_for_filters(kind), min_size=1, max_size=4).map(
        lambda drawn: [e if e.id is not None else e.model_copy(update={"id": f"gen-{n}"}) for n, e in enumerate(drawn)]
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(kind=st.sampled_from(["DataSample", "Patient", "HealthcareElement"]), data=st.data())
def test_an_event_reaches_exactly_the_live_subscriptions_that_want_it(kind: str, data: st.DataObject) -> None:
    entities = data.draw(entities_with_ids(kind), label="entities")
    pool = FilterPool.of(entities, data_owners=DATA_OWNERS)
    actors = st.builds(Actor, st.just("u"), st.none() | st.sampled_from(pool.data_owners), st.booleans())
    subscriptions = data.draw(
        st.lists(
            st.builds(
                subscription,
                entity_type=st.just(kind),
                filter=st.none() | filters_for(kind, pool, max_leaves=4),
                actor=actors,
                event_types=st.frozensets(st.sampled_from(EventType), min_size=1),
                live=st.booleans(),
            ),
            min_size=1,
            max_size=8,
        ),
        label="subscriptions",
    )
    index = indexed(*subscriptions)
    for seq, (entity, event_type) in enumerate(itertools.product(entities, EventType), start=1):
        before = {sub: len(frames_of(sub)) for sub in subscriptions}
        dispatch_event(index, event_of(entity, seq, event_type))
        for sub in subscriptions:
            wanted = (
                sub.live
                and event_type in sub.event_types
                and sub.actor.can_read(entity.readers)
                and (sub.filter is None or matches(sub.filter, entity))
            )
            got = frames_of(sub)[before[sub] :]
            assert [f["seq"] for f in got] == ([seq] if wanted else []), (sub.filter, sub.actor, entity, event_type)


# -- replay and gaps --------------------------------------------------------------------------------------------


def test_a_replay_delivers_its_entity_type_and_moves_past_the_others() -> None:
    sub = subscription("DataSample", live=False)
    patient = Patient(id="pat-1", security_metadata=server_metadata(None, frozenset({"hcp-1"})))
    replay_event(event_of(sample("ds-1"), seq=1), sub)
    replay_event(event_of(patient, seq=2), sub)
    assert [f["seq"] for f in frames_of(sub)] == [1] and sub.cursor == 2
    replay_event(event_of(sample("ds-2"), seq=2), sub)  # already seen
    assert len(frames_of(sub)) == 1
    by_patient_id = subscription("Patient", PatientByIdsFilter(ids=frozenset({"pat-2"})), live=False)
    replay_event(event_of(patient, seq=3), by_patient_id)
    assert frames_of(by_patient_id) == [] and by_patient_id.cursor == 3, "seen and not matching is handled too"


def test_a_gap_says_what_was_skipped_and_moves_the_cursor() -> None:
    sub = subscription("DataSample", cursor=4)
    skip_to(sub, 10, "epoch-1", "trimmed")
    assert frames_of(sub) == [
        {"type": "gap", "id": sub.id, "from": 4, "position": 10, "epoch": "epoch-1", "reason": "trimmed"}
    ]
    assert sub.cursor == 10


def test_a_gap_for_live_subscriptions_skips_those_catching_up_and_those_past_it() -> None:
    behind, past, catching_up = (
        subscription("DataSample", cursor=3),
        subscription("DataSample", cursor=12),
        subscription("DataSample", cursor=1, live=False),
    )
    skip_live_to([behind, past, catching_up], 10, "e", "trimmed")
    assert [(f["from"], f["position"]) for f in frames_of(behind)] == [(3, 10)] and behind.cursor == 10
    assert frames_of(past) == [] and past.cursor == 12
    assert frames_of(catching_up) == [] and catching_up.cursor == 1
