"""SDK socket: the client CPU one event stream costs a subscriber, through the SDK and its event socket (websockets'
asyncio client) and through a raw baseline (websockets' sans-I/O protocol driven by hand), on asyncio and on uvloop.

    .venv/bin/python -m bench.sdk_socket [--frames single,batched] [--events N] [--batched-events N] [--runs R]

A Medstream server on a fresh SQLite database (`--database postgresql` for PostgreSQL) sends one subscriber process
a stream of DataSample CREATE events that its label filter matches; a writer process creates them through REST: one
sample per request, one request at a time (each event comes alone in its frame: `single`), or in batches of 64
(frames of up to 64 events, the protocol's largest: `batched`). The subscriber receives them (a) as a user of the
SDK does, a `MedTechApi` with `subscribe_to_data_sample_events` and a callback; (a') through the SDK's event socket
alone (`open_event_socket`, websockets' asyncio client with the SDK's settings, read by `EventSocket.run`),
speaking the same protocol (auth asking for batched frames as the SDK does, subscribe, split each frame on
newlines, `parse_event_message` on each event, drop a `seq` already delivered, call the callback); and (b) through
the raw baseline under that same reading: websockets' sans-I/O `ClientProtocol` on an `asyncio.Protocol`, each
text frame handed over straight from `data_received`, with no queue and no task switch (the cheapest way to read
the socket). So (a')/(b) is what websockets' asyncio client costs over the raw reading, and (a)/(b) what the whole
SDK path costs over it ((a) also pays for the SDK's delivery: its position tracking and callback queue). Client
CPU per event = the subscriber process's CPU time (`time.process_time`) from the moment it is armed to its last
expected event, over the events; events/s = events / (last received - first received), which the writer and
server set more than the client. Every combination of frames and loop runs (a), (a'), (b) in turn, --runs times,
so that the machine's speed drifting hits them all; medians are reported, and the ratios (a)/(b) and (a')/(b).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import signal
import sys
import threading
import time
import traceback
import uuid
from multiprocessing.connection import Connection
from typing import Any, cast

from bench import clients
from bench.machine import raise_open_files
from bench.report import Progress, Report, Table, base_parser, cli, fmt, median
from bench.servers import Identity, ServerProcess, create_patient, make_professional, medstream_on
from bench.workers import Channel, Worker, WorkerTarget, gather_from, workers_stopped
from medstream.sdk.event_socket import MAX_QUEUE

NAME = "sdk_socket"
CLIENTS = ("sdk", "event_socket", "sansio")
LOOPS = ("asyncio", "uvloop")
FRAMES = {"single": 1, "batched": 64}  # REST samples per request: events per frame, at most
MAX_SIZE = 64 * 1024 * 1024
EVENT_PREFIX = '{"type":"event"'


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--frames", default="single,batched", help="comma-separated: single, batched (default both)")
    p.add_argument("--loops", default="asyncio,uvloop", help="comma-separated: asyncio, uvloop (default both)")
    p.add_argument("--events", type=int, default=None, help="events per run of single frames (default 1,000)")
    p.add_argument("--batched-events", type=int, default=None, help="events per run of batched frames (default 6,400)")
    return p


# -- subscriber processes --------------------------------------------------------------------------------


class _Counter:
    """What a subscriber's callback records: events, and the CPU and wall time from arming to the last one."""

    def __init__(self) -> None:
        self.expected = 0
        self.events = 0
        self.frames = 0
        self.cpu_start = self.cpu_end = 0.0
        self.first = self.last = 0.0
        self.done = asyncio.Event()

    def arm(self, expected: int) -> None:
        self.expected, self.events, self.frames = expected, 0, 0
        self.done.clear()
        self.cpu_start = time.process_time()

    def on_event(self, entity: object) -> None:
        now = time.perf_counter()
        if not self.events:
            self.first = now
        self.events += 1
        if self.events == self.expected:
            self.last = now
            self.cpu_end = time.process_time()
            self.done.set()

    def tally(self) -> dict[str, Any]:
        complete = self.done.is_set()
        return {
            "events": self.events,
            "complete": complete,
            "cpu_seconds": self.cpu_end - self.cpu_start if complete else None,
            "seconds": self.last - self.first if complete else None,
            "frames": self.frames,
            "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],  # "asyncio" or "uvloop"
        }


async def _serve(channel: Channel, counter: _Counter) -> None:
    """Answer the benchmark: `arm` {expected}, `collect` {within} (answers `tally`), `stop`."""
    channel.send("ready")
    while True:
        kind, data = await channel.recv()
        if kind == "stop":
            return
        if kind == "arm":
            counter.arm(data["expected"])
            channel.send("armed")
        elif kind == "collect":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(data["within"]):
                    await counter.done.wait()
            channel.send("tally", **counter.tally())


async def sdk_subscriber(channel: Channel, url: str, login: str, password: str, label_code: str) -> None:
    """(a) The SDK, as a user runs it: one subscription with a callback."""
    from medstream.filters import DataSampleFilter
    from medstream.sdk import MedTechApi

    counter = _Counter()
    api = await MedTechApi.builder().with_url(url).with_username(login).with_password(password).build()
    try:
        event_filter = (
            await DataSampleFilter(api).for_self().by_label_code_filter(clients.LABEL_TYPE, label_code).build()
        )
        connection = await api.data_sample_api.subscribe_to_data_sample_events(
            ["CREATE"], event_filter, counter.on_event
        )
        await connection.wait_established()
        await _serve(channel, counter)
    finally:
        await api.close()


class _Reader:
    """The protocol as the SDK reads it, for the clients that are not the SDK: split a frame into its messages,
    parse each event with `parse_event_message`, drop a `seq` already delivered, call the callback; answers a
    `ping` through `reply`."""

    def __init__(self, counter: _Counter) -> None:
        self.counter = counter
        self.last_seq = 0
        self.pings = 0

    def frame(self, text: str) -> None:
        from medstream.events.protocol import parse_event_message

        counter = self.counter
        if text.startswith(EVENT_PREFIX):
            counter.frames += 1
        for line in text.split("\n") if "\n" in text else (text,):
            event = parse_event_message(line) if line.startswith(EVENT_PREFIX) else None
            if event is not None:
                if event.seq > self.last_seq:
                    self.last_seq = event.seq
                    counter.on_event(event.entity)
            elif line.startswith('{"type":"ping"'):
                self.pings += 1


def _opening(token: str, hcp_id: str, label_code: str) -> list[str]:
    """The first messages, as the SDK sends them: auth asking for batched frames, one subscribe."""
    import orjson

    subscribe = {
        "type": "subscribe",
        "id": "s1",
        "entity": "DataSample",
        "events": ["CREATE"],
        "filter": clients.subscription_filter("match", 0, hcp_id, label_code),
    }
    return [orjson.dumps({"type": "auth", "token": token, "batch": True}).decode(), orjson.dumps(subscribe).decode()]


async def event_socket_subscriber(channel: Channel, ws_url: str, token: str, hcp_id: str, label_code: str) -> None:
    """(a') The SDK's event socket alone (`open_event_socket`, read by `EventSocket.run`) under the same reading
    as (b): the two differ only in the socket."""
    from medstream.sdk.event_socket import open_event_socket

    counter = _Counter()
    reader = _Reader(counter)
    subscribed = asyncio.Event()

    def on_message(text: str) -> list[str] | None:
        if not subscribed.is_set():
            if '"type":"subscribed"' in text:
                subscribed.set()
            return None
        pings = reader.pings
        reader.frame(text)
        return ['{"type":"pong"}'] if reader.pings > pings else None

    socket = await open_event_socket(ws_url, on_message, max_size=MAX_SIZE, open_timeout=10, close_timeout=5)
    task = asyncio.create_task(socket.run())
    try:
        for message in _opening(token, hcp_id, label_code):
            await socket.send(message)
        await subscribed.wait()
        await _serve(channel, counter)
    finally:
        await socket.close()
        task.cancel()


class _SansIO(asyncio.Protocol):
    """(b)'s socket: websockets' sans-I/O `ClientProtocol` on an `asyncio.Protocol` (ws:// only, no proxy), each
    whole text frame handed to `on_text` from `data_received` as it is read, offering permessage-deflate as the
    SDK does. Enough for the benchmark: it does not reassemble fragmented messages (the server sends none)."""

    def __init__(self, url: str, on_text: Any) -> None:
        from websockets.client import ClientProtocol
        from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
        from websockets.uri import parse_uri

        self.uri = parse_uri(url)
        self.protocol = ClientProtocol(self.uri, extensions=enable_client_permessage_deflate(None), max_size=MAX_SIZE)
        self.on_text = on_text
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes
        self.protocol.send_request(self.protocol.connect())
        self.flush()

    def data_received(self, data: bytes) -> None:
        from websockets.frames import Frame, Opcode
        from websockets.protocol import CONNECTING

        self.protocol.receive_data(data)
        events = self.protocol.events_received()
        self.flush()
        if not self.opened.done():
            if self.protocol.handshake_exc is not None:
                self.opened.set_exception(self.protocol.handshake_exc)
            elif self.protocol.state is not CONNECTING:
                self.opened.set_result(None)
        for event in events:
            if isinstance(event, Frame) and event.opcode is Opcode.TEXT and event.fin:
                self.on_text(str(event.data, "utf-8"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("connection lost during the opening handshake"))
        self.closed.set_result(None)

    def send(self, text: str) -> None:
        self.protocol.send_text(text.encode())
        self.flush()

    async def close(self) -> None:
        self.protocol.send_close(1000)
        self.flush()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await asyncio.shield(self.closed)
        if self.transport is not None:
            self.transport.abort()

    def flush(self) -> None:
        assert self.transport is not None
        for data in self.protocol.data_to_send():
            if data:
                self.transport.write(data)
            elif self.transport.can_write_eof():
                with contextlib.suppress(OSError, RuntimeError):
                    self.transport.write_eof()


async def sansio_subscriber(channel: Channel, ws_url: str, token: str, hcp_id: str, label_code: str) -> None:
    """(b) The raw baseline, `_SansIO`, speaking the protocol as the SDK does."""
    counter = _Counter()
    reader = _Reader(counter)
    subscribed = asyncio.Event()

    def on_text(text: str) -> None:
        if not subscribed.is_set():
            if '"type":"subscribed"' in text:
                subscribed.set()
            return
        pings = reader.pings
        reader.frame(text)
        if reader.pings > pings:
            socket.send('{"type":"pong"}')

    socket = _SansIO(ws_url, on_text)
    await asyncio.get_running_loop().create_connection(lambda: socket, socket.uri.host, socket.uri.port)
    try:
        await asyncio.wait_for(socket.opened, 10)
        for message in _opening(token, hcp_id, label_code):
            socket.send(message)
        await subscribed.wait()
        await _serve(channel, counter)
    finally:
        await socket.close()


def _loop_main(loop: str, target: WorkerTarget, conn: Connection, kwargs: dict[str, Any]) -> None:
    """A subscriber process's main, as `workers.Worker`'s but on the event loop `loop` (uvloop or asyncio)."""
    raise_open_files()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the benchmark's to handle
    channel = Channel(conn)

    async def main() -> None:
        await target(channel, **kwargs)

    try:
        if loop == "uvloop":
            import uvloop

            uvloop.run(main())
        else:
            asyncio.run(main())
    except BaseException:
        with contextlib.suppress(Exception):
            channel.send("error", traceback=traceback.format_exc())
        raise SystemExit(1) from None


class LoopWorker(Worker):
    """A `Worker` whose process runs on the event loop `loop`."""

    def __init__(self, loop: str, target: WorkerTarget, name: str, **kwargs: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.name = name
        self.process = context.Process(target=_loop_main, args=(loop, target, child, kwargs), name=name, daemon=True)
        self.process.start()
        child.close()
        self._abandoned = threading.Event()


async def labelled_writer(channel: Channel, url: str, token: str, patient_id: str) -> None:
    """A REST writer (`clients.rest_writer`) for several subscribers: each `write` names the label its samples
    carry, that is, the subscriber that receives them."""
    channel.send("ready")
    while True:
        kind, data = await channel.recv()
        if kind == "stop":
            return
        if kind == "write":
            label = data.pop("label")
            channel.send("written", **(await clients._write(url, token, patient_id, label, **data)))


# -- the benchmark ---------------------------------------------------------------------------------------


async def measure(subscriber: Worker, writer: Worker, label: str, events: int, batch: int) -> dict[str, Any]:
    """Arm the subscriber, have the writer create `events` events for it, and wait for them all."""
    subscriber.send("arm", expected=events)
    await subscriber.arecv("armed")
    writer.send("write", run=uuid.uuid4().hex[:8], label=label, batch=batch, count=events // batch)
    written = await writer.arecv("written", within=600)
    if written["errors"]:
        raise RuntimeError(f"the writer failed: {written['first_error']}")
    subscriber.send("collect", within=60 + events / 200)
    tally = await subscriber.arecv("tally", within=120 + events / 200)
    complete = tally["complete"]
    return {
        "events": tally["events"],
        "expected": events,
        "frames": tally["frames"],
        "loop": tally["loop"],
        "cpu_us_per_event": tally["cpu_seconds"] / events * 1e6 if complete else None,
        "events_per_second": events / tally["seconds"] if complete and tally["seconds"] else None,
    }


def subscribers(
    server: ServerProcess, identity: Identity, loops: list[str]
) -> dict[tuple[str, str], tuple[Worker, str]]:
    """One subscriber process per client and loop, each with the label of its own that it subscribes to (so
    only the measured one gets the events)."""
    workers: dict[tuple[str, str], tuple[Worker, str]] = {}
    for loop in loops:
        for client in CLIENTS:
            label = f"{client}-{loop}-{uuid.uuid4().hex[:6]}"
            if client == "sdk":
                worker = LoopWorker(
                    loop, sdk_subscriber, f"sdk-{loop}", url=server.url, login=identity.login,
                    password=identity.password, label_code=label,
                )  # fmt: skip
            else:
                target = sansio_subscriber if client == "sansio" else event_socket_subscriber
                worker = LoopWorker(
                    loop, target, f"{client}-{loop}", ws_url=server.ws_base + "/ws/v1/events",
                    token=identity.token, hcp_id=identity.hcp_id, label_code=label,
                )  # fmt: skip
            workers[(client, loop)] = (worker, label)
    return workers


def summarise(frames: str, loop: str, measured: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    every = [m for client in CLIENTS for m in measured[client]]
    cpu = {c: median(m["cpu_us_per_event"] for m in measured[c]) for c in CLIENTS}
    raw = measured["sansio"]
    frames_seen = sum(m["frames"] for m in raw)
    row: dict[str, Any] = {
        "frames": frames,
        "loop": loop,
        "events": raw[0]["expected"],
        "events_per_frame": sum(m["events"] for m in raw) / frames_seen if frames_seen else None,
        "sdk_ratio": cpu["sdk"] / cpu["sansio"] if cpu["sdk"] and cpu["sansio"] else None,
        "event_socket_ratio": cpu["event_socket"] / cpu["sansio"] if cpu["event_socket"] and cpu["sansio"] else None,
        "lost": sum(m["expected"] - m["events"] for m in every),
        "loops_seen": sorted({m["loop"] for m in every}),
    }
    for client in CLIENTS:
        row[f"{client}_cpu_us_per_event"] = cpu[client]
        row[f"{client}_runs_cpu_us_per_event"] = [m["cpu_us_per_event"] for m in measured[client]]
        row[f"{client}_events_per_second"] = median(m["events_per_second"] for m in measured[client])
    return row


def spread(values: list[float | None]) -> str:
    """The lowest and highest of the runs' figures: the noise that a ratio is to be read against."""
    present = [v for v in values if v is not None]
    return f"{fmt(min(present))}-{fmt(max(present))}" if present else "-"


def table_of(rows: list[dict[str, Any]], runs: int, database: str) -> Table:
    return Table(
        f"SDK socket: client CPU per event of one event stream ({database} server, median of {runs} run(s))",
        ["frames", "loop", "events/frame", "(a) SDK us/event", "(a') event socket", "(b) sans-I/O",
         "(a)/(b)", "(a')/(b)", "(a) events/s", "(b) events/s", "lost"],
        [
            [r["frames"], r["loop"], r["events_per_frame"],
             *(f"{fmt(r[f'{c}_cpu_us_per_event'])} ({spread(r[f'{c}_runs_cpu_us_per_event'])})" for c in CLIENTS),
             r["sdk_ratio"], r["event_socket_ratio"], r["sdk_events_per_second"], r["sansio_events_per_second"],
             r["lost"]]
            for r in rows
        ],
        ["us/event: the subscriber process's CPU time per event, median (lowest-highest) of the runs",
         "(a): the SDK, subscribe_to_data_sample_events with a callback; (a'): the SDK's open_event_socket alone "
         f"(websockets.asyncio.client.connect, max_queue={MAX_QUEUE}) and (b): websockets' sans-I/O protocol driven "
         "by hand, both under the same reading of the protocol",
         "events/s is set by the writer and the server more than by the client"],
    )  # fmt: skip


async def run(args: argparse.Namespace) -> Report:
    frames = [f for f in args.frames.split(",") if f]
    loops = [loop for loop in args.loops.split(",") if loop]
    if not set(frames) <= set(FRAMES) or not set(loops) <= set(LOOPS) or not frames or not loops:
        raise SystemExit(f"--frames is a list of {', '.join(FRAMES)}; --loops of {', '.join(LOOPS)}")
    if args.database == "both":
        args.database = "sqlite"
    runs = args.runs or (1 if args.quick else 3)
    counts = {
        "single": args.events or (40 if args.quick else 1000),
        "batched": args.batched_events or (128 if args.quick else 6400),
    }
    progress = Progress(len(frames) * runs * len(loops) * len(CLIENTS), NAME)
    rows = []
    async with medstream_on(args.database, args.pg_url) as server:
        identity = await make_professional(server.url)
        patient = await create_patient(server.url, identity.token)
        workers = subscribers(server, identity, loops)
        processes = [worker for worker, _ in workers.values()]
        writer = Worker(labelled_writer, name="writer", url=server.url, token=identity.token, patient_id=patient)
        with workers_stopped([*processes, writer]):
            await gather_from([*processes, writer], "ready", within=180)
            progress.note("warming up")
            for worker, label in workers.values():  # the first events of a process pay for imports and caches
                await measure(worker, writer, label, 64, 64)
            for shape in frames:
                batch = FRAMES[shape]
                events = max(batch, counts[shape] - counts[shape] % batch)
                measured: dict[str, dict[str, list[dict[str, Any]]]] = {
                    loop: {c: [] for c in CLIENTS} for loop in loops
                }
                for _ in range(runs):
                    for loop in loops:
                        for client in CLIENTS:  # (a), (a'), (b) in turn, run after run
                            progress.note(f"{shape} frames, {loop}, {client}")
                            worker, label = workers[(client, loop)]
                            result = await measure(worker, writer, label, events, batch)
                            measured[loop][client].append(result)
                            progress.advance()
                rows += [summarise(shape, loop, measured[loop]) for loop in loops]
    progress.close()
    report = {"runs": runs, "database": args.database, "max_queue": MAX_QUEUE, "rows": rows}
    return Report(report, [table_of(rows, runs, args.database)])


def main(argv: list[str] | None = None) -> int:
    return cli(NAME, parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
