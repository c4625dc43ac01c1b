"""The kinds of entity event and the event record the outbox stores and the dispatcher sends."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class EventType(StrEnum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class EntityEvent:
    """One committed write, as read back from the outbox in `seq` order."""

    seq: int
    entity_type: str
    entity_id: str
    rev: str
    event_type: EventType
    document: bytes  # the entity's stored JSON, exactly as REST returns it
    readers: frozenset[str]
    created: int  # epoch ms of the write
