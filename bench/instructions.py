"""Instructions: CPU instructions per data sample of the write path's steps, counted by valgrind.

    .venv/bin/python -m bench.instructions [--steps validate,prepare,rows,document,event] [--samples 200]

Timings on this VM move by a third from one minute to the next; instruction counts do not. Each step runs in a
Python process under `valgrind --tool=callgrind` (PYTHONHASHSEED=0), once over --samples one-label data samples
and once over them --repeat times more; the difference of the two totals, over the extra samples, is the
step's cost per sample, start-up and set-up cancelled out. For comparing code changes (run it on each side),
not for comparing with other machines. Needs valgrind (`apt-get install valgrind`).

Steps: `validate` (a batch body, JSON to models, as the batch route does), `prepare` (`_prepare_create`: id,
rev, readers, the stored copy), `rows` (`_rows_of`: row, terms, readers, JSON document, event), `document`
(an entity's JSON alone), `event` (the SDK's parse of an event message), `sdk-event` and `sdk-event-encrypted`
(an event message through the SDK's event stream to a subscription's callback, a data sample in clear, or
encrypted and decrypted on the way: a new entity under exchange data already open, its key unwrapped). Asked
for by name only (`--steps
rest-write,rest-read`): whole REST requests, one per "sample", through the app in the process (bench.request_cpu's
write and read); every thread is counted, the SQLite writer thread's statements and COMMIT included.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.clients import sample_body
from bench.report import Progress, Report, Table, base_parser, cli

NAME = "instructions"
STEPS = ("validate", "prepare", "rows", "document", "event", "sdk-event", "sdk-event-encrypted")
# Whole REST requests through the app (bench.request_cpu's), counted only when asked for: their set-up (the app,
# its database, a login) takes minutes under valgrind.
REST_STEPS = ("rest-write", "rest-read")
_CLOSE: list[Callable[[], object]] = []
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")
_TOTALS = re.compile(r"^(?:totals|summary):\s*(\d+)", re.MULTILINE)


def parser() -> argparse.ArgumentParser:
    p = base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated steps (default {','.join(STEPS)})")
    p.add_argument("--samples", type=int, default=200, help="data samples per pass (default 200)")
    p.add_argument("--repeat", type=int, default=6, help="extra passes counted (default 6)")
    return p


def step(name: str, samples: int) -> Callable[[], object]:
    """One pass of step `name` over `samples` data samples, set up (the set-up is not part of the pass)."""
    if name in REST_STEPS:
        return _rest_step(name, samples)
    if name.startswith("sdk-event"):
        return _sdk_event_step(samples, encrypted=name == "sdk-event-encrypted")
    import orjson
    from pydantic import TypeAdapter

    from medstream.access import Actor
    from medstream.events.protocol import EventFrameTemplate, parse_event_message
    from medstream.events.types import EventType
    from medstream.model.entities import KIND_BY_NAME
    from medstream.model.ids import new_entity_id
    from medstream.store.revisions import now_ms, prepare_create, rows_of

    kind = KIND_BY_NAME["DataSample"]
    adapter: TypeAdapter[Any] = TypeAdapter(list[kind.model])  # type: ignore[name-defined]
    body = orjson.dumps([sample_body("INSTRUCTIONS", f"sample {i}") for i in range(samples)])
    actor = Actor(user_id="user", data_owner_id="hcp")
    now = now_ms()
    parsed = adapter.validate_json(body)
    writes = [prepare_create(kind, new_entity_id(), e, actor, now, None) for e in parsed]
    frames = [
        EventFrameTemplate(i + 1, EventType.CREATE, kind.name, w.entity.to_json()).for_subscription("s")
        for i, w in enumerate(writes)
    ]
    passes: dict[str, Callable[[], object]] = {
        "validate": lambda: adapter.validate_json(body),
        "prepare": lambda: [prepare_create(kind, new_entity_id(), e, actor, now, None) for e in parsed],
        "rows": lambda: [rows_of(kind, w) for w in writes],
        "document": lambda: [w.entity.to_json() for w in writes],
        "event": lambda: [parse_event_message(f) for f in frames],
    }
    return passes[name]


def _sdk_event_step(samples: int, *, encrypted: bool) -> Callable[[], object]:
    """`samples` event messages of data samples through the SDK's event stream (`EventStream._on_message`, the
    socket's text as read) to a subscription's callback, as an SDK subscriber handles them. Encrypted: each
    sample a new entity under exchange data already open (its key unwrapped, its `encryptedSelf` decrypted, as
    for a stream of creations); the keys unwrapped in a pass are forgotten before the next."""
    import asyncio

    import orjson

    from bench.crypto import ENCRYPTED_FIELDS
    from medstream.crypto import DataOwnerKeyPair, EntityKey, KeyStore, create_exchange_data, encrypt_fields
    from medstream.crypto.state import CryptoState
    from medstream.events.client_state import SubscriptionState
    from medstream.events.protocol import EventFrameTemplate
    from medstream.events.types import EventType
    from medstream.model import DataSample
    from medstream.sdk.crypto_api import CryptoApi
    from medstream.sdk.delivery import Delivery
    from medstream.sdk.event_stream import EventStream
    from medstream.sdk.subscription_types import SubscriptionOptions
    from medstream.sdk.transport import Transport

    owner, keys = "hcp-1", DataOwnerKeyPair.generate(1)
    state = CryptoState(KeyStore(owner, [keys]), {"DataSample": tuple(ENCRYPTED_FIELDS)})
    state.check_published(owner, [keys.public])
    exchange, _ = create_exchange_data("ed-self", owner, owner, [keys], [keys.public])
    state.open(exchange)
    documents = []
    for i in range(samples):
        wire = {**sample_body("INSTRUCTIONS", f"sample {i}"), "id": f"ds-{i}", "rev": "1-a", "responsible": owner}
        if encrypted:
            key = EntityKey.generate()
            wire = encrypt_fields(
                state.with_own_delegation("DataSample", wire, key), "DataSample", ENCRYPTED_FIELDS, key
            )
        documents.append(orjson.dumps(DataSample.model_validate(wire).to_json_dict()))
    state.entity_keys.clear()

    loop = asyncio.new_event_loop()
    transport = Transport("http://127.0.0.1:9", "bench", "bench")
    crypto = CryptoApi(transport, state, Path(tempfile.gettempdir()) / "medstream-instructions-keys")
    # The callback counts the entities and keeps none: kept, they would be the garbage collector's to walk on
    # every pass, which a subscriber's callback does not make it do.
    delivered = 0

    def callback(entity: DataSample) -> None:
        nonlocal delivered
        delivered += isinstance(entity, DataSample)

    async def set_up() -> EventStream:
        stream = EventStream(transport, SubscriptionOptions())
        subscription = SubscriptionState("s", "DataSample", ["CREATE"], None)
        stream.state.add(subscription)
        delivery: Delivery[DataSample] = Delivery(
            subscription,
            DataSample,
            callback,
            max_pending=samples + 1,
            hold=lambda _id: None,
            release=lambda _id: None,
            decryptor=crypto.decryptor("DataSample") if encrypted else None,
        )
        stream.deliveries["s"] = delivery
        stream._on_message(orjson.dumps({"type": "subscribed", "id": "s", "position": 0, "epoch": "e"}).decode())
        return stream

    stream = loop.run_until_complete(set_up())

    async def end() -> None:
        stream.deliveries["s"].closed("done")
        await asyncio.sleep(0)

    def close() -> None:
        loop.run_until_complete(end())
        loop.close()

    _CLOSE.append(close)
    seq = 0

    def one_pass() -> None:
        nonlocal seq
        state.entity_keys.clear()
        frames = []
        for document in documents:
            seq += 1
            frames.append(EventFrameTemplate(seq, EventType.CREATE, "DataSample", document).for_subscription("s"))
        for frame in frames:
            stream._on_message(frame.decode())
        assert delivered == seq, f"{seq - delivered} events did not reach the callback as data samples"

    return one_pass


def _rest_step(name: str, requests: int) -> Callable[[], object]:
    """`requests` REST requests through the app, one at a time, on an app started (and, after the passes, stopped)
    in this process, on uvloop: every thread's instructions are counted, the SQLite writer thread's too."""

    import uvloop

    from bench.clients import sample_body
    from bench.request_cpu import ADMIN, AsgiClient, Lifespan, set_up
    from medstream.server.app import create_app
    from medstream.server.settings import Settings

    folder = tempfile.mkdtemp(prefix="medstream-instructions-")
    # Under valgrind a pass takes minutes: the node's periodic work (the dispatcher's poll every 50 ms, the
    # retention, the re-reads of users) would be counted by the wall time it took, not by the requests.
    settings = Settings(
        database_url=f"sqlite:///{Path(folder) / 'bench.db'}",
        admin_login=ADMIN[0],
        admin_password=ADMIN[1],
        dispatcher_poll_seconds=3600,
        retention_interval_seconds=3600,
        require_encryption=False,  # its requests carry a patient's names and a sample's content in clear
    )
    loop = uvloop.new_event_loop()
    app = create_app(settings)
    lifespan = Lifespan(app)
    loop.run_until_complete(lifespan.__aenter__())
    app.state.medstream.actors.ttl = 3600.0
    http = AsgiClient(app, lifespan.state)
    patient, sample = loop.run_until_complete(set_up(http))
    body = sample_body("INSTRUCTIONS", "rest")

    async def writes() -> None:
        for _ in range(requests):
            await http.ok("POST", f"/rest/v1/patients/{patient}/data-samples", body)

    async def reads() -> None:
        for _ in range(requests):
            await http.ok("GET", f"/rest/v1/data-samples/{sample}")

    def close() -> None:
        loop.run_until_complete(lifespan.__aexit__())
        loop.close()
        shutil.rmtree(folder, ignore_errors=True)

    _CLOSE.append(close)
    run = writes if name == "rest-write" else reads
    return lambda: loop.run_until_complete(run())


def _child(name: str, samples: int, passes: int) -> None:
    run = step(name, samples)
    for _ in range(passes):
        run()
    while _CLOSE:
        _CLOSE.pop()()


async def _count(name: str, samples: int, passes: int) -> tuple[int, int | None]:
    """All the instructions of a child running `passes` passes of step `name`, and for the REST steps those of its
    main thread alone (the event loop's), from callgrind's output of that thread."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory(prefix="medstream-callgrind-") as folder:
        output = ["--separate-threads=yes", f"--callgrind-out-file={folder}/out"] if name in REST_STEPS else []
        command = [
            "valgrind", "--tool=callgrind", *(output or ["--callgrind-out-file=/dev/null"]),
            sys.executable, "-m", "bench.instructions", "--child", name, str(samples), str(passes),
        ]  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _out, err = await process.communicate()
        found = _COLLECTED.search(err.decode(errors="replace"))
        if process.returncode != 0 or found is None:
            raise RuntimeError(f"valgrind on step {name} failed ({process.returncode}):\n{err.decode()[-2000:]}")
        main_thread = None
        if output:  # the main thread's file ends in -01
            totals = _TOTALS.search((Path(folder) / "out-01").read_text(errors="replace"))
            main_thread = int(totals.group(1)) if totals else None
    return int(found.group(1)), main_thread


async def run(args: argparse.Namespace) -> Report:
    if shutil.which("valgrind") is None:
        raise SystemExit("bench.instructions needs valgrind (apt-get install valgrind)")
    steps = [s for s in args.steps.split(",") if s]
    unknown = sorted(set(steps) - {*STEPS, *REST_STEPS})
    if unknown:
        raise SystemExit(f"unknown step(s) {', '.join(unknown)}; known: {', '.join((*STEPS, *REST_STEPS))}")
    samples = 20 if args.quick else args.samples
    repeat = 1 if args.quick else args.repeat
    progress = Progress(len(steps), NAME)
    rows = []
    results = []
    for name in steps:
        progress.note(f"{name}: two passes under valgrind")
        (once, main_once), (more, main_more) = await asyncio.gather(
            _count(name, samples, 1), _count(name, samples, 1 + repeat)
        )
        per_sample = (more - once) / (repeat * samples)
        main = (main_more - main_once) / (repeat * samples) if main_once is not None and main_more is not None else None
        rows.append([name, round(per_sample), round(main) if main is not None else "-", once, more])
        results.append(
            {
                "step": name,
                "instructions_per_sample": per_sample,
                "main_thread_per_sample": main,
                "once": once,
                "more": more,
            }
        )
        progress.advance()
    progress.close()
    table = Table(
        f"Instructions per data sample (callgrind; {samples} samples, 1 pass against {1 + repeat})",
        ["step", "instructions/sample", "of which main thread", "total, 1 pass", f"total, {1 + repeat} passes"],
        rows,
    )
    return Report({"samples": samples, "repeat": repeat, "steps": results}, [table], [])


def main(argv: list[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--child"]:
        _child(arguments[1], int(arguments[2]), int(arguments[3]))
        return 0
    return cli(NAME, parser(), run, arguments)


if __name__ == "__main__":
    sys.exit(main())
