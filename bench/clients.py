"""The client processes of the benchmarks: REST writers, SDK subscribers and holders of raw websockets.

Each is the target of a `workers.Worker` (a spawned process); it answers the benchmark's commands on its pipe.
Timestamps: a writer puts its send time (time.time_ns) in the data sample's `comment` as "<run>:<ns>", and the
receiving process compares with its own clock (one machine, one clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.http import HttpClient, HttpError
from bench.report import latency_summary
from bench.workers import Channel

if TYPE_CHECKING:
    from bench.encryption import OwnerKeys, SamplePool

LABEL_TYPE = "BENCH"
SUBSCRIBE_WINDOW = 50
EVENT_PREFIX = b'{"type":"event"'


def sample_body(label_code: str, comment: str, text: str = "bench sample value") -> dict[str, Any]:
    """A data sample as a client sends it: one label, one string content, the send time in `comment`."""
    return {
        "labels": [{"type": LABEL_TYPE, "code": label_code}],
        "content": {"en": {"stringValue": text}},
        "comment": comment,
    }


def subscription_filter(kind: str, index: int, hcp_id: str, label_code: str) -> dict[str, Any]:
    """A DataSample filter: `match` matches the writers' samples; `label`, `id` and `patient` never match
    them, each constrained on that indexed key."""
    if kind == "match":
        return {
            "$type": "DataSampleByHealthcarePartyTagCodeDateFilter",
            "healthcarePartyId": hcp_id,
            "tagType": LABEL_TYPE,
            "tagCode": label_code,
        }
    if kind == "label":
        return {
            "$type": "DataSampleByHealthcarePartyTagCodeDateFilter",
            "healthcarePartyId": hcp_id,
            "tagType": LABEL_TYPE,
            "tagCode": f"nomatch-{index}",
        }
    if kind == "id":
        return {"$type": "DataSampleByIdsFilter", "ids": [f"nomatch-{index}"]}
    if kind == "patient":
        return {
            "$type": "DataSampleByHealthcarePartyPatientFilter",
            "healthcarePartyId": hcp_id,
            "patientIds": [f"nomatch-{index}"],
        }
    raise ValueError(f"unknown subscription kind {kind!r}")


# -- REST writer -----------------------------------------------------------------------------------------


async def rest_writer(
    channel: Channel,
    url: str,
    token: str,
    patient_id: str,
    label_code: str,
    keys: OwnerKeys | None = None,
    seal_at_send: bool = False,
) -> None:
    """Commands: `write` (see `_write`), `prepare` {count} (with `keys`: make encrypted samples ahead until
    `count` are ready; answers `prepared` {ready, seconds}), `stop`.

    With `keys` every sample is encrypted as the SDK sends it (`bench/encryption.py`), taken from those prepared;
    with `seal_at_send` its `encryptedSelf` is sealed at send time, around the send time in its comment."""
    pool = None
    if keys is not None:
        from bench.encryption import SamplePool

        pool = SamplePool(keys, lambda comment: sample_body(label_code, comment), seal_at_send=seal_at_send)
    channel.send("ready")
    while True:
        kind, data = await channel.recv()
        if kind == "stop":
            return
        if kind == "prepare":
            started = time.perf_counter()
            if pool is not None:
                pool.fill(data["count"])
            channel.send("prepared", ready=len(pool or ()), seconds=time.perf_counter() - started)
        if kind == "write":
            channel.send("written", **(await _write(url, token, patient_id, label_code, pool=pool, **data)))


async def _write(
    url: str,
    token: str,
    patient_id: str,
    label_code: str,
    *,
    run: str,
    batch: int = 1,
    concurrency: int = 1,
    rate: float | None = None,
    duration: float | None = None,
    count: int | None = None,
    text: str = "bench sample value",
    pool: SamplePool | None = None,
) -> dict[str, Any]:
    """Create data samples through REST. With `rate` (requests/s): open loop, each request sent at its
    scheduled time (a writer that cannot keep up falls behind, and its achieved rate shows it). Without:
    closed loop, `concurrency` requests in flight back to back. Stops after `duration` seconds or `count`
    requests, or, with a `pool` of encrypted samples, when fewer than a request's are left (`ran_out`)."""
    path = f"/rest/v1/patients/{patient_id}/data-samples" + ("/batch" if batch > 1 else "")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    total = count if count is not None else (int(rate * duration) if rate and duration else None)
    latencies: list[float] = []
    errors: list[str] = []
    sent = 0
    ran_out = False
    async with HttpClient(url, headers, connections=concurrency) as http:

        def reserve() -> list[Any] | None:
            """The prepared samples of the next request (None for samples in clear); `ran_out` when too few."""
            nonlocal ran_out
            if pool is None:
                return None
            taken = pool.take(batch)
            ran_out = ran_out or taken is None
            return taken

        async def one(prepared: list[Any] | None) -> None:
            comment = f"{run}:{time.time_ns()}"
            if pool is not None and prepared is not None:
                content = pool.body(prepared, comment)
            else:
                body = [sample_body(label_code, comment, text) for _ in range(batch)] if batch > 1 else None
                content = orjson.dumps(body if body is not None else sample_body(label_code, comment, text))
            started = time.perf_counter()
            try:
                status, answer = await http.request("POST", path, content)
            except HttpError as exc:
                errors.append(repr(exc))
                return
            latencies.append((time.perf_counter() - started) * 1000)
            if status != 200:
                errors.append(f"{status} {answer[:200].decode(errors='replace')}")

        # One warm-up request, not counted, so that connection set-up is not part of the figures.
        await http.request("GET", "/health")
        start = time.perf_counter()
        deadline = start + duration if duration is not None else float("inf")
        if rate:
            slots = asyncio.Semaphore(concurrency)
            tasks: set[asyncio.Task[None]] = set()

            async def scheduled(prepared: list[Any] | None) -> None:
                try:
                    await one(prepared)
                finally:
                    slots.release()

            interval = 1.0 / rate
            while total is None or sent < total:
                due = start + sent * interval
                now = time.perf_counter()
                if due > deadline or now > deadline:  # a writer that fell behind stops on time all the same
                    break
                prepared = reserve()
                if ran_out:
                    break
                if due > now:
                    await asyncio.sleep(due - now)
                await slots.acquire()
                task = asyncio.create_task(scheduled(prepared))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            if tasks:
                await asyncio.gather(*tasks)
        else:
            lock = asyncio.Lock()

            async def loop() -> None:
                nonlocal sent
                while time.perf_counter() < deadline:
                    async with lock:
                        if total is not None and sent >= total:
                            return
                        prepared = reserve()
                        if ran_out:
                            return
                        sent += 1
                    await one(prepared)

            await asyncio.gather(*(loop() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {
        "requests": sent,
        "samples": (sent - len(errors)) * batch,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "elapsed": elapsed,
        "requests_per_second": sent / elapsed if elapsed else 0.0,
        "samples_per_second": (sent - len(errors)) * batch / elapsed if elapsed else 0.0,
        "rest_latency_ms": latency_summary(latencies),
        "ran_out": ran_out,
    }


async def broadcast_writer(channel: Channel, url: str) -> None:
    """The baseline's writer: `write` {run, count, batch, size} asks the baseline server for `count` messages
    of `size` bytes to every socket, `batch` per request, requests back to back (as the Medstream writer)."""
    channel.send("ready")
    async with HttpClient(url, {"Content-Type": "application/json"}) as http:
        while True:
            kind, data = await channel.recv()
            if kind == "stop":
                return
            if kind == "write":
                await http.request("GET", "/health")
                started, sent, remaining = time.perf_counter(), 0, data["count"]
                while remaining > 0:
                    count = min(data["batch"], remaining)
                    body = orjson.dumps({"count": count, "size": data["size"]})
                    status, answer = await http.request("POST", "/broadcast", body)
                    if status != 200:
                        raise RuntimeError(f"baseline broadcast failed: {status} {answer[:200]!r}")
                    remaining -= count
                    sent += 1
                elapsed = time.perf_counter() - started
                channel.send("written", requests=sent, samples=data["count"], errors=0, elapsed=elapsed)


# -- SDK subscriber --------------------------------------------------------------------------------------


async def sdk_subscriber(
    channel: Channel, url: str, login: str, password: str, label_code: str, key_store: str | None = None
) -> None:
    """One MedTechApi with one DataSample CREATE subscription on the writers' label; records, per run, the
    delay from each write's send time to its callback, and the process's CPU time since the last `collect`.
    With `key_store` (the data owner's key store file) the SDK decrypts each event before the callback: the
    send time is in the encrypted comment. Commands: `collect` {run, expected, timeout}, `stop`."""
    from pathlib import Path

    from medstream.filters import DataSampleFilter
    from medstream.model import DataSample
    from medstream.sdk import MedTechApi

    received: dict[str, list[float]] = {}
    arrived = asyncio.Event()

    def on_event(sample: DataSample) -> None:
        now = time.time_ns()
        run, _, sent = (sample.comment or "").partition(":")
        if sent:
            received.setdefault(run, []).append((now - int(sent)) / 1e6)
            arrived.set()

    builder = MedTechApi.builder().with_url(url).with_username(login).with_password(password)
    if key_store is not None:
        builder = builder.with_key_store(Path(key_store))
    api = await builder.build()
    try:
        event_filter = await DataSampleFilter(api).for_self().by_label_code_filter(LABEL_TYPE, label_code).build()
        connection = await api.data_sample_api.subscribe_to_data_sample_events(["CREATE"], event_filter, on_event)
        await connection.wait_established()
        channel.send("ready")
        cpu = time.process_time()
        while True:
            kind, data = await channel.recv()
            if kind == "stop":
                return
            if kind == "collect":
                run, expected = data["run"], data["expected"]
                deadline = time.monotonic() + data["timeout"]
                while len(received.get(run, ())) < expected and time.monotonic() < deadline:
                    arrived.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                            await arrived.wait()
                now = time.process_time()
                spent, cpu = now - cpu, now
                channel.send(
                    "collected", latencies=received.pop(run, []), connected=connection.is_connected, cpu_seconds=spent
                )
    finally:
        await api.close()


# -- raw websocket holders -------------------------------------------------------------------------------


@dataclass
class _Socket:
    ws: ClientConnection
    acks: int = 0
    refused: list[str] = field(default_factory=list)
    events: int = 0
    bytes: int = 0
    first_ns: int = 0
    last_ns: int = 0
    closed: str | None = None
    deflate: bool = False
    subscriptions: int = 1  # each event matching them all arrives this many times
    expected: int = 0
    target: int = 0  # what the current `wait` waits for: `expected`, or part of it

    @property
    def complete(self) -> bool:
        return self.events >= self.expected

    @property
    def reached(self) -> bool:
        return self.events >= self.target


class _Holder:
    def __init__(self, ws_url: str, token: str, protocol: str, compression: bool, batched: bool = False) -> None:
        self.batched = batched  # asks for batched frames at auth (docs/protocol.md), as the SDK does
        self.ws_url = ws_url
        self.token = token
        self.protocol = protocol  # "medstream" or "baseline"
        self.compression = "deflate" if compression else None
        self.sockets: list[_Socket] = []
        self.readers: list[asyncio.Task[None]] = []
        self.progress = asyncio.Event()

    async def open(self, subscriptions: list[dict[str, Any]]) -> _Socket:
        ws = await connect(
            self.ws_url, max_size=64 * 1024 * 1024, compression=self.compression, open_timeout=120, close_timeout=5
        )
        state = _Socket(
            ws,
            deflate="permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or ""),
            subscriptions=max(1, len(subscriptions)),
        )
        if self.protocol == "medstream":
            auth: dict[str, Any] = {"type": "auth", "token": self.token}
            if self.batched:
                auth["batch"] = True
            await ws.send(orjson.dumps(auth).decode())
            # At most SUBSCRIBE_WINDOW subscribes unanswered: the server handles a socket's messages one at a
            # time (each subscribe reads the log's head), so the next ones go as answers come, not all at once.
            pending = iter(subscriptions)
            for frame in itertools.islice(pending, SUBSCRIBE_WINDOW):
                await ws.send(orjson.dumps(frame).decode())
            while state.acks + len(state.refused) < len(subscriptions):
                message = orjson.loads(await ws.recv(decode=False))
                if message.get("type") == "subscribed":
                    state.acks += 1
                elif message.get("type") == "error":
                    state.refused.append(str(message.get("message")))
                else:
                    continue
                following = next(pending, None)
                if following is not None:
                    await ws.send(orjson.dumps(following).decode())
        else:
            await ws.send('{"type":"hello"}')
            await ws.recv()
            state.acks = 1
        self.sockets.append(state)
        self.readers.append(asyncio.create_task(self._read(state)))
        return state

    async def _read(self, state: _Socket) -> None:
        ws = state.ws
        try:
            while True:
                frame = await ws.recv(decode=False)
                for message in frame.split(b"\n") if self.batched else (frame,):
                    if message.startswith(EVENT_PREFIX):
                        now = time.time_ns()
                        if not state.events:
                            state.first_ns = now
                        state.last_ns = now
                        state.events += 1
                        state.bytes += len(message)
                        if state.events == state.target:
                            self.progress.set()
                    elif message.startswith(b'{"type":"ping"'):
                        await ws.send('{"type":"pong"}')
        except ConnectionClosed as exc:
            state.closed = f"{exc.rcvd.code if exc.rcvd else None} {exc.rcvd.reason if exc.rcvd else ''}".strip()
            self.progress.set()

    def arm(self, expected: int) -> None:
        """Expect `expected` events per subscription: a socket with several gets each event once for each."""
        for state in self.sockets:
            state.events = state.bytes = state.first_ns = state.last_ns = 0
            state.expected = state.target = expected * state.subscriptions

    async def wait(self, within: float, upto: int | None = None) -> None:
        """Until every socket has its expected events, or with `upto` the first `upto` events per subscription
        (or is closed)."""
        for state in self.sockets:
            state.target = state.expected if upto is None else min(state.expected, upto * state.subscriptions)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if all(s.reached or s.closed for s in self.sockets):
                return
            self.progress.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(0.5, max(0.0, deadline - time.monotonic()))):
                    await self.progress.wait()

    def tally(self) -> dict[str, Any]:
        got = [s for s in self.sockets if s.events]
        return {
            "sockets": len(self.sockets),
            "events": sum(s.events for s in self.sockets),
            "bytes": sum(s.bytes for s in self.sockets),
            "complete": sum(1 for s in self.sockets if s.complete),
            "first_ns": min((s.first_ns for s in got), default=0),
            "last_ns": max((s.last_ns for s in got), default=0),
            "closed": [s.closed for s in self.sockets if s.closed][:5],
            "closed_count": sum(1 for s in self.sockets if s.closed),
        }

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        for state in self.sockets:
            with contextlib.suppress(Exception):
                await state.ws.close()


async def _open_one(holder: _Holder, slots: asyncio.Semaphore, frames: list[dict[str, Any]]) -> _Socket:
    async with slots:
        return await holder.open(frames)


async def socket_holder(
    channel: Channel,
    ws_url: str,
    token: str = "",
    protocol: str = "medstream",
    compression: bool = True,
    hcp_id: str = "",
    label_code: str = "",
    connect_concurrency: int = 25,
    batched: bool = False,
) -> None:
    """Holds raw websockets (asking for batched frames with `batched`). Commands:
    - `connect` {sockets, per_socket, filter_kind, first_index}: open `sockets` more sockets, each authenticated with
      `per_socket` subscriptions of `filter_kind` (see `subscription_filter`); answers `connected`.
    - `arm` {expected}: reset the event counters, expect `expected` events per subscription; answers `armed`.
    - `wait` {within, upto?}: until every socket has its expected events, or with `upto` the first `upto` per
      subscription (or is closed); answers `tally`.
    - `stop`."""
    holder = _Holder(ws_url, token, protocol, compression, batched)
    channel.send("ready")
    try:
        while True:
            kind, data = await channel.recv()
            if kind == "stop":
                return
            if kind == "connect":
                started = time.perf_counter()
                slots = asyncio.Semaphore(connect_concurrency)
                index = data["first_index"]
                plans = []
                for _ in range(data["sockets"]):
                    frames = [
                        {
                            "type": "subscribe",
                            "id": f"s{index + j}",
                            "entity": "DataSample",
                            "events": ["CREATE"],
                            "filter": subscription_filter(data["filter_kind"], index + j, hcp_id, label_code),
                        }
                        for j in range(data["per_socket"])
                    ]
                    plans.append(frames)
                    index += data["per_socket"]

                opened = await asyncio.gather(*(_open_one(holder, slots, f) for f in plans), return_exceptions=True)
                failures = [repr(o) for o in opened if isinstance(o, BaseException)]
                states = [o for o in opened if isinstance(o, _Socket)]
                channel.send(
                    "connected",
                    sockets=len(states),
                    subscriptions=sum(s.acks for s in states),
                    refused=sum(len(s.refused) for s in states),
                    first_refusal=next((s.refused[0] for s in states if s.refused), None),
                    failures=len(failures),
                    deflate=any(s.deflate for s in states),
                    first_failure=failures[0] if failures else None,
                    seconds=time.perf_counter() - started,
                )
            elif kind == "arm":
                holder.arm(data["expected"])
                channel.send("armed")
            elif kind == "wait":
                await holder.wait(data["within"], data.get("upto"))
                channel.send("tally", **holder.tally())
    finally:
        await holder.close()
