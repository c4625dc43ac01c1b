"""The REST collection of every entity kind, generated from the kinds table (DESIGN section 6).

POST   /rest/v1/{collection}               create or modify one
POST   /rest/v1/{collection}/batch         create or modify many, all or nothing
GET    /rest/v1/{collection}               page through the readable live entities, by id
GET    /rest/v1/{collection}/{id}          one
POST   /rest/v1/{collection}/by-ids        many
DELETE /rest/v1/{collection}/{id}          soft-delete one
POST   /rest/v1/{collection}/delete        soft-delete many, all or nothing
POST   /rest/v1/{collection}/{id}/access   share with a data owner
POST   /rest/v1/{collection}/filter        a page of what a filter selects (routes/queries.py)
POST   /rest/v1/{collection}/match         the ids a filter selects (routes/queries.py)
POST   /rest/v1/patients/{id}/data-samples[/batch]   data samples for a patient
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import Field
from starlette.responses import Response

from medstream.access import Actor
from medstream.errors import ValidationError
from medstream.model.base import MedstreamModel
from medstream.model.common import Entity, EntityId
from medstream.model.entities import ENTITY_KINDS, KIND_BY_NAME, EntityKind
from medstream.model.user import User
from medstream.server.routes.queries import query_router
from medstream.server.routing import DirectRoute
from medstream.server.security import hash_password
from medstream.server.state import ServerState, current_actor, server_state
from medstream.store.repository import Stored

Id = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$", description="The entity's id")]
ActorDep = Annotated[Actor, Depends(current_actor)]
StateDep = Annotated[ServerState, Depends(server_state)]


class IdsRequest(MedstreamModel):
    ids: list[EntityId] = Field(max_length=10_000)


class AccessRequest(MedstreamModel):
    data_owner_id: EntityId


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


def _typed(endpoint: Callable[..., Any], **annotations: Any) -> Callable[..., Any]:
    """Give a generated endpoint the kind's model as its body type, so FastAPI validates and documents it."""
    endpoint.__annotations__.update(annotations)
    return endpoint


def entity_router(kind: EntityKind) -> APIRouter:
    router = APIRouter(prefix=f"/rest/v1/{kind.collection}", tags=[kind.name], route_class=DirectRoute)
    model = kind.model
    name = kind.name

    async def create_or_modify(actor: ActorDep, state: StateDep, entity: Entity) -> Response:
        return stored_response(await write_entities(state, kind, [entity], actor), one=True)

    async def create_or_modify_batch(actor: ActorDep, state: StateDep, entities: list[Entity]) -> Response:
        return stored_response(await write_entities(state, kind, entities, actor), one=False)

    async def list_entities(
        actor: ActorDep,
        state: StateDep,
        start_after: Annotated[str | None, Query(alias="startAfter", max_length=128)] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> Response:
        page = await state.repository.list_readable(kind, actor, start_after=start_after, limit=limit)
        return entities_response(page)

    async def get_one(entity_id: Id, actor: ActorDep, state: StateDep) -> Response:
        return entity_response(await state.repository.get(kind, entity_id, actor))

    async def get_by_ids(request: IdsRequest, actor: ActorDep, state: StateDep) -> Response:
        return entities_response(await state.repository.get_many(kind, request.ids, actor))

    async def delete_one(entity_id: Id, actor: ActorDep, state: StateDep) -> Response:
        (tombstone,) = _seen(state, await state.repository.delete(kind, [entity_id], actor))
        return entity_response(tombstone)

    async def delete_many(request: IdsRequest, actor: ActorDep, state: StateDep) -> Response:
        return entities_response(_seen(state, await state.repository.delete(kind, request.ids, actor)))

    async def give_access(entity_id: Id, request: AccessRequest, actor: ActorDep, state: StateDep) -> Response:
        return entity_response(await state.repository.give_access(kind, entity_id, request.data_owner_id, actor))

    list_model: Any = list[model]  # type: ignore[valid-type]
    one, many = {"model": model}, {"model": list_model}
    routes: list[tuple[str, str, Callable[..., Any], dict[str, Any], str]] = [
        ("", "POST", _typed(create_or_modify, entity=model), one, f"Create or modify a {name}"),
        (
            "/batch",
            "POST",
            _typed(create_or_modify_batch, entities=list_model),
            many,
            f"Create or modify many {name}s, all or nothing",
        ),
        ("", "GET", list_entities, many, f"Page through the live {name}s you may read, by id"),
        ("/by-ids", "POST", get_by_ids, many, f"The {name}s with these ids that you may read"),
        ("/delete", "POST", delete_many, many, f"Soft-delete many {name}s, all or nothing"),
        ("/{entity_id}", "GET", get_one, one, f"One {name} (a tombstone if deleted)"),
        ("/{entity_id}", "DELETE", delete_one, one, f"Soft-delete a {name}"),
        ("/{entity_id}/access", "POST", give_access, one, f"Share a {name} with a data owner"),
    ]
    for path, method, endpoint, response, summary in routes:
        router.add_api_route(
            path,
            endpoint,
            methods=[method],
            summary=summary,
            responses={200: {**response, "description": "OK"}},
            operation_id=f"{method.lower()}_{kind.plural}{path.replace('/', '_').replace('{entity_id}', 'id')}",
        )
    return router


def data_samples_for_patient_router() -> APIRouter:
    """`POST /rest/v1/patients/{patient_id}/data-samples`: data samples are created for a patient."""
    kind = KIND_BY_NAME["DataSample"]
    prefix = "/rest/v1/patients/{patient_id}/data-samples"
    router = APIRouter(prefix=prefix, tags=["DataSample"], route_class=DirectRoute)
    list_model: Any = list[kind.model]  # type: ignore[name-defined]

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

    async def create_or_modify_for(patient_id: Id, actor: ActorDep, state: StateDep, entity: Entity) -> Response:
        return stored_response(await write_entities(state, kind, for_patient(patient_id, [entity]), actor), one=True)

    async def create_or_modify_many_for(
        patient_id: Id, actor: ActorDep, state: StateDep, entities: list[Entity]
    ) -> Response:
        stored = await write_entities(state, kind, for_patient(patient_id, entities), actor)
        return stored_response(stored, one=False)

    router.add_api_route(
        "",
        _typed(create_or_modify_for, entity=kind.model),
        methods=["POST"],
        summary="Create or modify a DataSample of this patient",
        responses={200: {"model": kind.model, "description": "OK"}},
    )
    router.add_api_route(
        "/batch",
        _typed(create_or_modify_many_for, entities=list_model),
        methods=["POST"],
        summary="Create or modify many DataSamples of this patient, all or nothing",
        responses={200: {"model": list_model, "description": "OK"}},
    )
    return router


def all_entity_routers() -> list[APIRouter]:
    return [
        data_samples_for_patient_router(),
        *(query_router(kind) for kind in ENTITY_KINDS),  # before `/{entity_id}` routes could shadow them
        *(entity_router(kind) for kind in ENTITY_KINDS),
    ]
