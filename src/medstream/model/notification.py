"""Notification: a task for a data owner, such as granting access to data after a key change."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from medstream.model.common import Entity, Identifier, Int64, Property


class NotificationType(StrEnum):
    """What a notification asks for."""

    KEY_PAIR_UPDATE = "KEY_PAIR_UPDATE"
    NEW_USER_OWN_DATA_ACCESS = "NEW_USER_OWN_DATA_ACCESS"
    OTHER = "OTHER"


class NotificationStatus(StrEnum):
    """Where the task a notification asks for stands."""

    pending = "pending"
    ongoing = "ongoing"
    cancelled = "cancelled"
    completed = "completed"


class Notification(Entity):
    """A task for a data owner; its details are in `properties`."""

    entity_type: ClassVar[str] = "Notification"

    identifiers: list[Identifier] = Field(default_factory=list)
    end_of_life: Int64 | None = None
    status: NotificationStatus | None = None
    type: NotificationType | None = None
    properties: list[Property] = Field(default_factory=list)
