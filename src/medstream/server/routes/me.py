"""Who am I: the current user and the data owner it acts as; and any data owner's public keys."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from medstream.errors import NotFoundError
from medstream.model.entities import KIND_BY_NAME
from medstream.model.security import CryptoKey
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


class DataOwnerPath(BaseModel):
    data_owner_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")]


class PublishedKeys(BaseModel):
    """A data owner's public key records: what a client wraps keys for and verifies signatures with."""

    model_config = ConfigDict(populate_by_name=True)

    data_owner_id: str = Field(alias="dataOwnerId")
    type: str = Field(description="HealthcareProfessional, Patient or MedicalDevice")
    crypto_keys: list[CryptoKey] = Field(alias="cryptoKeys", description="Its public key records, ACTIVE and RETIRED")


async def published_keys(call: Call) -> Response:
    """Any authenticated user reads any data owner's public keys (and nothing else of it): sharing with a data
    owner, or checking its signature, needs them before it can read anything of that data owner."""
    data_owner_id = call.path.data_owner_id
    found = await call.state.repository.published_keys(data_owner_id)
    if found is None:
        raise NotFoundError(f"no data owner with id {data_owner_id}")
    name, owner = found
    records: list[CryptoKey] = getattr(owner, "crypto_keys", [])
    keys = [key.to_json_dict() for key in records]
    body = {"dataOwnerId": data_owner_id, "type": name, "cryptoKeys": keys}
    return Response(orjson.dumps(body), media_type="application/json")


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
        Operation(
            "GET",
            "/data-owners/{data_owner_id}/keys",
            published_keys,
            "A data owner's public key records (any authenticated user may read them)",
            "published_keys",
            PublishedKeys,
            (400, 401, 404, 503),
            path_params=DataOwnerPath,
        ),
    ],
    mount=False,
)
