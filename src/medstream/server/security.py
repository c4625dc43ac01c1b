"""Passwords (argon2), tokens (JWT, HS256 with the database's shared key) and login slow-down."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from medstream.access import Actor
from medstream.errors import AuthenticationError, TooManyAttemptsError
from medstream.model.user import User

_hasher = PasswordHasher()
# Verified against when a login is unknown, so that the answer takes as long as for a wrong password.
_DUMMY_HASH = _hasher.hash(uuid.uuid4().hex)


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def verify() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


@dataclass(frozen=True)
class TokenPair:
    token: str
    refresh_token: str
    expires_in: int

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "refreshToken": self.refresh_token,
            "tokenType": "Bearer",
            "expiresIn": self.expires_in,
        }


class TokenIssuer:
    """Issues and checks access and refresh tokens."""

    def __init__(self, secret: str, *, access_seconds: int, refresh_seconds: int, cache_size: int = 10_000) -> None:
        self._secret = secret
        self.access_seconds = access_seconds
        self.refresh_seconds = refresh_seconds
        # Access tokens whose signature has been checked, with their expiry: a client sends the same token on
        # every request, and verifying it (HMAC, base64, JSON) was a tenth of a REST write's CPU.
        self._verified: dict[str, tuple[float, Actor]] = {}
        self._cache_size = cache_size

    def issue(self, user: User) -> TokenPair:
        now = int(time.time())
        claims = {
            "sub": user.id,
            "do": user.data_owner_id,
            "adm": user.is_admin,
            "iat": now,
            "jti": uuid.uuid4().hex,
        }
        access = jwt.encode({**claims, "typ": "access", "exp": now + self.access_seconds}, self._secret, "HS256")
        refresh = jwt.encode({**claims, "typ": "refresh", "exp": now + self.refresh_seconds}, self._secret, "HS256")
        return TokenPair(access, refresh, self.access_seconds)

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
        actor = Actor(user_id=str(claims["sub"]), data_owner_id=claims.get("do"), is_admin=bool(claims.get("adm")))
        if len(self._verified) >= self._cache_size:
            self._verified.clear()
        self._verified[token] = (float(claims["exp"]), actor)
        return actor


@dataclass
class _Attempts:
    failures: int = 0  # failed logins in a row
    last_failure: float = 0.0
    in_flight: int = 0  # attempts let through whose outcome is not known yet
    last_started: float = 0.0  # when the newest of them was let through


class LoginThrottle:
    """Slows down repeated failed logins for one login: after `free_attempts` failures in a row, each
    attempt must wait 2**(excess failures) seconds after the last failure, up to `max_delay`.

    An attempt counts from the moment `check` lets it through until its outcome (`failed`, `succeeded`, or
    `abandoned` when there is none): meanwhile it counts as a failure, and the wait runs from the newest one let
    through. So attempts sent all at once get no more guesses than attempts one after another (the free ones,
    then one per wait); counted only once their password was found wrong, any number of them got through
    together."""

    def __init__(self, *, free_attempts: int = 5, max_delay: float = 60.0, capacity: int = 100_000) -> None:
        self.free_attempts = free_attempts
        self.max_delay = max_delay
        self.capacity = capacity
        self._attempts: OrderedDict[str, _Attempts] = OrderedDict()

    def check(self, login: str, now: float | None = None) -> None:
        """Let an attempt for `login` through, or raise TooManyAttemptsError with how long to wait. An attempt
        let through must be ended by `failed`, `succeeded` or `abandoned`."""
        now = time.monotonic() if now is None else now
        attempts = self._record(login)
        count = attempts.failures + attempts.in_flight
        if count >= self.free_attempts:
            since = max(attempts.last_failure, attempts.last_started) if attempts.in_flight else attempts.last_failure
            wait = min(2.0 ** (count - self.free_attempts), self.max_delay) - (now - since)
            if wait > 0:
                raise TooManyAttemptsError(
                    f"too many failed logins for this login; retry in {wait:.1f} s", retry_after=wait
                )
        attempts.in_flight += 1
        attempts.last_started = now
        self._attempts.move_to_end(login)

    def failed(self, login: str, now: float | None = None) -> None:
        """The attempt let through for `login` failed."""
        now = time.monotonic() if now is None else now
        attempts = self._ended(login)
        attempts.failures += 1
        attempts.last_failure = now

    def succeeded(self, login: str) -> None:
        """The attempt let through for `login` succeeded: its failures are forgotten."""
        attempts = self._ended(login)
        attempts.failures = 0
        self._forget_if_idle(login, attempts)

    def abandoned(self, login: str) -> None:
        """The attempt let through for `login` ended with no outcome (an error, a cancelled request)."""
        self._forget_if_idle(login, self._ended(login))

    def _record(self, login: str) -> _Attempts:
        """`login`'s record, a new one if it has none (or it was forgotten past the capacity meanwhile)."""
        attempts = self._attempts.get(login)
        if attempts is None:
            attempts = self._attempts[login] = _Attempts()
            while len(self._attempts) > self.capacity:
                self._attempts.popitem(last=False)
        return attempts

    def _ended(self, login: str) -> _Attempts:
        attempts = self._record(login)
        attempts.in_flight = max(0, attempts.in_flight - 1)
        return attempts

    def _forget_if_idle(self, login: str, attempts: _Attempts) -> None:
        if attempts.failures == 0 and attempts.in_flight == 0:
            self._attempts.pop(login, None)
