"""The one error hierarchy shared by the server and the SDK.

    MedstreamError                   500  (1011)  anything unexpected
    +-- ValidationError              400  (4400)  malformed input; `details` lists each bad field and its path
    |   +-- PayloadTooLargeError     413  (4400)  a body, message, string or list over its bound
    +-- AuthenticationError          401  (4001)  missing, bad or expired credentials or token
    |   +-- TooManyAttemptsError     429  (4001)  repeated failed logins for one login: wait `retry_after` s
    +-- ForbiddenError               403  (4003)  authenticated, but not allowed to do this
    +-- NotFoundError                404  (4404)  no such entity, or one the caller may not read
    +-- ConflictError                409  (4409)  stale or missing `rev`, or an id or login that exists
    +-- TooSlowError                 429  (4429)  a websocket consumer that cannot keep up, or too many subscriptions
    +-- UnavailableError             503  (1013)  the database or a dependency is down
    +-- DecryptionError              422  (4400)  content the SDK cannot decrypt or verify: which, and why (`seq`)
    +-- ServerGoingAway              503  (1001)  the server is shutting down

The HTTP status and websocket close code of every error live here and nowhere else, and so does every other
close code (`CloseCode`): server, SDK and event code name them, never spell them. On the wire an error is
`{"error": <code>, "message": <text>, "details": [...]}`; `from_payload` rebuilds the same class in the SDK.
A `DecryptionError` is raised by the SDK itself (the server never holds a key); its status and close code only
say where it would stand among the others.
"""

from __future__ import annotations

from enum import IntEnum, unique
from typing import Any, ClassVar


@unique
class CloseCode(IntEnum):
    """Every websocket close code Medstream sends, or meets and acts on (docs/protocol.md lists them).

    Below 4000 they are RFC 6455's; 4000-4999 are Medstream's own, each an HTTP status plus 4000.
    """

    NORMAL_CLOSURE = 1000  # either side is done
    GOING_AWAY = 1001  # the server is shutting down (or, from a client, its page is going away)
    ABNORMAL_CLOSURE = 1006  # never sent: the connection ended without a close frame
    INVALID_DATA = 1007  # a text frame that is not UTF-8
    MESSAGE_TOO_BIG = 1009  # a frame over the websocket layer's size bound
    INTERNAL_ERROR = 1011  # something unexpected
    SERVICE_RESTART = 1012  # sent by the HTTP server itself when it stops first
    TRY_AGAIN_LATER = 1013  # the database or a dependency is down
    UNAUTHORIZED = 4001  # no valid `auth`, or its token expired or was revoked
    FORBIDDEN = 4003  # an authenticated action not allowed, or a browser page of an origin not allowed (CORS)
    MALFORMED_MESSAGE = 4400  # a message that does not parse or is over its bound
    NOT_FOUND = 4404
    HEARTBEAT_TIMEOUT = 4408  # nothing received within the heartbeat timeout
    CONFLICT = 4409
    TOO_SLOW = 4429  # the send queue overflowed, or too many subscriptions


class MedstreamError(Exception):
    """Base of every error Medstream raises on purpose."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500
    close_code: ClassVar[int] = CloseCode.INTERNAL_ERROR

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details:
            payload["details"] = self.details
        return payload


class ValidationError(MedstreamError):
    code = "validation_error"
    http_status = 400
    close_code = CloseCode.MALFORMED_MESSAGE


class PayloadTooLargeError(ValidationError):
    code = "payload_too_large"
    http_status = 413


class AuthenticationError(MedstreamError):
    code = "unauthorized"
    http_status = 401
    close_code = CloseCode.UNAUTHORIZED


class TooManyAttemptsError(AuthenticationError):
    code = "too_many_attempts"
    http_status = 429

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, details=[{"retryAfter": round(retry_after, 3)}])
        self.retry_after = retry_after


class ForbiddenError(MedstreamError):
    code = "forbidden"
    http_status = 403
    close_code = CloseCode.FORBIDDEN


class NotFoundError(MedstreamError):
    code = "not_found"
    http_status = 404
    close_code = CloseCode.NOT_FOUND


class ConflictError(MedstreamError):
    code = "conflict"
    http_status = 409
    close_code = CloseCode.CONFLICT


class TooSlowError(MedstreamError):
    code = "too_slow"
    http_status = 429
    close_code = CloseCode.TOO_SLOW


class UnavailableError(MedstreamError):
    code = "unavailable"
    http_status = 503
    close_code = CloseCode.TRY_AGAIN_LATER


class DecryptionError(MedstreamError):
    """Encrypted content that could not be decrypted or verified: what it was and why, never key material.

    `seq` is the position of the event whose entity could not be decrypted, when it came in an event."""

    code = "decryption_error"
    http_status = 422
    close_code = CloseCode.MALFORMED_MESSAGE

    def __init__(self, message: str, *, seq: int | None = None, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, details=details or ([{"seq": seq}] if seq is not None else None))
        self.seq = seq


class KeyVerificationError(MedstreamError):
    """A counterparty's published keys are not the ones this data owner pinned: refused until the application
    verifies the new key (`api.crypto.verify_key`). Names the data owner and the new key's fingerprint."""

    code = "key_verification_error"
    http_status = 422
    close_code = CloseCode.MALFORMED_MESSAGE


class MissingKeysError(MedstreamError):
    """The logged-in data owner has published keys, and the key store at hand holds none of them."""

    code = "missing_keys"
    http_status = 422
    close_code = CloseCode.MALFORMED_MESSAGE


class ServerGoingAway(MedstreamError):
    code = "going_away"
    http_status = 503
    close_code = CloseCode.GOING_AWAY


_BY_CODE: dict[str, type[MedstreamError]] = {
    cls.code: cls
    for cls in (
        MedstreamError,
        ValidationError,
        PayloadTooLargeError,
        AuthenticationError,
        ForbiddenError,
        NotFoundError,
        ConflictError,
        TooSlowError,
        UnavailableError,
        DecryptionError,
        KeyVerificationError,
        MissingKeysError,
        ServerGoingAway,
    )
}
_BY_STATUS: dict[int, type[MedstreamError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: TooSlowError,
    503: UnavailableError,
}


def from_payload(status: int, payload: Any) -> MedstreamError:
    """Rebuild the error a server answered with (used by the SDK)."""
    if isinstance(payload, dict):
        code = str(payload.get("error", ""))
        message = str(payload.get("message", f"HTTP {status}"))
        details = payload.get("details") if isinstance(payload.get("details"), list) else None
    else:
        code, message, details = "", f"HTTP {status}: {payload!r}"[:500], None
    if code == TooManyAttemptsError.code:
        try:
            retry_after = float((details or [{}])[0].get("retryAfter", 1.0))
        except (AttributeError, TypeError, ValueError):  # a malformed answer still rebuilds the error
            retry_after = 1.0
        return TooManyAttemptsError(message, retry_after=retry_after)
    if code == DecryptionError.code:
        seq = (details or [{}])[0].get("seq") if details and isinstance(details[0], dict) else None
        return DecryptionError(message, seq=seq if isinstance(seq, int) else None, details=details)
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status) or (ValidationError if 400 <= status < 500 else MedstreamError)
    return cls(message, details=details)


__all__ = [
    "AuthenticationError",
    "CloseCode",
    "ConflictError",
    "DecryptionError",
    "ForbiddenError",
    "KeyVerificationError",
    "MedstreamError",
    "MissingKeysError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ServerGoingAway",
    "TooManyAttemptsError",
    "TooSlowError",
    "UnavailableError",
    "ValidationError",
    "from_payload",
]
