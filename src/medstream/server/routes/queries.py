"""Filtered reads of every entity kind, generated from the kinds table (docs/protocol.md, docs/filters.md).

POST /rest/v1/{collection}/filter   {"filter": <tree>, "nextId"?, "limit"?} -> {"rows": [...], "nextId": id | null}
POST /rest/v1/{collection}/match    <tree> -> [id, ...], every matching id (at most MAX_MATCH_IDS)

Both read only the live entities the caller may read, ordered by id. A filter that does not parse, or selects
another kind, is a 400 (413 over its size bounds) naming the bad node and its path in the tree.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import orjson
from pydantic import Field
from starlette.responses import Response

from medstream.access import Actor
from medstream.errors import ValidationError
from medstream.filters import Filter, parse_filter
from medstream.filters.fields import refuse_encrypted_fields
from medstream.model.base import MedstreamModel
from medstream.model.common import Entity
from medstream.model.entities import EntityKind
from medstream.server.rest import Body, Call, Operation
from medstream.server.state import ServerState
from medstream.store.queries import MAX_PAGE, filter_entities, filter_ids

# The most ids one match call answers; past it, the call fails rather than answer part of the ids.
MAX_MATCH_IDS = 100_000

E = TypeVar("E", bound=Entity)


class FilterRequest(MedstreamModel):
    """One page of a filter's results: the rows after `next_id` (a previous page's `nextId`), at most `limit`."""

    filter: Any = Field(description="The filter tree (docs/filters.md), of this collection's entity type")
    next_id: str | None = Field(None, max_length=128, description="The previous page's nextId; none for the first")
    limit: int = Field(1000, ge=1, le=MAX_PAGE)


class FilterPage(MedstreamModel, Generic[E]):
    """A page of results; `next_id` is the last row's id when more rows follow, to pass back as nextId."""

    rows: list[E]
    next_id: str | None = None


def _page_response(rows: list[Entity], next_id: str | None) -> Response:
    body = b'{"rows":[' + b",".join(row.to_json() for row in rows) + b'],"nextId":' + orjson.dumps(next_id) + b"}"
    return Response(body, media_type="application/json")


async def matching_ids(state: ServerState, kind: EntityKind, filter: Filter, actor: Actor) -> list[str]:
    """Every id `filter` matches that `actor` may read, in id order; ValidationError past MAX_MATCH_IDS."""
    ids: list[str] = []
    while True:
        start_after = ids[-1] if ids else None
        page_size = min(MAX_PAGE, MAX_MATCH_IDS + 1 - len(ids))
        page = await filter_ids(state.database, kind, filter, actor, start_after=start_after, limit=page_size)
        ids.extend(page)
        if len(ids) > MAX_MATCH_IDS:
            message = f"the filter matches more than {MAX_MATCH_IDS} ids: narrow it, or page with POST .../filter"
            raise ValidationError(message)
        if len(page) < page_size:
            return ids


QUERY_ERRORS = (400, 401, 413, 503)


def _parsed(state: ServerState, data: Any, entity_type: str) -> Filter:
    """The filter in a request; with encryption required, one that reads no encrypted field."""
    filter = parse_filter(data, entity_type)
    if state.settings.require_encryption:
        refuse_encrypted_fields(filter)
    return filter


def query_operations(kind: EntityKind) -> list[Operation]:
    """`/filter` and `/match` of one kind's collection."""
    name = kind.name

    async def filter_by(call: Call) -> Response:
        request: FilterRequest = call.body
        filter = _parsed(call.state, request.filter, name)
        database, limit, actor = call.state.database, request.limit, call.actor
        rows = await filter_entities(database, kind, filter, actor, start_after=request.next_id, limit=limit)
        next_id = None
        # A full page says nothing of what follows it: look one row further, so the last page says so.
        if len(rows) == limit and await filter_ids(database, kind, filter, actor, start_after=rows[-1].id, limit=1):
            next_id = rows[-1].id
        return _page_response(rows, next_id)

    async def match_by(call: Call) -> Response:
        ids = await matching_ids(call.state, kind, _parsed(call.state, call.body, name), call.actor)
        return Response(orjson.dumps(ids), media_type="application/json")

    page_model: Any = FilterPage[kind.model]  # type: ignore[name-defined]
    return [
        Operation(
            "POST",
            "/filter",
            filter_by,
            f"A page of the live {name}s a filter matches and you may read, by id",
            f"filter_{kind.plural}_by",
            page_model,
            QUERY_ERRORS,
            body=Body(FilterRequest),
        ),
        Operation(
            "POST",
            "/match",
            match_by,
            f"The ids of every live {name} a filter matches and you may read (at most {MAX_MATCH_IDS})",
            f"match_{kind.plural}_by",
            list[str],
            QUERY_ERRORS,
            body=Body(Any, description="The filter tree (docs/filters.md)"),
        ),
    ]
