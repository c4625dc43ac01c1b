"""The REST collection of every entity kind, generated from the kinds table (docs/protocol.md).

POST   /rest/v1/{collection}               create or modify one
POST   /rest/v1/{collection}/batch         create or modify many, all or nothing
GET    /rest/v1/{collection}               page through the readable live entities, by id
GET    /rest/v1/{collection}/{id}          one
POST   /rest/v1/{collection}/by-ids        many
DELETE /rest/v1/{collection}/{id}          soft-delete one
POST   /rest/v1/{collection}/delete        soft-delete many, all or nothing
POST   /rest/v1/{collection}/{id}/access   share with a data owner
DELETE /rest/v1/{collection}/{id}/access/{dataOwnerId}   remove your delegations to a data owner
POST   /rest/v1/{collection}/filter        a page of what a filter selects (routes/queries.py)
POST   /rest/v1/{collection}/match         the ids a filter selects (routes/queries.py)
POST   /rest/v1/patients/{id}/data-samples[/batch]   data samples for a patient
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, Field
from starlette.responses import Response

from medstream.access import Actor
from medstream.errors import ValidationError
from medstream.model.base import MedstreamModel
from medstream.model.common import Entity, EntityId
from medstream.model.encrypted_fields import refuse_clear_fields
from medstream.model.entities import ENTITY_KINDS, KIND_BY_NAME, EntityKind
from medstream.model.user import User
from medstream.server.rest import Body, Call, Collection, Operation
from medstream.server.routes.queries import query_operations
from medstream.server.security import hash_password
from medstream.server.state import ServerState
from medstream.store.repository import Stored

Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$", description="The entity's id")]

# The error statuses of each sort of call (besides 401 without a valid token, and 503 with the database down).
WRITE_ERRORS = (400, 401, 403, 404, 409, 413, 503)
READ_ONE_ERRORS = (400, 401, 404, 503)
READ_MANY_ERRORS = (400, 401, 413, 503)


class EntityPath(BaseModel):
    entity_id: Id


class PatientPath(BaseModel):
    patient_id: Id


class PageQuery(BaseModel):
    """`GET /rest/v1/{collection}`'s page: the entities after `startAfter`, at most `limit`."""

    start_after: str | None = Field(None, alias="startAfter", max_length=128, description="The last id seen")
    limit: int = Field(1000, ge=1, le=10_000)


class IdsRequest(MedstreamModel):
    ids: list[EntityId] = Field(max_length=10_000)


class AccessRequest(MedstreamModel):
    data_owner_id: EntityId


class AccessPath(BaseModel):
    entity_id: Id
    data_owner_id: Annotated[
        str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$", description="The data owner's id")
    ]


def json_response(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def entity_response(entity: Entity) -> Response:
    return Response(entity.to_json(), media_type="application/json")


def entities_response(entities: Sequence[Entity]) -> Response:
    return Response(b"[" + b",".join(e.to_json() for e in entities) + b"]", media_type="application/json")


async def _password_hashes(entities: Sequence[Entity]) -> list[str | None]:
    """Users may carry a new password: hash it before the write transaction opens."""
    return [await hash_password(e.password) if isinstance(e, User) and e.password else None for e in entities]


async def write_entities(
    state: ServerState, kind: EntityKind, entities: Sequence[Entity], actor: Actor
) -> list[Stored]:
    if len(entities) > state.settings.max_batch_size:
        raise ValidationError(f"a batch holds at most {state.settings.max_batch_size} entities")
    if state.settings.require_encryption:
        refuse_clear_fields(entities)
    # Only users carry passwords: other kinds skip the coroutine (every write of them comes here).
    hashes = await _password_hashes(entities) if entities and isinstance(entities[0], User) else None
    stored = await state.repository.create_or_modify_stored(kind, entities, actor, password_hashes=hashes)
    _seen(state, [s.entity for s in stored])
    return stored


def stored_response(stored: Sequence[Stored], *, one: bool) -> Response:
    """The answer to a write: the entities as stored, in the JSON the write made of them."""
    body = stored[0].json if one else b"[" + b",".join(s.json for s in stored) + b"]"
    return Response(body, media_type="application/json")


def _seen(state: ServerState, written: list[Entity]) -> list[Entity]:
    """A user written through this node is re-checked at once here (other nodes learn it from its event)."""
    for entity in written:
        if isinstance(entity, User) and entity.id is not None:
            state.actors.forget(entity.id)
    return written


def entity_collection(kind: EntityKind, extra: Sequence[Operation] = ()) -> Collection:
    """Every call of one kind's collection, `/rest/v1/{collection}`, after `extra`; its filtered reads come
    first, before `/{entity_id}` could take their paths for ids."""
    model, name = kind.model, kind.name
    many: Any = list[model]  # type: ignore[valid-type]

    async def create_or_modify(call: Call) -> Response:
        return stored_response(await write_entities(call.state, kind, [call.body], call.actor), one=True)

    async def create_or_modify_batch(call: Call) -> Response:
        return stored_response(await write_entities(call.state, kind, call.body, call.actor), one=False)

    async def list_entities(call: Call) -> Response:
        page: PageQuery = call.query
        found = await call.state.repository.list_readable(
            kind, call.actor, start_after=page.start_after, limit=page.limit
        )
        return entities_response(found)

    async def get_one(call: Call) -> Response:
        return json_response(await call.state.repository.get_json(kind, call.path.entity_id, call.actor))

    async def get_by_ids(call: Call) -> Response:
        return entities_response(await call.state.repository.get_many(kind, call.body.ids, call.actor))

    async def delete_one(call: Call) -> Response:
        (tombstone,) = _seen(call.state, await call.state.repository.delete(kind, [call.path.entity_id], call.actor))
        return entity_response(tombstone)

    async def delete_many(call: Call) -> Response:
        return entities_response(_seen(call.state, await call.state.repository.delete(kind, call.body.ids, call.actor)))

    async def give_access(call: Call) -> Response:
        repository, owner = call.state.repository, call.body.data_owner_id
        return entity_response(await repository.give_access(kind, call.path.entity_id, owner, call.actor))

    async def revoke_access(call: Call) -> Response:
        repository, path = call.state.repository, call.path
        return entity_response(await repository.revoke_access(kind, path.entity_id, path.data_owner_id, call.actor))

    def op(
        method: str, path: str, handler: Any, summary: str, answer: Any, errors: tuple[int, ...], **more: Any
    ) -> Operation:
        operation_id = f"{method.lower()}_{kind.plural}{path.replace('/', '_').replace('{entity_id}', 'id')}"
        operation_id = operation_id.replace("{data_owner_id}", "data_owner_id")
        return Operation(method, path, handler, summary, operation_id, answer, errors, **more)

    one_id = {"path_params": EntityPath}
    return Collection(
        f"/rest/v1/{kind.collection}",
        name,
        [
            # One entity by id first: the most frequent request, and a collection's routes are tried in order (a
            # `POST /filter` only half-matches `/{entity_id}`, which serves GET and DELETE, and goes on to its own).
            op(
                "GET", "/{entity_id}", get_one, f"One {name} (a tombstone if deleted)", model, READ_ONE_ERRORS, **one_id
            ),
            op(
                "DELETE",
                "/{entity_id}",
                delete_one,
                f"Soft-delete a {name}",
                model,
                (400, 401, 403, 404, 503),
                **one_id,
            ),
            *extra,
            *query_operations(kind),
            op("POST", "", create_or_modify, f"Create or modify a {name}", model, WRITE_ERRORS, body=Body(model)),
            op(
                "POST",
                "/batch",
                create_or_modify_batch,
                f"Create or modify many {name}s, all or nothing",
                many,
                WRITE_ERRORS,
                body=Body(many),
            ),
            op(
                "GET",
                "",
                list_entities,
                f"Page through the live {name}s you may read, by id",
                many,
                (400, 401, 503),
                query=PageQuery,
            ),
            op(
                "POST",
                "/by-ids",
                get_by_ids,
                f"The {name}s with these ids that you may read",
                many,
                READ_MANY_ERRORS,
                body=Body(IdsRequest),
            ),
            op(
                "POST",
                "/delete",
                delete_many,
                f"Soft-delete many {name}s, all or nothing",
                many,
                WRITE_ERRORS,
                body=Body(IdsRequest),
            ),
            op(
                "POST",
                "/{entity_id}/access",
                give_access,
                f"Share a {name} with a data owner",
                model,
                WRITE_ERRORS,
                body=Body(AccessRequest),
                **one_id,
            ),
            op(
                "DELETE",
                "/{entity_id}/access/{data_owner_id}",
                revoke_access,
                f"Remove your delegations of a {name} to a data owner (an admin's: every delegation to it)",
                model,
                WRITE_ERRORS,
                path_params=AccessPath,
            ),
        ],
    )


def data_samples_for_patient() -> list[Operation]:
    """`POST /rest/v1/patients/{patient_id}/data-samples[/batch]`: data samples are created for a patient."""
    kind = KIND_BY_NAME["DataSample"]
    many: Any = list[kind.model]  # type: ignore[name-defined]

    def for_patient(patient_id: str, entities: Sequence[Entity]) -> list[Entity]:
        """Link each sample to the path's patient. The samples are this request's own, just validated from its
        body: they are linked in place (a copy of each was a tenth of a batch's CPU)."""
        for entity in entities:
            linked_id = getattr(entity, "patient_id", None)
            if linked_id is not None and linked_id != patient_id:
                raise ValidationError(f"data sample patientId {linked_id} differs from the path's {patient_id}")
        for entity in entities:
            entity.patient_id = patient_id  # type: ignore[attr-defined]
        return list(entities)

    async def create_or_modify_for(call: Call) -> Response:
        samples = for_patient(call.path.patient_id, [call.body])
        return stored_response(await write_entities(call.state, kind, samples, call.actor), one=True)

    async def create_or_modify_many_for(call: Call) -> Response:
        samples = for_patient(call.path.patient_id, call.body)
        return stored_response(await write_entities(call.state, kind, samples, call.actor), one=False)

    path = "/{patient_id}/data-samples"
    return [
        Operation(
            "POST",
            path,
            create_or_modify_for,
            "Create or modify a DataSample of this patient",
            "post_patient_data_samples",
            kind.model,
            WRITE_ERRORS,
            body=Body(kind.model),
            path_params=PatientPath,
        ),
        Operation(
            "POST",
            f"{path}/batch",
            create_or_modify_many_for,
            "Create or modify many DataSamples of this patient, all or nothing",
            "post_patient_data_samples_batch",
            many,
            WRITE_ERRORS,
            body=Body(many),
            path_params=PatientPath,
        ),
    ]


def entity_collections() -> list[Collection]:
    return [
        entity_collection(kind, data_samples_for_patient() if kind.name == "Patient" else ()) for kind in ENTITY_KINDS
    ]
