"""The pieces of the metrics that need no server: the dispatcher's lock-free histogram (checked against
prometheus_client's own Histogram on the same observations), who counts as a loopback scraper, and the route
templates requests are counted under."""

from __future__ import annotations

import math

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram
from starlette.routing import Mount, Route, Router, WebSocketRoute
from starlette.websockets import WebSocket

from medstream.server.loop_histogram import LoopHistogram
from medstream.server.metrics import SEND_DELAY_SECONDS
from medstream.server.request_metrics import close_code_label, route_templates
from medstream.server.routes.metrics import on_loopback
from medstream.server.settings import Settings, describe_settings_error

values = st.floats(min_value=-1.0, max_value=100.0, allow_nan=False)


@given(st.lists(st.one_of(values, st.sampled_from(SEND_DELAY_SECONDS)), max_size=200))
def test_the_loop_histogram_counts_as_prometheus_client_s_histogram(observations: list[float]) -> None:
    reference = Histogram("reference_seconds", "", buckets=SEND_DELAY_SECONDS, registry=CollectorRegistry())
    ours = LoopHistogram(SEND_DELAY_SECONDS)
    for observation in observations:
        reference.observe(observation)
        ours.observe(observation)

    (family,) = reference.collect()
    expected = {s.labels["le"]: s.value for s in family.samples if s.name == "reference_seconds_bucket"}
    got = {("+Inf" if math.isinf(bound) else str(bound)): count for bound, count in ours.cumulative()}
    assert got == expected
    (total,) = (s.value for s in family.samples if s.name == "reference_seconds_sum")
    assert ours.total == pytest.approx(total)


def test_bucket_bounds_must_increase() -> None:
    with pytest.raises(ValueError, match="increase"):
        LoopHistogram((0.1, 0.05))


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.7", False),
        ("203.0.113.9", False),
        ("::ffff:10.0.0.7", False),
        ("2001:db8::1", False),
        ("localhost", False),  # a name, not an address as a connection has one
        ("", False),
        (None, False),
    ],
)
def test_who_is_on_loopback(host: str | None, loopback: bool) -> None:
    assert on_loopback(host) is loopback


async def _endpoint(_websocket: WebSocket) -> None:
    return None


def test_route_templates_walk_into_mounts_and_keep_their_parameters() -> None:
    item = Route("/{entity_id}", lambda r: None, methods=["GET"])
    root = Route("/", lambda r: None, methods=["POST"])
    health = Route("/health", lambda r: None)
    socket = WebSocketRoute("/ws/v1/events", _endpoint)
    assets = Mount("/docs-assets", app=Router())
    routes = [Mount("/rest/v1/patients", routes=[item, root]), health, socket, assets]

    assert route_templates(routes) == {
        id(item): "/rest/v1/patients/{entity_id}",
        id(root): "/rest/v1/patients",
        id(health): "/health",
        id(socket): "/ws/v1/events",
        id(assets): "/docs-assets/{path}",
    }


def test_close_codes_outside_medstream_s_are_one_label() -> None:
    assert [close_code_label(code) for code in (1000, 4429, 1006, 4999, 3000)] == [
        "1000",
        "4429",
        "1006",
        "other",
        "other",
    ]


def test_a_short_metrics_token_is_refused_without_being_shown() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        Settings(metrics_token="short-secret")
    message = describe_settings_error(caught.value)
    assert "metrics_token (--metrics-token, MEDSTREAM_METRICS_TOKEN)" in message
    assert "short-secret" not in message
