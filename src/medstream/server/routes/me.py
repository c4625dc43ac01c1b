"""Who am I: the current user and the data owner it acts as."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, Field
from starlette.responses import Response

from medstream.errors import NotFoundError
from medstream.model.entities import KIND_BY_NAME
from medstream.model.user import User
from medstream.server.rest import Call, Collection, Operation
from medstream.server.routes.entities import entity_response

_OWNER_KINDS = ("HealthcareProfessional", "Patient", "MedicalDevice")


class CurrentDataOwner(BaseModel):
    """The data owner the logged-in user acts as, and its entity type."""

    type: str = Field(description="HealthcareProfessional, Patient or MedicalDevice")
    data_owner: dict[str, Any] = Field(alias="dataOwner", description="The data owner entity")


async def current_user(call: Call) -> Response:
    user = await call.state.repository.find_user(call.actor.user_id)
    if user is None:
        raise NotFoundError("the logged-in user no longer exists")
    return entity_response(user)


async def current_data_owner(call: Call) -> Response:
    actor = call.actor
    if actor.data_owner_id is None:
        raise NotFoundError("the logged-in user acts as no data owner")
    for name in _OWNER_KINDS:
        found = await call.state.repository.get_many(KIND_BY_NAME[name], [actor.data_owner_id], actor)
        if found:
            body = {"type": name, "dataOwner": found[0].to_json_dict()}
            return Response(orjson.dumps(body), media_type="application/json")
    raise NotFoundError(f"data owner {actor.data_owner_id} not found")


# Not mounted: `/rest/v1/users` is the users collection's Mount, which these paths come before.
me = Collection(
    "/rest/v1",
    "me",
    [
        Operation("GET", "/users/current", current_user, "The logged-in user", "current_user", User, (401, 404, 503)),
        Operation(
            "GET",
            "/data-owners/current",
            current_data_owner,
            "The data owner the logged-in user acts as, with its type",
            "current_data_owner",
            CurrentDataOwner,
            (401, 404, 503),
        ),
    ],
    mount=False,
)
