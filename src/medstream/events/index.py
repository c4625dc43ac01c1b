"""The subscription index: which subscriptions might want an event, without looking at the others.

Subscriptions are bucketed by entity type, event type and one key: the filter's most selective indexable
constraint (ids, label, patient, data owner) or, without one, the subscriber's own data owner (it can only
receive what its data owner reads). Admin subscriptions without an indexable constraint go to a catch-all
bucket. Looking an event up costs one dictionary probe per value the entity has under each key in use, so it
does not grow with subscriptions the event cannot match.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable

from medstream.events.subscription import Subscription
from medstream.events.types import EventType
from medstream.filters.index import index_constraint

# Keys: "id", "blind_index", "label", "patient", "data_owner" from the filter, and "reader" for the subscriber's
# data owner.
IndexKey = str
_Bucket = tuple[str, EventType]


class SubscriptionIndex:
    def __init__(self) -> None:
        self._by_value: dict[tuple[str, EventType, IndexKey], dict[object, set[Subscription]]] = {}
        self._keys_in_use: dict[_Bucket, dict[IndexKey, int]] = defaultdict(dict)
        self._catch_all: dict[_Bucket, set[Subscription]] = defaultdict(set)
        self._placement: dict[Subscription, tuple[IndexKey | None, frozenset[object]]] = {}
        self.by_entity_type: Counter[str] = Counter()  # subscriptions held, by the entity type they want

    def __len__(self) -> int:
        return len(self._placement)

    def subscriptions(self) -> list[Subscription]:
        return list(self._placement)

    def add(self, subscription: Subscription) -> None:
        key, values = self._key_of(subscription)
        if subscription not in self._placement:
            self.by_entity_type[subscription.entity_type] += 1
        self._placement[subscription] = (key, values)
        for event_type in subscription.event_types:
            bucket = (subscription.entity_type, event_type)
            if key is None:
                self._catch_all[bucket].add(subscription)
                continue
            by_value = self._by_value.setdefault((*bucket, key), {})
            for value in values:
                by_value.setdefault(value, set()).add(subscription)
            self._keys_in_use[bucket][key] = self._keys_in_use[bucket].get(key, 0) + 1

    def remove(self, subscription: Subscription) -> None:
        placement = self._placement.pop(subscription, None)
        if placement is None:
            return
        self.by_entity_type[subscription.entity_type] -= 1
        key, values = placement
        for event_type in subscription.event_types:
            bucket = (subscription.entity_type, event_type)
            if key is None:
                self._catch_all[bucket].discard(subscription)
                continue
            by_value = self._by_value[(*bucket, key)]
            for value in values:
                members = by_value.get(value)
                if members is not None:
                    members.discard(subscription)
                    if not members:
                        del by_value[value]
            remaining = self._keys_in_use[bucket][key] - 1
            if remaining:
                self._keys_in_use[bucket][key] = remaining
            else:
                del self._keys_in_use[bucket][key]

    def candidates(
        self,
        entity_type: str,
        event_type: EventType,
        values_of: Callable[[IndexKey], Iterable[object]],
    ) -> set[Subscription]:
        """Subscriptions that may match an event; `values_of(key)` gives the entity's values under a key."""
        bucket = (entity_type, event_type)
        found: set[Subscription] = set(self._catch_all.get(bucket, ()))
        for key in self._keys_in_use.get(bucket, {}):
            by_value = self._by_value[(*bucket, key)]
            for value in values_of(key):
                members = by_value.get(value)
                if members:
                    found.update(members)
        return found

    @staticmethod
    def _key_of(subscription: Subscription) -> tuple[IndexKey | None, frozenset[object]]:
        constraint = index_constraint(subscription.filter) if subscription.filter is not None else None
        if constraint is not None:
            return constraint.key, frozenset(constraint.values)
        if not subscription.actor.is_admin:
            owner = subscription.actor.data_owner_id
            # A non-admin without a data owner reads nothing: indexed under no value, it is never a candidate.
            return "reader", frozenset({owner} if owner is not None else ())
        return None, frozenset()
