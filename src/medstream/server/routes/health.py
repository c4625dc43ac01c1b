"""GET /health: is the server up, and how is its database."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel
from starlette.responses import Response

from medstream.errors import MedstreamError
from medstream.server.rest import Call, Collection, Operation
from medstream.store import outbox


class Health(BaseModel):
    """The server's state: `ok`, or `degraded` (with a 503) when its database cannot be reached."""

    status: Literal["ok", "degraded"]
    database: dict[str, Any]
    events: dict[str, Any]


async def health(call: Call) -> Response:
    state = call.state
    database: dict[str, object] = {"dialect": state.database.backend.name}
    try:
        head = await state.database.run_read(outbox.head)
        database.update(status="ok", lastSeq=head.last_seq, epoch=head.epoch)
        status_code, status = 200, "ok"
    except (MedstreamError, OSError) as exc:
        database.update(status="unavailable", error=str(exc)[:300])
        status_code, status = 503, "degraded"
    dispatcher, hub = state.dispatcher, state.hub
    events = {
        "position": dispatcher.position,
        "lag": max(0, int(database.get("lastSeq", dispatcher.position)) - dispatcher.position),  # type: ignore[call-overload]
        "dispatched": dispatcher.dispatched,
        "dispatchNanos": dispatcher.dispatch_nanos,
        "connections": len(hub.connections),
        "subscriptions": hub.subscription_count,
        "closes": {str(code): count for code, count in sorted(hub.closes.items())},
    }
    body = {"status": status, "database": database, "events": events}
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


checks = Collection(
    "",
    "health",
    [
        Operation(
            "GET",
            "/health",
            health,
            "Server and database state; 503 when the database is unreachable",
            "health",
            Health,
            (),
            authenticated=False,
            other_answers=((503, Health),),
        )
    ],
    mount=False,
)
