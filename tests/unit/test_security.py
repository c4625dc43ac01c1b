"""server/security.py without a server: password hashing, the token issuer and the login throttle; and how a
request's bearer token is read (server/state.py)."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid

import jwt
import orjson
import pytest
from fastapi.security import HTTPBearer
from starlette.requests import Request

from medstream.access import Actor
from medstream.errors import AuthenticationError, TooManyAttemptsError
from medstream.model import User
from medstream.server.login_throttle import LoginThrottle, PasswordCheckGate
from medstream.server.security import TokenIssuer, hash_password, verify_password
from medstream.server.state import bearer_token

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def make_user(**fields: object) -> User:
    return User.model_validate({"id": str(uuid.uuid4()), "login": "jane", **fields})


def issuer(*, access_seconds: int = 900, refresh_seconds: int = 3600, secret: str = SECRET) -> TokenIssuer:
    return TokenIssuer(secret, access_seconds=access_seconds, refresh_seconds=refresh_seconds)


# -- passwords -------------------------------------------------------------------------------------------


async def test_a_password_verifies_against_its_hash_only() -> None:
    hashed = await hash_password("correct horse")
    assert hashed.startswith("$argon2") and "correct horse" not in hashed
    assert await verify_password(hashed, "correct horse")
    assert not await verify_password(hashed, "correct horse!")
    assert await hash_password("correct horse") != hashed, "each hash has its own salt"


async def test_no_hash_or_a_garbage_hash_never_verifies() -> None:
    assert not await verify_password(None, "anything")
    assert not await verify_password("not-an-argon2-hash", "anything")


# -- tokens ----------------------------------------------------------------------------------------------


def test_an_access_token_carries_the_user_its_data_owner_and_admin_flag() -> None:
    hcp_id = str(uuid.uuid4())
    user = make_user(healthcare_party_id=hcp_id, roles=["ADMIN"])
    pair = issuer().issue(user)

    claims = issuer().decode(pair.token, expected_type="access")

    assert claims["sub"] == user.id and claims["do"] == hcp_id and claims["adm"] is True
    assert claims["exp"] - claims["iat"] == 900
    assert issuer().actor(pair.token) == Actor(user_id=str(user.id), data_owner_id=hcp_id, is_admin=True)
    assert pair.expires_in == 900
    assert pair.to_json_dict() == {
        "token": pair.token,
        "refreshToken": pair.refresh_token,
        "tokenType": "Bearer",
        "expiresIn": 900,
    }


def test_a_refresh_token_decodes_as_refresh_and_lives_longer() -> None:
    pair = issuer().issue(make_user(patient_id="p-1"))
    claims = issuer().decode(pair.refresh_token, expected_type="refresh")
    assert claims["typ"] == "refresh" and claims["do"] == "p-1"
    assert claims["exp"] - claims["iat"] == 3600


def test_tokens_are_unique_even_when_issued_in_the_same_second() -> None:
    user = make_user()
    first, second = issuer().issue(user), issuer().issue(user)
    assert first.token != second.token and first.refresh_token != second.refresh_token


def test_a_token_of_the_wrong_type_is_rejected() -> None:
    pair = issuer().issue(make_user())
    with pytest.raises(AuthenticationError, match="not an access token"):
        issuer().actor(pair.refresh_token)
    with pytest.raises(AuthenticationError, match=r"not an? refresh token"):
        issuer().decode(pair.token, expected_type="refresh")


def test_an_expired_token_is_rejected_saying_it_expired() -> None:
    pair = issuer(access_seconds=-1, refresh_seconds=-1).issue(make_user())
    with pytest.raises(AuthenticationError, match="access token has expired"):
        issuer().actor(pair.token)
    with pytest.raises(AuthenticationError, match="refresh token has expired"):
        issuer().decode(pair.refresh_token, expected_type="refresh")


def test_a_token_checked_before_is_still_refused_once_it_expires() -> None:
    tokens = issuer(access_seconds=1)
    user = make_user(healthcarePartyId="hcp-1")
    token = tokens.issue(user).token
    assert tokens.actor(token) == Actor(user_id=str(user.id), data_owner_id="hcp-1")  # now remembered as verified
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    with pytest.raises(AuthenticationError, match="access token has expired"):
        tokens.actor(token)


def test_remembered_tokens_are_bounded_and_a_forgotten_one_is_verified_again() -> None:
    tokens = TokenIssuer(SECRET, access_seconds=60, refresh_seconds=60, cache_size=3)
    users = [make_user() for _ in range(5)]
    issued = [tokens.issue(user).token for user in users]
    for user, token in zip(users, issued, strict=True):
        assert tokens.actor(token).user_id == user.id
    assert len(tokens._verified) <= 3
    for user, token in zip(users, issued, strict=True):
        assert tokens.actor(token).user_id == user.id
    header, payload, signature = issued[0].split(".")
    with pytest.raises(AuthenticationError, match="invalid access token"):
        tokens.actor(f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_tampered_token_is_rejected() -> None:
    token = issuer().issue(make_user()).token
    header, payload, signature = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    promoted = f"{header}.{_b64(orjson.dumps({**claims, 'adm': True}))}.{signature}"
    bad_signature = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"

    for bad in (promoted, bad_signature, token[:-1], f"{token}x", "", "a.b.c", "not a token"):
        with pytest.raises(AuthenticationError, match="invalid access token"):
            issuer().actor(bad)
    assert issuer().actor(token).is_admin is False


def test_a_token_signed_with_another_key_or_no_algorithm_is_rejected() -> None:
    user = make_user()
    foreign = issuer(secret="another-secret-just-as-long-as-the-first-one").issue(user).token
    now = int(time.time())
    claims = {"sub": user.id, "typ": "access", "exp": now + 60, "iat": now, "adm": True}
    unsigned = f"{_b64(orjson.dumps({'alg': 'none', 'typ': 'JWT'}))}.{_b64(orjson.dumps(claims))}."
    for bad in (foreign, unsigned):
        with pytest.raises(AuthenticationError, match="invalid"):
            issuer().actor(bad)


def test_a_token_without_exp_sub_or_typ_is_rejected() -> None:
    now = int(time.time())
    full = {"sub": "u-1", "typ": "access", "exp": now + 60}
    for missing in full:
        claims = {k: v for k, v in full.items() if k != missing}
        with pytest.raises(AuthenticationError):
            issuer().actor(jwt.encode(claims, SECRET, "HS256"))
    assert issuer().actor(jwt.encode(full, SECRET, "HS256")).user_id == "u-1"


# -- login throttle --------------------------------------------------------------------------------------


def fail(throttle: LoginThrottle, login: str, times: int, now: float) -> None:
    for _ in range(times):
        throttle.check(login, now)
        throttle.failed(login, now)


def retry_after(throttle: LoginThrottle, login: str, now: float) -> float | None:
    """How long an attempt at `now` must wait, or None if it is let through (then ended at once, as a probe)."""
    try:
        throttle.check(login, now)
    except TooManyAttemptsError as exc:
        return exc.retry_after
    throttle.abandoned(login)
    return None


def test_the_first_failures_are_free() -> None:
    throttle = LoginThrottle(free_attempts=5)
    fail(throttle, "jane", 4, now=100.0)
    assert retry_after(throttle, "jane", 100.0) is None


def test_after_the_free_failures_each_wait_doubles_up_to_the_cap() -> None:
    throttle = LoginThrottle(free_attempts=5, max_delay=10.0)
    now = 100.0
    fail(throttle, "jane", 5, now)
    waits = []
    for _ in range(6):
        wait = retry_after(throttle, "jane", now)
        assert wait is not None
        waits.append(wait)
        now += wait  # wait it out, then fail again
        assert retry_after(throttle, "jane", now) is None
        throttle.check("jane", now)
        throttle.failed("jane", now)
    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_the_wait_counts_down_from_the_last_failure() -> None:
    throttle = LoginThrottle(free_attempts=5)
    fail(throttle, "jane", 5, now=100.0)
    fail(throttle, "jane", 1, now=101.0)  # the sixth failure, once the first wait was over: the next wait is 2 s
    assert retry_after(throttle, "jane", 101.5) == pytest.approx(1.5)
    assert retry_after(throttle, "jane", 102.9) == pytest.approx(0.1)
    assert retry_after(throttle, "jane", 103.0) is None


def test_a_success_resets_the_count() -> None:
    throttle = LoginThrottle(free_attempts=5)
    fail(throttle, "jane", 5, now=100.0)
    throttle.succeeded("jane")
    assert retry_after(throttle, "jane", 100.0) is None
    fail(throttle, "jane", 4, now=100.0)
    assert retry_after(throttle, "jane", 100.0) is None, "five free failures again"
    fail(throttle, "jane", 1, now=100.0)
    assert retry_after(throttle, "jane", 100.0) == 1.0


def test_one_login_is_slowed_down_without_slowing_others() -> None:
    throttle = LoginThrottle(free_attempts=5)
    fail(throttle, "jane", 5, now=100.0)
    assert retry_after(throttle, "jane", 100.0) is not None
    assert retry_after(throttle, "john", 100.0) is None


def test_the_throttle_forgets_the_oldest_logins_past_its_capacity() -> None:
    throttle = LoginThrottle(free_attempts=1, capacity=2)
    fail(throttle, "a", 1, now=100.0)
    fail(throttle, "b", 1, now=100.0)
    fail(throttle, "c", 1, now=100.0)
    assert retry_after(throttle, "b", 100.0) is not None
    assert retry_after(throttle, "c", 100.0) is not None
    assert retry_after(throttle, "a", 100.0) is None, "forgotten"


def test_attempts_let_through_count_as_failures_until_they_end() -> None:
    throttle = LoginThrottle(free_attempts=5)
    for _ in range(5):  # sent together: none has failed yet
        throttle.check("jane", 100.0)
    assert retry_after(throttle, "jane", 100.0) == 1.0, "a sixth waits as if the five had failed"
    throttle.abandoned("jane")  # one ended with no outcome: it no longer counts
    assert retry_after(throttle, "jane", 100.0) is None
    for _ in range(4):
        throttle.failed("jane", 100.5)
    throttle.check("jane", 100.5)
    assert retry_after(throttle, "jane", 100.5) == 1.0, "four failed and one in flight"


def test_after_a_long_quiet_only_one_attempt_goes_through_per_wait() -> None:
    """An hour after the last failure every wait is over; of attempts sent together then, the first is let
    through and the wait runs from it for the others."""
    throttle = LoginThrottle(free_attempts=5, max_delay=60.0)
    fail(throttle, "jane", 5, now=100.0)
    fail(throttle, "jane", 1, now=101.0)
    fail(throttle, "jane", 1, now=103.0)
    throttle.check("jane", 3_700.0)
    assert retry_after(throttle, "jane", 3_700.0) == 8.0  # 2 ** (7 + 1 in flight - 5)
    throttle.failed("jane", 3_700.5)
    assert retry_after(throttle, "jane", 3_700.5) == 8.0, "8 failures: the wait runs from the last"


def test_an_abandoned_attempt_neither_counts_nor_restarts_the_wait() -> None:
    throttle = LoginThrottle(free_attempts=5)
    fail(throttle, "jane", 5, now=100.0)
    throttle.check("jane", 101.0)
    assert retry_after(throttle, "jane", 101.0) == 2.0, "five failures and one in flight, let through just now"
    throttle.abandoned("jane")
    assert retry_after(throttle, "jane", 101.0) is None, "five failures, the last a second ago"


def test_a_success_while_others_are_in_flight_forgets_the_failures_not_them() -> None:
    throttle = LoginThrottle(free_attempts=2)
    fail(throttle, "jane", 1, now=100.0)
    throttle.check("jane", 100.0)
    assert retry_after(throttle, "jane", 100.0) == 1.0
    throttle.succeeded("jane")
    assert retry_after(throttle, "jane", 100.0) is None
    throttle.check("jane", 100.0)
    throttle.check("jane", 100.0)
    assert retry_after(throttle, "jane", 100.0) == 1.0, "the two in flight still count"


def test_an_attempt_ended_after_its_login_was_forgotten_is_still_counted() -> None:
    throttle = LoginThrottle(free_attempts=1, capacity=1)
    throttle.check("jane", 100.0)
    throttle.check("john", 100.0)  # jane is forgotten past the capacity
    throttle.failed("jane", 100.0)
    assert retry_after(throttle, "jane", 100.0) == 1.0


def test_the_throttle_error_is_a_429_with_its_retry_after() -> None:
    throttle = LoginThrottle(free_attempts=1)
    fail(throttle, "jane", 1, now=100.0)
    with pytest.raises(TooManyAttemptsError) as caught:
        throttle.check("jane", 100.25)
    assert caught.value.http_status == 429
    assert caught.value.retry_after == pytest.approx(0.75)
    assert caught.value.to_payload()["details"] == [{"retryAfter": 0.75}]


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("Bearer abc.def", "abc.def"),
        ("bearer abc.def", "abc.def"),  # the scheme in any case, as HTTP says
        ("BEARER abc.def", "abc.def"),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic YWRtaW46YWRtaW4=", None),
        ("Token abc.def", None),
    ],
)
def test_a_request_bearer_token_is_read_as_fastapi_reads_it(header: str | None, token: str | None) -> None:
    headers = [] if header is None else [(b"authorization", header.encode())]
    request = Request({"type": "http", "headers": headers})
    assert bearer_token(request) == token
    credentials = asyncio.run(HTTPBearer(auto_error=False)(request))
    assert (credentials.credentials if credentials is not None else None) == token


async def test_attempts_beyond_the_free_ones_wait_for_those_in_flight_and_pass_when_they_succeed() -> None:
    throttle = LoginThrottle(free_attempts=2)
    for _ in range(2):
        await throttle.admit("jane", max_wait=5)
    held = [asyncio.create_task(throttle.admit("jane", max_wait=5)) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert not any(task.done() for task in held), "held back, not refused"
    throttle.succeeded("jane")
    throttle.succeeded("jane")
    await asyncio.sleep(0.01)
    assert sum(task.done() for task in held) == 2, "two let through, as many as are free"
    throttle.succeeded("jane")
    await asyncio.wait_for(asyncio.gather(*held), 1)


async def test_attempts_held_back_are_refused_when_those_in_flight_fail() -> None:
    throttle = LoginThrottle(free_attempts=2)
    for _ in range(2):
        await throttle.admit("jane", max_wait=5)
    held = asyncio.create_task(throttle.admit("jane", max_wait=5))
    await asyncio.sleep(0.01)
    throttle.failed("jane")
    await asyncio.sleep(0.01)
    assert not held.done(), "one failure: the other in flight may still succeed"
    throttle.failed("jane")
    with pytest.raises(TooManyAttemptsError):
        await asyncio.wait_for(held, 1)


async def test_an_attempt_held_back_too_long_is_refused() -> None:
    throttle = LoginThrottle(free_attempts=1)
    await throttle.admit("jane", max_wait=5)
    with pytest.raises(TooManyAttemptsError):
        await throttle.admit("jane", max_wait=0.05)


async def test_password_checks_beyond_the_running_and_queued_ones_are_refused_with_a_retry_after() -> None:
    gate = PasswordCheckGate(concurrency=1, queue=2)
    release = asyncio.Event()
    entered: list[int] = []

    async def check(n: int) -> None:
        async with gate.turn():
            entered.append(n)
            await release.wait()

    running = [asyncio.create_task(check(n)) for n in range(3)]  # one runs, two wait
    await asyncio.sleep(0.01)
    assert entered == [0]
    with pytest.raises(TooManyAttemptsError) as refused:
        await check(3)
    assert refused.value.http_status == 429 and refused.value.retry_after >= 1
    release.set()
    await asyncio.gather(*running)
    assert entered == [0, 1, 2]


def test_both_tokens_carry_the_session_generation_and_the_refresh_token_its_family() -> None:
    tokens = issuer()
    pair = tokens.issue(make_user(), generation=7)
    assert tokens.actor(pair.token).session == 7
    refresh = tokens.decode(pair.refresh_token, expected_type="refresh")
    assert (refresh["gen"], refresh["fam"], refresh["jti"]) == (7, pair.family, pair.refresh_jti)
    again = tokens.issue(make_user(), generation=7, family=pair.family)
    assert again.family == pair.family and again.refresh_jti != pair.refresh_jti
