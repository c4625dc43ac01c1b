"""Errors of `/rest/v2` as iCure's backend answers them: the status, and a JSON body with the status, its
reason phrase, a message saying what is wrong and the path. Every error Medstream raises keeps its status."""

from __future__ import annotations

import datetime
import functools
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import orjson
import pydantic
from starlette.requests import Request
from starlette.responses import Response

from medstream.errors import MedstreamError

log = logging.getLogger("medstream.icure")

Endpoint = Callable[[Request], Awaitable[Response]]


def error_response(request: Request, status: int, message: str) -> Response:
    body = {
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
        "path": request.url.path,
        "status": status,
        "error": HTTPStatus(status).phrase,
        "message": message,
    }
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def validation_message(exc: pydantic.ValidationError) -> str:
    """Each problem of a body, located by its path."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors(include_url=False))[
        :2000
    ]


def icure_endpoint(endpoint: Endpoint) -> Endpoint:
    """`endpoint`, answering the errors it raises as iCure's backend does."""

    @functools.wraps(endpoint)
    async def served(request: Request) -> Response:
        try:
            return await endpoint(request)
        except MedstreamError as exc:
            if exc.http_status >= 500:
                log.warning("v2 %s %s: %s", request.method, request.url.path, exc.message)
            return error_response(request, exc.http_status, exc.message)
        except pydantic.ValidationError as exc:
            return error_response(request, 400, validation_message(exc))

    return served


async def not_served(request: Request) -> Response:
    """Any other `/rest/v2` path: 404, as iCure's backend answers a path it does not have."""
    return error_response(
        request, 404, f"{request.method} {request.url.path} is not served by Medstream (docs/icure.md)"
    )
