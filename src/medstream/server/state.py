"""What a running server holds: settings, database, repository, tokens and their state, login limits, key
vaults."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from medstream.access import Actor
from medstream.errors import AuthenticationError
from medstream.server.actors import ActorValidator
from medstream.server.dispatcher import Dispatcher
from medstream.server.login_throttle import LoginThrottle, PasswordCheckGate
from medstream.server.security import TokenIssuer
from medstream.server.settings import Settings
from medstream.server.websocket import EventHub
from medstream.store.database import Database
from medstream.store.key_vaults import KeyVaultStore
from medstream.store.repository import EntityRepository
from medstream.store.sessions import SessionStore


@dataclass
class ServerState:
    settings: Settings
    database: Database
    repository: EntityRepository
    tokens: TokenIssuer
    throttle: LoginThrottle  # per login
    peer_throttle: LoginThrottle  # per peer address
    password_checks: PasswordCheckGate
    sessions: SessionStore
    key_vaults: KeyVaultStore
    dispatcher: Dispatcher
    hub: EventHub
    actors: ActorValidator


def state_of(connection: HTTPConnection) -> ServerState:
    """The running server's state, from a request or a websocket of its app."""
    state: ServerState = connection.app.state.medstream
    return state


def bearer_token(request: HTTPConnection) -> str | None:
    """The token of the request's `Authorization: Bearer <token>` header (the scheme in any case), as FastAPI's
    HTTPBearer reads it, without building its credentials model: None when there is none. The header is read
    from the request's raw headers (the first one, as `request.headers` gives it), without building them."""
    for name, value in request.scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token if token and scheme.lower() == "bearer" else None
    return None


async def current_actor(state: ServerState, request: HTTPConnection) -> Actor:
    """The actor of a request to the running server `state`, from its `Authorization: Bearer` access token; 401
    without a valid one. Every REST request but login runs this: the common case, a token and user seen within
    seconds, awaits nothing."""
    token = bearer_token(request)
    if token is None:
        raise AuthenticationError("missing bearer token: log in with POST /rest/v1/auth/login")
    actor = state.tokens.actor(token)
    if not state.actors.stands(actor):
        await state.actors.check(actor)
    return actor
