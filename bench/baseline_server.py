"""The transport alone: a minimal websocket broadcast on Medstream's server stack (Starlette under uvicorn,
with `medstream serve`'s message size and deflate settings) and no Medstream code.

    python -m bench.baseline_server --port 8090 [--no-per-message-deflate]

- `GET /health`: `{"status": "ok", "connections": n}`.
- `WS /ws`: the client sends one message (standing for Medstream's auth and subscribe), gets `{"type":"ok"}`,
  then receives every broadcast.
- `POST /broadcast` `{"count": n, "size": bytes}`: queues `n` text messages of `size` bytes, shaped like a
  Medstream event frame, for every connected socket; each socket's writer task sends its queue with
  `send_text` (a plain loop of awaited sends, one socket after another, stalls every socket behind one whose
  buffer is full, and measured slower than Medstream itself at 1,000 sockets).
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections import deque

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


class Client:
    """One socket and its own writer task, fed by a queue: the least a broadcast needs so that one socket whose
    buffer is full does not hold up the others (what Medstream's connections do too, minus everything else)."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.queue: deque[str] = deque()
        self.ready = asyncio.Event()

    async def write_loop(self) -> None:
        while True:
            await self.ready.wait()
            self.ready.clear()
            while self.queue:
                await self.websocket.send_text(self.queue.popleft())


clients: set[Client] = set()
_seq = 0


def message(size: int) -> str:
    """A text message of exactly `size` bytes (at least the envelope's), shaped like an event frame; each one
    differs from the last, as events do, so compression gets no free ride."""
    global _seq
    _seq += 1
    head = f'{{"type":"event","id":"s0","seq":{_seq},"event":"CREATE","entityType":"DataSample","entity":{{"id":"'
    head += uuid.uuid4().hex + '","pad":"'
    tail = '"}}'
    pad = max(0, size - len(head) - len(tail))
    return head + ("bench sample value " * (pad // 19 + 1))[:pad] + tail


async def health(_request: Request) -> Response:
    return Response(orjson.dumps({"status": "ok", "connections": len(clients)}), media_type="application/json")


async def broadcast(request: Request) -> Response:
    body = orjson.loads(await request.body())
    sent = 0
    for _ in range(int(body["count"])):
        text = message(int(body["size"]))
        for client in clients:
            client.queue.append(text)
            client.ready.set()
            sent += 1
    return Response(orjson.dumps({"sent": sent}), media_type="application/json")


async def endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    client = Client(websocket)
    writer = asyncio.create_task(client.write_loop())
    try:
        await websocket.receive_text()
        await websocket.send_text('{"type":"ok"}')
        clients.add(client)
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        clients.discard(client)
        writer.cancel()


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/broadcast", broadcast, methods=["POST"]),
        WebSocketRoute("/ws", endpoint),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--no-per-message-deflate", action="store_true", help="as MEDSTREAM_WS_PER_MESSAGE_DEFLATE=0")
    args = parser.parse_args()
    # uvicorn configured as medstream.server.runner.make_server configures it for what is measured here (message
    # size, deflate, shutdown), with uvicorn's own HTTP and websocket protocols and its keepalive pings.
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        lifespan="on",
        ws_max_size=1 << 20,
        ws_per_message_deflate=not args.no_per_message_deflate,
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
