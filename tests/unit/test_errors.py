"""errors.py: one status and close code per error, and `from_payload` rebuilding the error a server sent."""

from __future__ import annotations

import pytest

from medstream.errors import (
    AuthenticationError,
    ConflictError,
    DecryptionError,
    ForbiddenError,
    MedstreamError,
    NotFoundError,
    PayloadTooLargeError,
    ServerGoingAway,
    TooManyAttemptsError,
    TooSlowError,
    UnavailableError,
    ValidationError,
    from_payload,
)

ALL = [
    MedstreamError,
    ValidationError,
    PayloadTooLargeError,
    AuthenticationError,
    TooManyAttemptsError,
    ForbiddenError,
    NotFoundError,
    ConflictError,
    TooSlowError,
    UnavailableError,
    DecryptionError,
    ServerGoingAway,
]
SIMPLE = [cls for cls in ALL if cls is not TooManyAttemptsError]


def test_each_error_has_its_own_code() -> None:
    assert len({cls.code for cls in ALL}) == len(ALL)


@pytest.mark.parametrize(
    ("cls", "status", "close_code"),
    [
        (MedstreamError, 500, 1011),
        (ValidationError, 400, 4400),
        (PayloadTooLargeError, 413, 4400),
        (AuthenticationError, 401, 4001),
        (TooManyAttemptsError, 429, 4001),
        (ForbiddenError, 403, 4003),
        (NotFoundError, 404, 4404),
        (ConflictError, 409, 4409),
        (TooSlowError, 429, 4429),
        (UnavailableError, 503, 1013),
        (DecryptionError, 422, 4400),
        (ServerGoingAway, 503, 1001),
    ],
)
def test_each_error_has_the_documented_status_and_close_code(
    cls: type[MedstreamError], status: int, close_code: int
) -> None:
    assert (cls.http_status, cls.close_code) == (status, close_code)


def test_the_more_specific_errors_are_caught_as_their_family() -> None:
    assert issubclass(PayloadTooLargeError, ValidationError)
    assert issubclass(TooManyAttemptsError, AuthenticationError)
    assert all(issubclass(cls, MedstreamError) for cls in ALL)


@pytest.mark.parametrize("cls", SIMPLE, ids=lambda cls: cls.__name__)
def test_from_payload_rebuilds_each_error_from_its_code(cls: type[MedstreamError]) -> None:
    details = [{"path": "body.firstName", "message": "Input should be a valid string"}]
    sent = cls("what went wrong", details=details)

    # The status is deliberately unrelated: the code decides.
    rebuilt = from_payload(418, sent.to_payload())

    assert type(rebuilt) is cls
    assert rebuilt.message == "what went wrong" and str(rebuilt) == "what went wrong"
    assert rebuilt.details == details


def test_from_payload_rebuilds_too_many_attempts_with_its_retry_after() -> None:
    sent = TooManyAttemptsError("slow down", retry_after=2.5)

    rebuilt = from_payload(429, sent.to_payload())

    assert type(rebuilt) is TooManyAttemptsError
    assert rebuilt.retry_after == 2.5 and rebuilt.message == "slow down"
    assert type(from_payload(429, {"error": "too_many_attempts", "message": "m"})) is TooManyAttemptsError


def test_a_decryption_error_names_its_event_and_keeps_it_through_the_wire() -> None:
    error = DecryptionError("DataSample d1: encryptedSelf: no key for kid 0011223344556677", seq=42)
    assert error.seq == 42 and error.details == [{"seq": 42}]

    rebuilt = from_payload(422, error.to_payload())

    assert type(rebuilt) is DecryptionError and rebuilt.seq == 42 and rebuilt.message == error.message
    assert DecryptionError("no seq").seq is None and DecryptionError("no seq").to_payload().get("details") is None
    assert from_payload(422, {"error": "decryption_error", "message": "m", "details": [{"seq": "x"}]}).seq is None


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, ValidationError),
        (401, AuthenticationError),
        (403, ForbiddenError),
        (404, NotFoundError),
        (405, ValidationError),
        (409, ConflictError),
        (413, PayloadTooLargeError),
        (422, ValidationError),
        (429, TooSlowError),
        (500, MedstreamError),
        (502, MedstreamError),
        (503, UnavailableError),
    ],
)
def test_from_payload_falls_back_on_the_status_for_an_unknown_code(status: int, cls: type[MedstreamError]) -> None:
    for payload in ({"error": "from_a_newer_server", "message": "m"}, {"message": "m"}, {}):
        assert type(from_payload(status, payload)) is cls


def test_from_payload_keeps_the_message_or_says_the_status() -> None:
    assert from_payload(404, {"error": "not_found", "message": "no Patient with id p"}).message == (
        "no Patient with id p"
    )
    assert from_payload(404, {"error": "not_found"}).message == "HTTP 404"


def test_from_payload_copes_with_a_body_that_is_not_an_error_object() -> None:
    for payload in ("<html>Bad Gateway</html>", None, ["a", "list"], "x" * 10_000):
        error = from_payload(502, payload)
        assert type(error) is MedstreamError
        assert error.message.startswith("HTTP 502") and len(error.message) <= 500
    assert type(from_payload(404, "Not Found")) is NotFoundError


def test_from_payload_ignores_details_that_are_not_a_list() -> None:
    error = from_payload(400, {"error": "validation_error", "message": "m", "details": "oops"})
    assert type(error) is ValidationError and error.details == []


def test_to_payload_leaves_out_empty_details() -> None:
    assert NotFoundError("gone").to_payload() == {"error": "not_found", "message": "gone"}
    assert ValidationError("bad", details=[{"path": "x"}]).to_payload() == {
        "error": "validation_error",
        "message": "bad",
        "details": [{"path": "x"}],
    }


def test_from_payload_rebuilds_too_many_attempts_even_with_a_malformed_retry_after() -> None:
    for details in ([], ["x"], [{"retryAfter": "soon"}], [{"retryAfter": None}], [{}]):
        error = from_payload(429, {"error": "too_many_attempts", "message": "m", "details": details})
        assert type(error) is TooManyAttemptsError
        assert error.retry_after == 1.0
