"""Passwords (argon2) and tokens (JWT, HS256 with the database's shared key)."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from medstream.access import Actor
from medstream.errors import AuthenticationError
from medstream.model.user import User

_hasher = PasswordHasher()

# The authentication class of a token from a password login, as iCure's clients read it (`tac`): they refuse a
# login token without one.
PASSWORD_AUTHENTICATION_CLASS = 20


@functools.cache
def unknown_login_hash() -> str:
    """Verified against when a login is unknown, so that the answer takes as long as for a wrong password. Made
    when the server starts (or at the first unknown login), not when the module loads: every command of the CLI
    imports this module, and a hash at argon2's production cost is a tenth of a second or more of CPU."""
    return _hasher.hash(uuid.uuid4().hex)


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def verify() -> bool:
        try:
            return _hasher.verify(password_hash or unknown_login_hash(), password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


@dataclass(frozen=True)
class TokenPair:
    token: str
    refresh_token: str
    expires_in: int
    family: str  # the login's refresh-token family (store/sessions.py)
    refresh_jti: str  # the refresh token's id, its family's current one once stored
    refresh_expires: int  # unix seconds

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "refreshToken": self.refresh_token,
            "tokenType": "Bearer",
            "expiresIn": self.expires_in,
        }


class TokenIssuer:
    """Issues and checks access and refresh tokens. Both carry the user's session generation (`gen`) and their
    login's refresh-token family (`fam`): the server keeps which refresh token of each family is current, and
    recognises an iCure socket's reconnect by the family of its access token."""

    def __init__(self, secret: str, *, access_seconds: int, refresh_seconds: int, cache_size: int = 10_000) -> None:
        self._secret = secret
        self.access_seconds = access_seconds
        self.refresh_seconds = refresh_seconds
        # Access tokens whose signature has been checked, with their expiry: a client sends the same token on
        # every request, and verifying it (HMAC, base64, JSON) was a tenth of a REST write's CPU.
        self._verified: dict[str, tuple[float, Actor]] = {}
        self._cache_size = cache_size

    def issue(self, user: User, *, generation: int = 0, family: str | None = None) -> TokenPair:
        """A token pair for `user` in session `generation`; a new refresh-token family unless `family` is given."""
        now = int(time.time())
        claims = {
            "sub": user.id,
            "do": user.data_owner_id,
            "adm": user.is_admin,
            "gen": generation,
            "iat": now,
        }
        family = family or uuid.uuid4().hex
        refresh_jti, refresh_expires = uuid.uuid4().hex, now + self.refresh_seconds
        # `tac` and `jwtD` (the lifetime in seconds) are the claims iCure's clients read (docs/icure.md).
        claims["tac"] = PASSWORD_AUTHENTICATION_CLASS
        access_claims = {
            **claims,
            "typ": "access",
            "fam": family,  # the login session: a socket that reconnects with a token of it is recognised
            "jti": uuid.uuid4().hex,
            "exp": now + self.access_seconds,
            "jwtD": self.access_seconds,
        }
        refresh_claims = {
            **claims,
            "typ": "refresh",
            "jti": refresh_jti,
            "fam": family,
            "exp": refresh_expires,
            "jwtD": self.refresh_seconds,
        }
        access = jwt.encode(access_claims, self._secret, "HS256")
        refresh = jwt.encode(refresh_claims, self._secret, "HS256")
        return TokenPair(access, refresh, self.access_seconds, family, refresh_jti, refresh_expires)

    def decode(self, token: str, *, expected_type: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._secret, algorithms=["HS256"], options={"require": ["exp", "sub", "typ"]}
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError(f"the {expected_type} token has expired") from None
        except jwt.InvalidTokenError:
            raise AuthenticationError(f"invalid {expected_type} token") from None
        if claims.get("typ") != expected_type:
            raise AuthenticationError(f"this is not {'an' if expected_type == 'access' else 'a'} {expected_type} token")
        return claims

    def actor(self, token: str) -> Actor:
        """The actor of a valid access token; AuthenticationError if it is invalid or has expired."""
        verified = self._verified.get(token)
        if verified is not None:
            expires, actor = verified
            if time.time() < expires:
                return actor
            del self._verified[token]
        claims = self.decode(token, expected_type="access")
        actor = Actor(
            user_id=str(claims["sub"]),
            data_owner_id=claims.get("do"),
            is_admin=bool(claims.get("adm")),
            session=int(claims.get("gen") or 0),
        )
        if len(self._verified) >= self._cache_size:
            self._verified.clear()
        self._verified[token] = (float(claims["exp"]), actor)
        return actor
