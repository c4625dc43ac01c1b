"""The messages of iCure's notification socket (`/ws/v2/notification/subscribe`), sans I/O.

A client sends one `Subscription` (again after each reconnect), then answers the server's text `ping` with
`pong`; the server sends each matching entity, as iCure's JSON, one per text frame, with no envelope. One
subscription per socket: a second one is refused by closing the socket.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import orjson
import pydantic

from medstream.errors import ValidationError
from medstream.events.types import EventType
from medstream.filters.tree import Filter
from medstream.icure.filters import medstream_filter
from medstream.icure.shapes import Subscription

PING = "ping"
PONG = "pong"
# A subscription frame is a few hundred bytes; this bounds what the socket reads before it is refused.
MAX_FRAME_CHARS = 65_536

_PACKAGE = "org.taktik.icure.entities."
# iCure's entity classes, by the Medstream entity type whose events they receive.
ENTITY_CLASSES: Mapping[str, str] = {
    "org.taktik.icure.entities.embed.Service": "DataSample",
    "org.taktik.icure.entities.Patient": "Patient",
    "org.taktik.icure.entities.HealthElement": "HealthcareElement",
}
# The entity types whose deletes are served: a deleted patient or health element is its tombstone with
# `deletionDate`, which iCure's Patient and HealthElement have; iCure's Service has no field for it, so a deleted
# DataSample would look alive. iCure deletes softly, by an update that sets `deletionDate`, so a subscription to
# UPDATE events receives Medstream's DELETE events too (cardinal asks for CREATE and UPDATE only).
DELETE_SERVED = frozenset({"Patient", "HealthcareElement"})


@dataclass(frozen=True)
class ParsedSubscription:
    """A subscription in Medstream's terms."""

    entity_type: str
    event_types: frozenset[EventType]
    filter: Filter | None
    # The frame's entity class, event types and filter as canonical JSON (keys sorted, event types sorted and
    # once each): equal for the same subscription sent again, as a client does after each reconnect.
    identity: str


def parse_frame(text: str) -> ParsedSubscription | str:
    """A client frame: the subscription, or `PONG` (the answer to a ping). ValidationError otherwise."""
    if text == PONG:
        return PONG
    if len(text) > MAX_FRAME_CHARS:
        raise ValidationError(f"a frame holds at most {MAX_FRAME_CHARS} characters")
    try:
        subscription = Subscription.model_validate_json(text)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'frame'}: {e['msg']}" for e in exc.errors())
        raise ValidationError(f"not a subscription: {problems}") from None
    entity_type = ENTITY_CLASSES.get(subscription.entity_class)
    if entity_type is None:
        # Short: it is also the socket's close reason (123 bytes at most).
        known = ", ".join(sorted(name.removeprefix(_PACKAGE) for name in ENTITY_CLASSES))
        sent = subscription.entity_class.removeprefix(_PACKAGE)[:40]
        raise ValidationError(f"entityClass {sent!r} not served; served ({_PACKAGE}*): {known}")
    if "DELETE" in subscription.event_types and entity_type not in DELETE_SERVED:
        raise ValidationError(f"Medstream serves CREATE and UPDATE events of {subscription.entity_class}, not DELETE")
    if subscription.access_control_keys:
        raise ValidationError("Medstream does not match subscriptions by accessControlKeys (anonymous data owners)")
    event_filter: Filter | None = None
    if subscription.filter is not None:
        if subscription.filter.predicate is not None:
            raise ValidationError("Medstream does not evaluate filter predicates; send the filter alone")
        event_filter = medstream_filter(subscription.filter.filter, entity_type)
    event_types = {EventType(t) for t in subscription.event_types}
    if EventType.UPDATE in event_types and entity_type in DELETE_SERVED:
        event_types.add(EventType.DELETE)
    identity = {
        "entityClass": subscription.entity_class,
        "eventTypes": sorted(set(subscription.event_types)),
        "filter": None if subscription.filter is None else subscription.filter.filter,
    }
    canonical = orjson.dumps(identity, option=orjson.OPT_SORT_KEYS).decode()
    return ParsedSubscription(entity_type, frozenset(event_types), event_filter, canonical)
