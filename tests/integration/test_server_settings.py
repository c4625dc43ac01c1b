"""What the benchmarks rely on or found: permessage-deflate as a setting, dispatch time on /health, gc.freeze;
OpenTelemetry as a setting."""

from __future__ import annotations

import asyncio
import gc
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from websockets.asyncio.client import connect

from medstream.errors import MedstreamError
from medstream.model import DataSample, Patient
from medstream.server.app import create_app
from medstream.server.runner import FULL_COLLECTION_EVERY, make_server, start_server
from medstream.server.settings import Settings
from tests.conftest import ProfessionalFactory, RunningServer


@pytest.mark.parametrize(
    ("deflate", "context_takeover"), [(False, False), (True, False), (True, True)], ids=["off", "lean", "context"]
)
async def test_permessage_deflate_is_negotiated_only_when_enabled_and_carries_events(
    tmp_path: Path, deflate: bool, context_takeover: bool
) -> None:
    settings = Settings(
        host="127.0.0.1",
        port=0,
        database_url=f"sqlite:///{tmp_path / 'ws.db'}",
        admin_login="admin",
        admin_password="admin-password-1",
        ws_per_message_deflate=deflate,
        ws_deflate_context_takeover=context_takeover,
    )
    server, task, url = await start_server(settings)
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            login = await http.post("/rest/v1/auth/login", json={"username": "admin", "password": "admin-password-1"})
            token = login.json()["token"]
            headers = {"Authorization": f"Bearer {token}"}
            async with connect(url.replace("http", "ws", 1) + "/ws/v1/events", compression="deflate") as socket:
                extensions = socket.response.headers.get("Sec-WebSocket-Extensions") or ""
                assert ("permessage-deflate" in extensions) is deflate
                # Lean (the default with deflate on): no zlib state is kept between messages, either way.
                assert ("server_no_context_takeover" in extensions) is (deflate and not context_takeover)
                assert ("client_no_context_takeover" in extensions) is (deflate and not context_takeover)
                await socket.send(orjson.dumps({"type": "auth", "token": token}).decode())
                subscribe = {"type": "subscribe", "id": "p", "entity": "Patient", "events": ["CREATE"], "filter": None}
                await socket.send(orjson.dumps(subscribe).decode())
                assert orjson.loads(await socket.recv())["type"] == "subscribed"
                births = [20000101 + i for i in range(3)]  # several messages: each compressed on its own when lean
                for birth in births:
                    created = await http.post("/rest/v1/patients", json={"dateOfBirth": birth}, headers=headers)
                    assert created.status_code == 200, created.text
                events = [orjson.loads(await socket.recv()) for _ in births]
                assert [e["entity"]["dateOfBirth"] for e in events] == births
    finally:
        server.should_exit = True
        await task


@pytest.mark.parametrize(
    ("value", "expected"), [(None, False), ("0", False), ("off", False), ("false", False), ("1", True), ("on", True)]
)
def test_permessage_deflate_setting_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool
) -> None:
    if value is None:
        monkeypatch.delenv("MEDSTREAM_WS_PER_MESSAGE_DEFLATE", raising=False)
    else:
        monkeypatch.setenv("MEDSTREAM_WS_PER_MESSAGE_DEFLATE", value)
    assert Settings().ws_per_message_deflate is expected


def test_a_permessage_deflate_setting_that_is_not_a_boolean_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDSTREAM_WS_PER_MESSAGE_DEFLATE", "maybe")
    with pytest.raises(ValueError, match="boolean"):
        Settings()


async def test_health_counts_the_time_spent_dispatching(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()

    async def events() -> dict[str, int]:
        async with httpx.AsyncClient(base_url=server.url) as http:
            body: dict[str, int] = (await http.get("/health")).json()["events"]
            return body

    before = await events()
    patient = await doctor.api.patient_api.create_or_modify_patient(Patient(first_name="Ada"))
    assert patient.id is not None
    await doctor.api.data_sample_api.create_or_modify_data_sample_for(patient.id, DataSample(comment="timed"))
    async with asyncio.timeout(10):
        while (after := await events())["dispatched"] < before["dispatched"] + 2:  # noqa: ASYNC110 - bounded poll
            await asyncio.sleep(0.02)

    assert isinstance(after["dispatchNanos"], int)
    assert after["dispatchNanos"] > before["dispatchNanos"] >= 0


async def test_a_server_of_its_own_freezes_what_start_up_allocated(tmp_path: Path) -> None:
    thresholds = gc.get_threshold()
    settings = Settings(host="127.0.0.1", port=0, database_url=f"sqlite:///{tmp_path / 'gc.db'}")
    server = make_server(settings, log_level="warning", freeze_gc=True)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 - polling the server's own flag, bounded by the test timeout
            await asyncio.sleep(0.02)
        assert gc.get_freeze_count() > 0
        # With start-up frozen, full collections are kept rare (they traversed every batch in flight).
        assert gc.get_threshold() == (thresholds[0], thresholds[1], FULL_COLLECTION_EVERY)
    finally:
        server.should_exit = True
        await task
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """What an operator's OpenTelemetry set-up installs: a tracer provider, here exporting to memory. The global
    provider can be set once per process; a provider set before (by another test) is kept and exported from."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.clear()


@pytest.mark.parametrize("on", [False, True])
async def test_opentelemetry_traces_requests_only_when_the_setting_is_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spans: InMemorySpanExporter, on: bool
) -> None:
    monkeypatch.setenv("MEDSTREAM_OPENTELEMETRY", "1" if on else "0")
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'otel.db'}")
    assert settings.opentelemetry is on
    app = create_app(settings)
    spans.clear()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://otel") as http:
            health = await http.get("/health")
            unauthenticated = await http.get("/rest/v1/patients/some-id")

    assert health.status_code == 200 and unauthenticated.status_code == 401
    server_spans = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    if not on:
        assert server_spans == []
        return
    # One server span per request, named for it, with the status the client got (the error handlers' 401 too);
    # the attribute's name follows OpenTelemetry's HTTP conventions, old or new (OTEL_SEMCONV_STABILITY_OPT_IN).
    statuses = {
        s.name: s.attributes.get("http.response.status_code", s.attributes.get("http.status_code"))
        for s in server_spans
        if s.attributes is not None
    }
    assert statuses == {"GET /health": 200, "GET /rest/v1/patients/some-id": 401}
    assert len(spans.get_finished_spans()) == 2  # no span more per ASGI message


def test_opentelemetry_without_its_extra_is_refused_at_start_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # As without the `opentelemetry` extra installed: the instrumentation cannot be imported.
    monkeypatch.setitem(sys.modules, "opentelemetry.instrumentation.asgi", None)
    with pytest.raises(MedstreamError, match=re.escape('pip install "medstream[opentelemetry]"')):
        create_app(Settings(opentelemetry=True))
    create_app(Settings(opentelemetry=False))  # off, it is not needed
