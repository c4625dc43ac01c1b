"""What every entity sub-API does, for any entity type; the per-entity APIs give it the Medtech names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar

from medstream.model.common import Entity
from medstream.model.entities import EntityKind
from medstream.sdk.transport import Transport

E = TypeVar("E", bound=Entity)


class EntityApi(Generic[E]):
    """CRUD and sharing for one entity type over REST."""

    kind: ClassVar[EntityKind]

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._path = f"/rest/v1/{self.kind.collection}"

    def _one(self, payload: Any) -> E:
        return self.kind.model.model_validate(payload)  # type: ignore[return-value]

    def _many(self, payload: Any) -> list[E]:
        return [self._one(item) for item in payload]

    async def create_or_modify(self, entity: E) -> E:
        """Create `entity` (no `rev`) or modify it (its current `rev`); ConflictError if the rev is stale."""
        return self._one(await self._transport.request("POST", self._path, entity.to_write_dict()))

    async def create_or_modify_many(self, entities: Sequence[E]) -> list[E]:
        """Create or modify several entities in one transaction: all are stored, or none."""
        body = [entity.to_write_dict() for entity in entities]
        return self._many(await self._transport.request("POST", f"{self._path}/batch", body))

    async def get(self, entity_id: str) -> E:
        """The entity (a tombstone if deleted); NotFoundError if it does not exist or you may not read it."""
        return self._one(await self._transport.request("GET", f"{self._path}/{entity_id}"))

    async def get_many(self, entity_ids: Sequence[str]) -> list[E]:
        """The entities among `entity_ids` that exist and that you may read."""
        return self._many(await self._transport.request("POST", f"{self._path}/by-ids", {"ids": list(entity_ids)}))

    async def delete(self, entity_id: str) -> E:
        """Soft-delete; returns the tombstone (with `deletion_date`)."""
        return self._one(await self._transport.request("DELETE", f"{self._path}/{entity_id}"))

    async def delete_many(self, entity_ids: Sequence[str]) -> list[E]:
        """Soft-delete several entities, all or none; returns the tombstones."""
        return self._many(await self._transport.request("POST", f"{self._path}/delete", {"ids": list(entity_ids)}))

    async def give_access_to(self, entity: E | str, data_owner_id: str) -> E:
        """Share the entity with another data owner (a healthcare professional, patient or device)."""
        entity_id = entity if isinstance(entity, str) else entity.id
        body = {"dataOwnerId": data_owner_id}
        return self._one(await self._transport.request("POST", f"{self._path}/{entity_id}/access", body))

    async def list_page(self, start_after: str | None = None, limit: int = 1000) -> list[E]:
        """One page of the live entities you may read, ordered by id, after `start_after`."""
        params: dict[str, Any] = {"limit": limit}
        if start_after is not None:
            params["startAfter"] = start_after
        return self._many(await self._transport.request("GET", self._path, params=params))
