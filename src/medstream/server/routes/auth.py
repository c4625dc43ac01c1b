"""POST /rest/v1/auth/login and /rest/v1/auth/refresh."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header
from pydantic import Field
from starlette.responses import Response

from medstream.errors import AuthenticationError
from medstream.model.base import MedstreamModel
from medstream.server.routing import DirectRoute
from medstream.server.security import verify_password
from medstream.server.state import ServerState, server_state

router = APIRouter(prefix="/rest/v1/auth", tags=["auth"], route_class=DirectRoute)


class LoginCredentials(MedstreamModel):
    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(MedstreamModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


class TokenResponse(MedstreamModel):
    token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in: int


def _json(payload: MedstreamModel) -> Response:
    return Response(payload.to_json(), media_type="application/json")


@router.post("/login", response_model=TokenResponse)
async def login(credentials: LoginCredentials, state: Annotated[ServerState, Depends(server_state)]) -> Response:
    """Exchange a login and password for an access token and a refresh token."""
    throttle, login_ = state.throttle, credentials.username
    throttle.check(login_)  # from here the attempt counts, until one of the three ends below
    try:
        found = await state.repository.find_user_by_login(login_)
        verified = await verify_password(found[1] if found else None, credentials.password)
    except BaseException:
        throttle.abandoned(login_)
        raise
    if found is None or not verified:
        throttle.failed(login_)
        raise AuthenticationError("wrong login or password")
    throttle.succeeded(login_)
    pair = state.tokens.issue(found[0])
    return _json(TokenResponse.model_validate(pair.to_json_dict()))


@router.post("/refresh", response_model=TokenResponse)
async def refresh(
    state: Annotated[ServerState, Depends(server_state)],
    body: RefreshRequest | None = None,
    refresh_token_header: Annotated[str | None, Header(alias="Refresh-Token")] = None,
) -> Response:
    """A new token pair for a valid refresh token (in the body, or the `Refresh-Token` header)."""
    token = body.refresh_token if body is not None else refresh_token_header
    if not token:
        raise AuthenticationError("missing refresh token")
    claims = state.tokens.decode(token, expected_type="refresh")
    user = await state.repository.find_user(str(claims["sub"]))
    if user is None:
        raise AuthenticationError("the user of this refresh token no longer exists")
    return _json(TokenResponse.model_validate(state.tokens.issue(user).to_json_dict()))
