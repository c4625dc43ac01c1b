"""POST /rest/v1/auth/login and /rest/v1/auth/refresh."""

from __future__ import annotations

from pydantic import Field
from starlette.responses import Response

from medstream.errors import AuthenticationError
from medstream.model.base import MedstreamModel
from medstream.server.rest import Body, Call, Collection, Header, Operation
from medstream.server.security import verify_password


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


async def login(call: Call) -> Response:
    """Exchange a login and password for an access token and a refresh token."""
    credentials: LoginCredentials = call.body
    state = call.state
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


async def refresh(call: Call) -> Response:
    """A new token pair for a valid refresh token (in the body, or the `Refresh-Token` header)."""
    body: RefreshRequest | None = call.body
    state = call.state
    token = body.refresh_token if body is not None else call.request.headers.get("refresh-token")
    if not token:
        raise AuthenticationError("missing refresh token")
    claims = state.tokens.decode(token, expected_type="refresh")
    user = await state.repository.find_user(str(claims["sub"]))
    if user is None:
        raise AuthenticationError("the user of this refresh token no longer exists")
    return _json(TokenResponse.model_validate(state.tokens.issue(user).to_json_dict()))


auth = Collection(
    "/rest/v1/auth",
    "auth",
    [
        Operation(
            "POST",
            "/login",
            login,
            "Log in",
            "login",
            TokenResponse,
            (400, 401, 413, 429, 503),
            body=Body(LoginCredentials),
            authenticated=False,
            description=login.__doc__,
        ),
        Operation(
            "POST",
            "/refresh",
            refresh,
            "Refresh a token pair",
            "refresh",
            TokenResponse,
            (400, 401, 413, 503),
            body=Body(RefreshRequest, required=False),
            headers=(Header("Refresh-Token", "The refresh token, when the body does not carry it"),),
            authenticated=False,
            description=refresh.__doc__,
        ),
    ],
)
