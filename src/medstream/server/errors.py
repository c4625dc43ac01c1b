"""Every error a route raises becomes JSON `{"error", "message", "details", "requestId"}` with its status
(errors.py); `requestId` is the request's id, as in its `X-Request-ID` header and its log lines."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from medstream.errors import (
    MedstreamError,
    TooManyAttemptsError,
    ValidationError,
    from_payload,
)
from medstream.server.request_ids import HEADER as REQUEST_ID_HEADER
from medstream.server.request_ids import current_request_id

log = logging.getLogger("medstream.server")


def error_response(
    error: MedstreamError, *, status: int | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    """The error's JSON answer; `status` and `headers` keep those of an HTTP error raised by the framework."""
    headers = dict(headers or {})
    if error.http_status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error, TooManyAttemptsError):
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    return Response(
        orjson.dumps(_with_request_id(error.to_payload())),
        status_code=status or error.http_status,
        media_type="application/json",
        headers=headers,
    )


def _with_request_id(payload: dict[str, Any]) -> dict[str, Any]:
    request_id = current_request_id.get()
    if request_id is not None:
        payload["requestId"] = request_id
    return payload


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def validation_error(errors: Sequence[Mapping[str, Any]]) -> ValidationError:
    """The 400 of pydantic's validation errors, each located (`loc`) under `body`, `path` or `query`."""
    details = [
        {"path": _location(tuple(e.get("loc", ()))), "message": e.get("msg", ""), "type": e.get("type", "")}
        for e in errors
    ]
    if any(d["type"] == "json_invalid" for d in details):
        return ValidationError("malformed JSON in the request body", details=details)
    summary = "; ".join(f"{d['path']}: {d['message']}" for d in details[:5])
    return ValidationError(f"invalid request: {summary}", details=details)


def method_not_allowed(method: str, path: str, headers: Mapping[str, str]) -> Response:
    """The 405 of a path that exists, with `Allow` naming the methods it does allow."""
    allowed = ", ".join(sorted(m.strip() for m in headers.get("Allow", "").split(",") if m.strip()))
    payload = {
        "error": "method_not_allowed",
        "message": f"method {method} is not allowed on {path}; allowed: {allowed}",
        "details": [{"allowed": allowed.split(", ") if allowed else []}],
    }
    body = orjson.dumps(_with_request_id(payload))
    return Response(body, status_code=405, media_type="application/json", headers={"Allow": allowed})


def install_error_handlers(app: Starlette) -> None:
    async def on_medstream_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, MedstreamError)
        return error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:
            return method_not_allowed(request.method, request.url.path, exc.headers or {})
        # The framework's own other 4xx (404 no such route) keep their status and headers.
        error = from_payload(exc.status_code, {"message": str(exc.detail)})
        return error_response(error, status=exc.status_code, headers=exc.headers)

    async def on_unexpected(_request: Request, exc: Exception) -> Response:
        log.exception("unexpected error", exc_info=exc)
        # This handler answers outside every middleware (Starlette's), so it names the request itself.
        request_id = current_request_id.get()
        headers = {REQUEST_ID_HEADER: request_id} if request_id is not None else None
        return error_response(MedstreamError("internal server error"), headers=headers)

    app.add_exception_handler(MedstreamError, on_medstream_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
