"""What every entity sub-API does, for any entity type; the per-entity APIs give it the Medtech names."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypeVar, cast, overload

import orjson

from medstream.crypto.encrypted_self import ENCRYPTED_SELF
from medstream.errors import ValidationError
from medstream.events.client_state import SubscriptionState
from medstream.events.protocol import MAX_MESSAGE_BYTES
from medstream.events.resume import Position
from medstream.events.types import EventType
from medstream.filters import Filter
from medstream.filters.fields import refuse_encrypted_fields
from medstream.filters.parse import parse_filter
from medstream.model.base import MedstreamModel
from medstream.model.common import Entity
from medstream.model.entities import EntityKind
from medstream.sdk.connection import Connection
from medstream.sdk.crypto_api import CryptoApi
from medstream.sdk.delivery import Delivery
from medstream.sdk.event_stream import EventStreams
from medstream.sdk.subscription_types import SubscriptionOptions
from medstream.sdk.transport import Transport

E = TypeVar("E", bound=Entity)

# Why the SDK refuses a filter on a field it encrypts (docs/security.md, "The SDK's side").
_NOT_SENT = "not sent: this server requires encryption, and the filter would show it values that travel encrypted"


@dataclass(frozen=True)
class PaginatedList(Generic[E]):
    """One page of `filter_*_by`: `rows` in id order, and `next_id` (None on the last page) to pass back as
    `next_id` for the rows after them. `all_pages()` and `all_rows()` walk on from this page to the last."""

    rows: list[E]
    next_id: str | None
    _next_page: Callable[[str], Awaitable[PaginatedList[E]]] | None = field(default=None, repr=False, compare=False)

    async def all_pages(self) -> AsyncIterator[PaginatedList[E]]:
        """This page, then every following one."""
        page: PaginatedList[E] = self
        yield page
        while page.next_id is not None and page._next_page is not None:
            page = await page._next_page(page.next_id)
            yield page

    async def all_rows(self) -> AsyncIterator[E]:
        """The rows of this page and of every following one."""
        async for page in self.all_pages():
            for row in page.rows:
                yield row


class EntityApi(Generic[E]):
    """CRUD and sharing for one entity type over REST. For a kind with encrypted fields, and a user acting as a
    data owner, entities are encrypted before they are sent and decrypted as they are read (`crypto`)."""

    kind: ClassVar[EntityKind]

    def __init__(self, transport: Transport, streams: EventStreams, crypto: CryptoApi | None = None) -> None:
        self._transport = transport
        self._streams = streams
        self._path = f"/rest/v1/{self.kind.collection}"
        self._crypto = crypto if crypto is not None and crypto.encrypts(self.kind.name) else None

    async def _one(self, payload: Any) -> E:
        """An entity as the server answered it, decrypted; DecryptionError when it cannot be."""
        if self._crypto is not None and isinstance(payload, dict):
            payload = await self._crypto.decrypt(self.kind.name, payload)
        return self.kind.model.model_validate(payload)  # type: ignore[return-value]

    async def _many(self, payload: Any) -> list[E]:
        return [await self._one(item) for item in payload]

    def _refuse_clear_search(self, filter_json: dict[str, Any] | None) -> None:
        """On a server that requires encryption, ValidationError before anything is sent for a filter that reads a
        field this kind encrypts: the server refuses it too, but it would have seen, in clear, the values it
        searches. A filter that does not parse is left to the server, which names what is wrong with it."""
        if self._crypto is None or not self._crypto.state.require_encryption or filter_json is None:
            return
        try:
            filter = parse_filter(filter_json, self.kind.name)
        except ValidationError:
            return
        refuse_encrypted_fields(filter, self._crypto.state.fields_of(self.kind.name), reason=_NOT_SENT)

    async def _stored(self, entity_id: str) -> dict[str, Any]:
        """The entity as the server stores it (encrypted)."""
        payload: dict[str, Any] = await self._transport.request("GET", f"{self._path}/{entity_id}")
        return payload

    async def _write_body(self, entity: E) -> dict[str, Any]:
        """What is sent for `entity`: encrypted for a kind with encrypted fields (an update reuses the key the
        entity has, read from the server when `entity` does not carry its `security_metadata`)."""
        wire = entity.to_write_dict()
        if self._crypto is None:
            return wire
        stored: dict[str, Any] | None = None
        if entity.rev is not None and entity.id is not None:
            stored = wire if entity.security_metadata is not None else await self._stored(entity.id)
        return await self._crypto.encrypt_for_write(self.kind.name, wire, stored)

    async def create_or_modify(self, entity: E) -> E:
        """Create `entity` (no `rev`) or modify it (its current `rev`); ConflictError if the rev is stale."""
        return await self._one(await self._transport.request("POST", self._path, await self._write_body(entity)))

    async def create_or_modify_many(self, entities: Sequence[E]) -> list[E]:
        """Create or modify several entities in one transaction: all are stored, or none."""
        body = [await self._write_body(entity) for entity in entities]
        return await self._many(await self._transport.request("POST", f"{self._path}/batch", body))

    async def get(self, entity_id: str) -> E:
        """The entity (a tombstone if deleted); NotFoundError if it does not exist or you may not read it."""
        return await self._one(await self._stored(entity_id))

    async def get_many(self, entity_ids: Sequence[str]) -> list[E]:
        """The entities among `entity_ids` that exist and that you may read."""
        body = {"ids": list(entity_ids)}
        return await self._many(await self._transport.request("POST", f"{self._path}/by-ids", body))

    async def delete(self, entity_id: str) -> E:
        """Soft-delete; returns the tombstone (with `deletion_date`)."""
        return await self._one(await self._transport.request("DELETE", f"{self._path}/{entity_id}"))

    async def delete_many(self, entity_ids: Sequence[str]) -> list[E]:
        """Soft-delete several entities, all or none; returns the tombstones."""
        body = {"ids": list(entity_ids)}
        return await self._many(await self._transport.request("POST", f"{self._path}/delete", body))

    async def give_access_to(
        self, entity: E | str, data_owner_id: str, permissions: Literal["READ", "WRITE"] = "WRITE"
    ) -> E:
        """Share the entity with another data owner (a healthcare professional, patient or device). For a kind
        with encrypted fields, its key is wrapped for that data owner (under the exchange data the two share,
        made and signed on the first share) in a new delegation with `permissions`; the content is not
        re-encrypted. KeyVerificationError when the data owner's published keys are not the ones pinned."""
        entity_id = entity if isinstance(entity, str) else entity.id
        assert entity_id is not None, "an entity is shared once it has an id"
        if self._crypto is not None:
            stored = await self._stored(entity_id)
            if stored.get(ENCRYPTED_SELF) is not None:
                body = await self._crypto.shared(self.kind.name, stored, data_owner_id, permissions)
                if body is None:  # already shared: nothing is written
                    return await self._one(stored)
                return await self._one(await self._transport.request("POST", self._path, body))
        body = {"dataOwnerId": data_owner_id}
        return await self._one(await self._transport.request("POST", f"{self._path}/{entity_id}/access", body))

    async def revoke_access_from(self, entity: E | str, data_owner_id: str) -> E:
        """Remove your delegations of the entity to a data owner: unless someone else shared it with them too,
        they no longer read it nor receive its events. For a kind with encrypted fields, the entity's key then
        rotates in a second write: the content is re-encrypted under a new key, re-wrapped in your other
        delegations (docs/security.md: what happens to the delegations of others)."""
        entity_id = entity if isinstance(entity, str) else entity.id
        assert entity_id is not None, "an entity is unshared once it has an id"
        path = f"{self._path}/{entity_id}/access/{data_owner_id}"
        revoked: dict[str, Any] = await self._transport.request("DELETE", path)
        unchanged = not isinstance(entity, str) and revoked.get("rev") == entity.rev  # it had no such delegation
        if self._crypto is None or revoked.get(ENCRYPTED_SELF) is None or unchanged:
            return await self._one(revoked)
        body = await self._crypto.rotated(self.kind.name, revoked)
        return await self._one(await self._transport.request("POST", self._path, body))

    revoke_access = revoke_access_from

    async def list_page(self, start_after: str | None = None, limit: int = 1000) -> list[E]:
        """One page of the live entities you may read, ordered by id, after `start_after`."""
        params: dict[str, Any] = {"limit": limit}
        if start_after is not None:
            params["startAfter"] = start_after
        return await self._many(await self._transport.request("GET", self._path, params=params))

    async def filter_by(
        self, filter: Filter | dict[str, Any], next_id: str | None = None, limit: int = 1000
    ) -> PaginatedList[E]:
        """The live entities `filter` matches and you may read, by id: at most `limit` (1 to 10,000) after
        `next_id` (a previous page's). A bad filter, or one of another entity type, is a ValidationError."""
        filter_json = _filter_json(filter)
        self._refuse_clear_search(filter_json)
        body: dict[str, Any] = {"filter": filter_json, "limit": limit}
        if next_id is not None:
            body["nextId"] = next_id
        payload = await self._transport.request("POST", f"{self._path}/filter", body)

        async def next_page(after: str) -> PaginatedList[E]:
            return await self.filter_by(filter_json, after, limit)

        return PaginatedList(await self._many(payload["rows"]), payload.get("nextId"), next_page)

    async def match_by(self, filter: Filter | dict[str, Any]) -> list[str]:
        """The ids of every live entity `filter` matches and you may read, by id (at most 100,000: past that,
        a ValidationError; page with `filter_by` instead)."""
        filter_json = _filter_json(filter)
        self._refuse_clear_search(filter_json)
        return [
            str(entity_id) for entity_id in await self._transport.request("POST", f"{self._path}/match", filter_json)
        ]

    async def subscribe_to_events(
        self,
        event_types: Sequence[str | EventType],
        filter: MedstreamModel | dict[str, Any] | None,
        callback: Callable[..., Awaitable[None] | None],
        options: SubscriptionOptions | None = None,
        *,
        resume_from: Position | str | None = None,
    ) -> Connection[E]:
        """Call `callback(entity)` or `callback(entity, event)` for each matching CREATE, UPDATE or DELETE.

        Returns once the server has acknowledged the subscription: every write committed after that reaches
        the callback, across reconnections, exactly once and in order. With `resume_from` (a `Position`, or its
        text form, stored by an earlier run from `event.position` or `connection.position`), the events after it
        come first, each once; when the server no longer has them (past retention, or another event log),
        `on_gap` says so and delivery goes on from the present."""
        try:
            types = [EventType(str(t).upper()) for t in event_types]
        except ValueError:
            raise ValidationError(f"event types are CREATE, UPDATE, DELETE; got {list(event_types)}") from None
        if not types:
            raise ValidationError("subscribe to at least one event type")
        start = _position(resume_from)
        filter_json = _filter_json(filter)
        self._refuse_clear_search(filter_json)
        if filter_json is not None and len(orjson.dumps(filter_json)) > MAX_MESSAGE_BYTES - 1024:
            # The server would close the whole socket (4400) for an oversized subscribe: refuse it here instead.
            raise ValidationError(f"this filter is over the {MAX_MESSAGE_BYTES // 1024} KiB a subscription may send")
        stream = self._streams.stream_for(options or SubscriptionOptions())
        subscription = SubscriptionState(
            uuid.uuid4().hex[:16], self.kind.name, [str(t) for t in types], filter_json, start=start
        )
        delivery: Delivery[E] = Delivery(
            subscription,
            cast(type[E], self.kind.model),
            callback,
            max_pending=stream.options.max_pending_events,
            hold=stream.hold,
            release=stream.release,
            decryptor=self._crypto.decryptor(self.kind.name) if self._crypto is not None else None,
        )
        connection = Connection(stream, delivery)
        try:
            await stream.subscribe(delivery)
            await connection.wait_established()
        except BaseException:  # refused, or cancelled (a timeout around this call): leave nothing subscribed
            if not connection.is_closed:
                await connection.close()
            raise
        return connection


def _position(resume_from: Position | str | None) -> Position | None:
    """`resume_from` as a Position; ValidationError for one that is neither a Position nor its text form."""
    if resume_from is None or isinstance(resume_from, Position):
        return resume_from
    if not isinstance(resume_from, str):
        raise ValidationError(f"resume_from is a Position or its text form, not {type(resume_from).__name__}")
    try:
        return Position.parse(resume_from)
    except ValueError as exc:
        raise ValidationError(f"resume_from: {exc}") from None


@overload
def _filter_json(filter: MedstreamModel | dict[str, Any]) -> dict[str, Any]: ...
@overload
def _filter_json(filter: MedstreamModel | dict[str, Any] | None) -> dict[str, Any] | None: ...
def _filter_json(filter: MedstreamModel | dict[str, Any] | None) -> dict[str, Any] | None:
    """A filter as sent on the wire: a built filter's JSON form, or JSON given as it is."""
    return filter.to_json_dict() if isinstance(filter, MedstreamModel) else filter
