"""Who am I: the current user and the data owner it acts as."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends
from starlette.responses import Response

from medstream.access import Actor
from medstream.errors import NotFoundError
from medstream.model.entities import KIND_BY_NAME
from medstream.model.user import User
from medstream.server.routes.entities import entity_response
from medstream.server.routing import DirectRoute
from medstream.server.state import ServerState, current_actor, server_state

router = APIRouter(prefix="/rest/v1", tags=["me"], route_class=DirectRoute)
ActorDep = Annotated[Actor, Depends(current_actor)]
StateDep = Annotated[ServerState, Depends(server_state)]

_OWNER_KINDS = ("HealthcareProfessional", "Patient", "MedicalDevice")


@router.get("/users/current", response_model=User, summary="The logged-in user")
async def current_user(actor: ActorDep, state: StateDep) -> Response:
    user = await state.repository.find_user(actor.user_id)
    if user is None:
        raise NotFoundError("the logged-in user no longer exists")
    return entity_response(user)


@router.get("/data-owners/current", summary="The data owner the logged-in user acts as, with its type")
async def current_data_owner(actor: ActorDep, state: StateDep) -> Response:
    if actor.data_owner_id is None:
        raise NotFoundError("the logged-in user acts as no data owner")
    for name in _OWNER_KINDS:
        found = await state.repository.get_many(KIND_BY_NAME[name], [actor.data_owner_id], actor)
        if found:
            body = {"type": name, "dataOwner": found[0].to_json_dict()}
            return Response(orjson.dumps(body), media_type="application/json")
    raise NotFoundError(f"data owner {actor.data_owner_id} not found")
