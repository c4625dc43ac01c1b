"""GET /metrics (docs/deploy.md, "Metrics"): a real server's scrape parses as Prometheus' text format, its counters
move as a scenario runs through REST and the event socket, and only loopback clients or clients with the metrics
token may scrape.

A client that is not on loopback is one behind a proxy: the test clients connect from 127.0.0.1, which uvicorn
trusts to name the client in `X-Forwarded-For`, as nginx does in docs/deploy.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from medstream.server.metrics import SEND_DELAY_SECONDS
from medstream.server.request_metrics import route_templates
from tests.conftest import ADMIN_LOGIN, RunningServer
from tests.integration.cli_support import medstream
from tests.integration.events_support import eventually
from tests.integration.raw_events import (
    WAIT,
    RawClient,
    create_patients,
    dedicated_server,
    small_receive_buffer_socket,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
OUTSIDE = {"X-Forwarded-For": "203.0.113.9"}  # a client on another host, as a proxy on this one names it
TOKEN = "metrics-token-" + "x" * 24


async def scrape(url: str, headers: Mapping[str, str] | None = None) -> Samples:
    """Every sample of one scrape, by name and labels, parsed by prometheus_client's own parser."""
    async with httpx.AsyncClient(base_url=url, timeout=WAIT) as http:
        response = await http.get("/metrics", headers=dict(headers or {}))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for a labelled counter that has not been counted yet (it has no series)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(labels)[label] for sample, labels in samples if sample == name and label in dict(labels)}


async def test_a_scrape_parses_and_its_counters_follow_requests_sockets_events_and_logins(tmp_path: Path) -> None:
    async with dedicated_server(tmp_path, login_free_attempts=1) as server:
        token = await server.admin_token()
        before = await scrape(server.url)
        requests = "medstream_http_requests_total"
        assert value(before, "medstream_build_info", version=_version(before), database="sqlite") == 1

        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
            wrong = {"username": "nobody-" + uuid.uuid4().hex, "password": "wrong password"}
            assert (await http.post("/rest/v1/auth/login", json=wrong)).status_code == 401
            assert (await http.post("/rest/v1/auth/login", json=wrong)).status_code == 429  # one free attempt
            headers = {"Authorization": f"Bearer {token}"}
            for _ in range(3):  # three ids, one route
                missing = await http.get(f"/rest/v1/patients/{uuid.uuid4()}", headers=headers)
                assert missing.status_code == 404
            assert (await http.get("/no/such/route")).status_code == 404

        async with RawClient.opened(server.url, token) as client:
            assert (await client.subscribe("patients"))["type"] == "subscribed"
            subscribed = await scrape(server.url)
            [patient] = await create_patients(server.url, token)
            await client.event_for("patients", patient["id"])
        async with RawClient.opened(server.url, "not a token") as refused:
            code, _reason = await refused.closed()
            assert code == 4001

        async def settled() -> Samples | None:
            samples = await scrape(server.url)
            return samples if value(samples, "medstream_ws_connections") == 0 else None

        after: Samples = await eventually(settled, "both sockets closed on the server")
        templates = route_templates(server.server.app.router.routes)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Requests, by route template, method and status.
    assert moved(requests, route="/rest/v1/auth/login", method="POST", status="401") == 1
    assert moved(requests, route="/rest/v1/auth/login", method="POST", status="429") == 1
    assert moved(requests, route="/rest/v1/patients/{entity_id}", method="GET", status="404") == 3
    assert moved(requests, route="/rest/v1/patients", method="POST", status="200") == 1
    assert moved(requests, route="unmatched", method="GET", status="404") == 1
    assert moved(requests, route="/metrics", method="GET", status="200") >= 2
    # Only the app's route templates, never a path as it was sent.
    assert label_values(after, requests, "route") <= {*templates.values(), "unmatched"}
    timed = "medstream_http_request_duration_seconds_count"
    assert moved(timed, route="/rest/v1/patients/{entity_id}", method="GET") == 3
    assert value(after, "medstream_http_request_duration_seconds_bucket", route="/rest/v1/patients", method="POST",
                 le="+Inf") >= 1  # fmt: skip

    # Sockets: two opened; one closed by its client (1000), one by the server (4001); a subscription while it was.
    assert moved("medstream_ws_connections_opened_total") == 2
    assert moved("medstream_ws_connections_closed_total", code="1000", by="client") == 1
    assert moved("medstream_ws_connections_closed_total", code="4001", by="server") == 1
    assert value(subscribed, "medstream_subscriptions", entity_type="Patient") == 1
    assert value(subscribed, "medstream_ws_connections") == 1
    assert value(after, "medstream_subscriptions", entity_type="Patient") == 0

    # Events: dispatched, delivered live to the one subscription, and timed from write to delivery.
    assert moved("medstream_events_dispatched_total") >= 1
    assert moved("medstream_events_delivered_total", path="live") == 1
    assert moved("medstream_events_commit_to_send_seconds_count") == 1
    assert (
        len(label_values(after, "medstream_events_commit_to_send_seconds_bucket", "le")) == len(SEND_DELAY_SECONDS) + 1
    )
    assert value(after, "medstream_dispatcher_lag_events") == 0
    assert value(after, "medstream_events_dropped_total", reason="too_slow") == 0

    # Logins: the wrong password once, then the login throttled before its password was checked.
    assert moved("medstream_login_failures_total") == 1
    assert moved("medstream_login_throttled_total", limit="login") == 1

    # The database: transactions timed (the write of the patient), the SQLite pool's connections.
    assert moved("medstream_db_transaction_duration_seconds_count", kind="write") >= 1
    assert value(after, "medstream_db_connections_max", pool="sqlite") > 0
    assert ("process_resident_memory_bytes", frozenset()) in after


def _version(samples: Samples) -> str:
    (version,) = label_values(samples, "medstream_build_info", "version")
    return version


async def test_the_events_of_a_slow_consumer_closed_with_4429_count_as_dropped(tmp_path: Path) -> None:
    async with dedicated_server(tmp_path, ws_send_queue=16) as server:
        server.limit_send_buffers(16 * 1024)
        token = await server.admin_token()
        sock = small_receive_buffer_socket(server.url)
        async with RawClient.opened(server.url, token, sock=sock) as stalled:
            assert (await stalled.subscribe("everything"))["type"] == "subscribed"
            note = uuid.uuid4().hex * 500  # 16 KB a patient: a few dozen fill the buffers behind a stalled reader
            for _ in range(100):
                await create_patients(server.url, token, 8, note=note)
                if server.hub.closes[4429] or any(c.close_reason for c in server.hub.connections):
                    break

            async def dropped() -> Samples | None:
                samples = await scrape(server.url)
                return samples if value(samples, "medstream_events_dropped_total", reason="too_slow") > 0 else None

            samples = await eventually(dropped, "the stalled socket's events counted as dropped")
        assert value(samples, "medstream_ws_connections_closed_total", code="4429", by="server") == 1
        delivered = value(samples, "medstream_events_delivered_total", path="live")
        assert 0 < value(samples, "medstream_events_dropped_total", reason="too_slow") <= delivered


async def test_only_loopback_clients_scrape_when_no_token_is_set(tmp_path: Path) -> None:
    async with dedicated_server(tmp_path) as server, httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        assert (await http.get("/metrics")).status_code == 200
        refused = await http.get("/metrics", headers=OUTSIDE)
        assert refused.status_code == 403
        assert refused.json()["error"] == "forbidden" and "MEDSTREAM_METRICS_TOKEN" in refused.json()["message"]
        # A user's access token is not the metrics token.
        user = await http.get("/metrics", headers={**OUTSIDE, "Authorization": f"Bearer {await server.admin_token()}"})
        assert user.status_code == 403


async def test_with_a_token_another_host_scrapes_with_it_and_is_refused_without(tmp_path: Path) -> None:
    async with (
        dedicated_server(tmp_path, metrics_token=TOKEN) as server,
        httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http,
    ):
        missing = await http.get("/metrics", headers=OUTSIDE)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["error"] == "unauthorized" and "MEDSTREAM_METRICS_TOKEN" in missing.json()["message"]
        wrong = await http.get("/metrics", headers={**OUTSIDE, "Authorization": f"Bearer {TOKEN}-not"})
        assert wrong.status_code == 401 and "wrong metrics token" in wrong.json()["message"]
        assert (await http.get("/metrics", headers={"Authorization": "Bearer wrong-token"})).status_code == 401
        samples = await scrape(server.url, {**OUTSIDE, "Authorization": f"Bearer {TOKEN}"})
        assert value(samples, "medstream_http_requests_total", route="/metrics", method="GET", status="401") == 3


async def test_without_loopback_access_every_scrape_needs_the_token(tmp_path: Path) -> None:
    async with (
        dedicated_server(tmp_path, metrics_token=TOKEN, metrics_loopback=False) as server,
        httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http,
    ):
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).status_code == 200


async def test_with_metrics_off_there_is_no_route(tmp_path: Path) -> None:
    async with dedicated_server(tmp_path, metrics=False) as server, httpx.AsyncClient(base_url=server.url) as http:
        answer = await http.get("/metrics")
        assert answer.status_code == 404 and answer.json()["error"] == "not_found"
        assert server.server.app.state.medstream.dispatcher.send_delays is None


async def test_every_database_s_scrape_names_its_pools_and_times_its_transactions(server: RunningServer) -> None:
    pools = {"sqlite": {"sqlite"}, "postgresql": {"transactions", "autocommit"}}[server.backend]
    async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        login = {"username": ADMIN_LOGIN, "password": server.admin_password}
        token = (await http.post("/rest/v1/auth/login", json=login)).json()["token"]
        before = await scrape(server.url)
        await create_patients(server.url, token, 3)
        after = await scrape(server.url)
    assert value(after, "medstream_build_info", version=_version(after), database=server.backend) == 1
    assert label_values(after, "medstream_db_connections_max", "pool") == pools
    for pool in pools:  # taken and given back in step: never below none nor above the most it opens
        most = value(after, "medstream_db_connections_max", pool=pool)
        assert most > 0
        assert 0 <= value(after, "medstream_db_connections", pool=pool, state="in_use") <= most
        assert 0 <= value(after, "medstream_db_connections", pool=pool, state="idle") <= most
    write_count = "medstream_db_transaction_duration_seconds_count"
    assert value(after, write_count, kind="write") > value(before, write_count, kind="write")
    requests: dict[str, Any] = {"route": "/rest/v1/patients/batch", "method": "POST", "status": "200"}
    assert (
        value(after, "medstream_http_requests_total", **requests)
        == value(before, "medstream_http_requests_total", **requests) + 1
    )


async def test_a_request_answered_before_routing_is_counted_under_its_route(tmp_path: Path) -> None:
    async with dedicated_server(tmp_path, max_body_bytes=1024) as server:
        token = await server.admin_token()
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
            body = {"firstName": "x" * 2048, "lastName": "Big"}
            headers = {"Authorization": f"Bearer {token}"}
            assert (await http.post("/rest/v1/patients", json=body, headers=headers)).status_code == 413
        samples = await scrape(server.url)
    assert value(samples, "medstream_http_requests_total", route="/rest/v1/patients", method="POST", status="413") == 1


async def test_a_scraper_that_asks_for_openmetrics_gets_it(tmp_path: Path) -> None:
    async with dedicated_server(tmp_path) as server, httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
        await server.admin_token()
        answer = await http.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    families = {family.name: family for family in openmetrics_families(answer.text)}
    assert families["medstream_http_requests"].type == "counter"
    assert families["medstream_events_commit_to_send_seconds"].type == "histogram"
    assert answer.text.endswith("# EOF\n")


async def test_a_write_through_another_process_is_lag_until_the_dispatcher_reads_it(tmp_path: Path) -> None:
    # A dispatcher that polls the log every minute: what another process writes waits for that poll.
    async with dedicated_server(tmp_path, dispatcher_poll_seconds=60) as server:
        before = await scrape(server.url)
        code, _out, err = await medstream(
            "user", "add", "--database", server.database_url, "--login", "written-elsewhere", "--password",
            "a-password-long-enough",
        )  # fmt: skip
        assert code == 0, err
        during = await scrape(server.url)
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
            assert (await http.get("/health")).json()["events"]["lag"] == 1  # /health reads the head as well
    assert value(before, "medstream_dispatcher_lag_events") == 0
    assert value(during, "medstream_dispatcher_lag_events") == 1
    assert value(during, "medstream_database_up") == 1
    assert value(during, "medstream_dispatcher_position") == value(before, "medstream_dispatcher_position")
