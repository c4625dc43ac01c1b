"""POST /rest/v1/auth/login, /rest/v1/auth/refresh and /rest/v1/auth/logout."""

from __future__ import annotations

import time

from pydantic import Field
from starlette.responses import Response

from medstream.errors import AuthenticationError
from medstream.model.base import MedstreamModel
from medstream.model.user import User
from medstream.server.rest import Body, Call, Collection, Header, Operation
from medstream.server.security import TokenPair, verify_password
from medstream.server.state import ServerState
from medstream.store.sessions import Rotation


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


def _tokens(pair: TokenPair) -> Response:
    return _json(TokenResponse.model_validate(pair.to_json_dict()))


async def login(call: Call) -> Response:
    """Exchange a login and password for an access token and a refresh token (a new session)."""
    request = call.request
    return _tokens(await open_session(call.state, call.body, request.client.host if request.client else ""))


async def open_session(state: ServerState, credentials: LoginCredentials, peer: str) -> TokenPair:
    """A new session's token pair for a login and password (from `peer`), within the login limits."""
    user = await _check_credentials(state, credentials, peer)
    user_id = str(user.id)
    generation = await state.sessions.generation(user_id)
    pair = state.tokens.issue(user, generation=generation)
    await state.sessions.start_family(pair.family, user_id, generation, pair.refresh_jti, pair.refresh_expires)
    return pair


async def _check_credentials(state: ServerState, credentials: LoginCredentials, peer: str) -> User:
    """The user these credentials log in, or AuthenticationError; TooManyAttemptsError (429) when the login or the
    peer address failed too often, or too many password checks are in progress."""
    settings, login_ = state.settings, credentials.username
    await state.throttle.admit(login_, max_wait=settings.login_wait_seconds)
    try:
        await state.peer_throttle.admit(peer, max_wait=settings.login_wait_seconds)
    except BaseException:
        state.throttle.abandoned(login_)
        raise
    try:  # from here the attempt counts for both, until one of the three ends below
        async with state.password_checks.turn():
            found = await state.repository.find_user_by_login(login_)
            verified = await verify_password(found[1] if found else None, credentials.password)
    except BaseException:
        state.throttle.abandoned(login_)
        state.peer_throttle.abandoned(peer)
        raise
    if found is None or not verified:
        state.throttle.failed(login_)
        state.peer_throttle.failed(peer)
        raise AuthenticationError("wrong login or password")
    state.throttle.succeeded(login_)
    state.peer_throttle.succeeded(peer)
    return found[0]


async def refresh(call: Call) -> Response:
    """A new token pair for a valid refresh token (in the body, or the `Refresh-Token` header). The refresh token
    is used up: the answer carries the one to use next. A refresh token used twice ends its session."""
    body: RefreshRequest | None = call.body
    state = call.state
    token = body.refresh_token if body is not None else call.request.headers.get("refresh-token")
    if not token:
        raise AuthenticationError("missing refresh token")
    claims = state.tokens.decode(token, expected_type="refresh")
    if not isinstance(claims.get("fam"), str) or not isinstance(claims.get("jti"), str):
        raise AuthenticationError("this refresh token was revoked: log in again")
    user = await state.repository.find_user(str(claims["sub"]))
    if user is None:
        raise AuthenticationError("the user of this refresh token no longer exists")
    generation = int(claims.get("gen") or 0)
    pair = state.tokens.issue(user, generation=generation, family=claims["fam"])
    rotation = Rotation(claims["fam"], str(user.id), generation, claims["jti"], pair.refresh_jti, pair.refresh_expires)
    await state.sessions.rotate(rotation, int(time.time()))
    return _tokens(pair)


async def logout(call: Call) -> Response:
    """End every session of the logged-in user: its access and refresh tokens stop working, its event sockets
    close (4001). At once on this node; on the other nodes of a deployment, within `ttl` of their user cache."""
    actor, state = call.actor, call.state
    await state.sessions.end_sessions(actor.user_id)
    state.actors.forget(actor.user_id)
    state.hub.revalidate_user(actor.user_id)
    return Response(status_code=204)


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
        Operation(
            "POST",
            "/logout",
            logout,
            "Log out of every session",
            "logout",
            None,
            (401, 503),
            status=204,
            description=logout.__doc__,
        ),
    ],
)
