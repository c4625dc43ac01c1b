"""A node's Prometheus metrics, served at `GET /metrics` (docs/deploy.md, "Metrics").

Each `medstream serve` process is one node with a registry of its own (not prometheus_client's global one, so
that servers started in one process, as the tests do, keep theirs apart); Prometheus scrapes every node and adds
their series up. `medstream serve` runs no worker processes, so prometheus_client's multi-process mode
(`PROMETHEUS_MULTIPROC_DIR`) is not used: it writes every increment to a file shared between processes, and it
cannot serve the values read at scrape time below.

What moves once per socket is counted with prometheus_client's counters (by the edge middleware,
`server/edge.py`, through `server/request_metrics.py`). What moves once per request or transaction (the edge
again; the database's transactions) or once per event (dispatched, delivered, dropped, the time to the first
delivery, counted by the dispatcher and the sockets where they already loop) is counted in plain integers and
`LoopHistogram`s by the event loop's thread, which serves all of them, and what is a level (lag, send queues,
subscriptions, connections, pools) is read when Prometheus scrapes, by `NodeCollector`: nothing on the way of an
event takes a lock or looks a label up.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from medstream import __version__
from medstream.errors import MedstreamError
from medstream.model.entities import KIND_BY_NAME
from medstream.server.loop_histogram import LoopHistogram
from medstream.server.state import ServerState
from medstream.store import outbox

# Upper bounds, in seconds: a request answers in a millisecond or two when all is well, a batch in a second.
HTTP_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A transaction takes tens of microseconds (a read on SQLite) to tens of milliseconds (a batch write).
TRANSACTION_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
# From an event's write to its first delivery: a few milliseconds on a node that keeps up.
SEND_DELAY_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A scrape waits this long at most for the log's head; past it the database is reported down.
HEAD_TIMEOUT_SECONDS = 2.0


class Metrics:
    """The registry of one app and the instruments counted as requests, sockets and transactions go by."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, process_resident_memory_bytes...
        PlatformCollector(registry=self.registry)  # python_info
        self.ws_opened = Counter("medstream_ws_connections_opened", "Event sockets accepted", registry=self.registry)
        self.ws_closed = Counter(
            "medstream_ws_connections_closed",
            "Event sockets closed, by close code (`other`: a code Medstream does not know) and by the side that "
            "closed first (`server` or `client`)",
            ["code", "by"],
            registry=self.registry,
        )
        self.ws_open = 0  # sockets accepted and not closed yet
        # Counted by the event loop's thread (every request and transaction is served there), in plain integers
        # and LoopHistograms that the collector reads at scrape time: prometheus_client's counters and histograms
        # take a lock per increment, five of them per request.
        self.request_counts: dict[tuple[str, str, int], int] = {}
        self.request_times: dict[tuple[str, str], LoopHistogram] = {}
        self.transaction_times = {kind: LoopHistogram(TRANSACTION_SECONDS) for kind in ("read", "write")}
        self._collector: NodeCollector | None = None
        self.database_up = True  # whether the last scrape could read the log's head

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count an HTTP request answered (labels bounded by the caller: a route template, a known method)."""
        key = (route, method, status)
        self.request_counts[key] = self.request_counts.get(key, 0) + 1
        timing = self.request_times.get((route, method))
        if timing is None:
            timing = self.request_times[(route, method)] = LoopHistogram(HTTP_SECONDS)
        timing.observe(seconds)

    def transaction(self, kind: str, seconds: float) -> None:
        self.transaction_times[kind].observe(seconds)

    def bind(self, state: ServerState) -> None:
        """Start counting what the running server's state holds: its transactions, its events' delays, and
        everything read at scrape time."""
        state.database.time_transactions(self.transaction)
        state.dispatcher.send_delays = LoopHistogram(SEND_DELAY_SECONDS)
        if self._collector is None:
            self._collector = NodeCollector(self, state)
            self.registry.register(self._collector)
        else:
            self._collector.state = state

    async def read_log_head(self) -> None:
        """Before a scrape: read the log's head, so that the dispatcher's lag counts the events written through
        other nodes and processes that it has not read yet (between its polls); the database is down if it
        cannot be read."""
        if self._collector is None:
            return
        state = self._collector.state
        try:
            async with asyncio.timeout(HEAD_TIMEOUT_SECONDS):
                head = await state.database.run_read(outbox.head)
        except (MedstreamError, OSError, TimeoutError):
            self.database_up = False
            return
        self.database_up = True
        state.dispatcher.saw_head(head.last_seq)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The scrape's body in the format `accept` asks for (Prometheus' text format, or OpenMetrics), and its
        content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class NodeCollector(Collector):
    """What is read when Prometheus scrapes: the node's counts of events, logins and sockets, and its levels."""

    def __init__(self, metrics: Metrics, state: ServerState) -> None:
        self.metrics = metrics
        self.state = state

    def collect(self) -> Iterator[Metric]:
        state = self.state
        yield from self._info(state)
        yield from self._health()
        yield from self._requests()
        yield from self._events(state)
        yield from self._sockets(state)
        yield from self._database(state)
        yield from self._logins(state)

    @staticmethod
    def _info(state: ServerState) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "medstream_build_info", "Always 1: the server's version and database", labels=["version", "database"]
        )
        info.add_metric([__version__, state.database.backend.name], 1)
        yield info

    def _health(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "medstream_database_up",
            "1 when this scrape read the event log's head from the database, 0 when it could not (within "
            f"{HEAD_TIMEOUT_SECONDS:g} s)",
            value=1 if self.metrics.database_up else 0,
        )

    def _requests(self) -> Iterator[Metric]:
        metrics = self.metrics
        requests = CounterMetricFamily(
            "medstream_http_requests",
            "HTTP requests answered, by route template (`unmatched`: no route), method and status",
            labels=["route", "method", "status"],
        )
        for (route, method, status), count in metrics.request_counts.items():
            requests.add_metric([route, method, str(status)], count)
        yield requests
        yield _histogram(
            "medstream_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by route template and method",
            ["route", "method"],
            {(route, method): times for (route, method), times in metrics.request_times.items()},
        )
        yield _histogram(
            "medstream_db_transaction_duration_seconds",
            "Database transactions, by kind (`read`, `write`): time from the call to its end, the wait for a "
            "connection (PostgreSQL) or the writer thread (SQLite) included",
            ["kind"],
            {(kind,): times for kind, times in metrics.transaction_times.items()},
        )

    @staticmethod
    def _events(state: ServerState) -> Iterator[Metric]:
        dispatcher, hub = state.dispatcher, state.hub
        yield CounterMetricFamily(
            "medstream_events_dispatched", "Events of the log this node has dispatched", value=dispatcher.dispatched
        )
        delivered = CounterMetricFamily(
            "medstream_events_delivered",
            "Events handed to a subscription's socket, one per subscription, live or in a replay from the log",
            labels=["path"],
        )
        delivered.add_metric(["live"], dispatcher.delivered_live)
        delivered.add_metric(["replay"], dispatcher.delivered_replay)
        yield delivered
        dropped = CounterMetricFamily(
            "medstream_events_dropped",
            "Events handed to a socket but never sent, by why: `too_slow` (its send queue overflowed, closed with "
            "4429), `closed` (the socket closed, or its client went away, before they were sent)",
            labels=["reason"],
        )
        for reason in ("too_slow", "closed"):
            dropped.add_metric([reason], hub.dropped[reason])
        yield dropped
        yield GaugeMetricFamily(
            "medstream_dispatcher_lag_events",
            "Events of the log (its head read for this scrape) that this node has not dispatched yet",
            value=dispatcher.lag,
        )
        yield GaugeMetricFamily(
            "medstream_dispatcher_position", "The last position this node dispatched", value=dispatcher.position
        )
        delays = dispatcher.send_delays
        if delays is not None:
            yield HistogramMetricFamily(
                "medstream_events_commit_to_send_seconds",
                "Time from an event's write (stamped by the server that wrote it, just before its commit) to its "
                "first delivery on this node (queued on a socket, sent at the end of that turn of the event loop)",
                buckets=[(_bound(bound), count) for bound, count in delays.cumulative()],
                sum_value=delays.total,
            )

    def _sockets(self, state: ServerState) -> Iterator[Metric]:
        hub = state.hub
        yield GaugeMetricFamily(
            "medstream_ws_connections", "Event sockets open (accepted, not closed yet)", value=self.metrics.ws_open
        )
        queued = [connection.queued for connection in hub.connections]
        yield GaugeMetricFamily(
            "medstream_ws_send_queue_messages", "Messages waiting in all the sockets' send queues", value=sum(queued)
        )
        yield GaugeMetricFamily(
            "medstream_ws_send_queue_max_messages",
            f"Messages waiting in the fullest socket's send queue (closed with 4429 past {hub.limits.send_queue})",
            value=max(queued, default=0),
        )
        counts = state.dispatcher.index.by_entity_type
        subscriptions = GaugeMetricFamily(
            "medstream_subscriptions", "Subscriptions held on this node, by entity type", labels=["entity_type"]
        )
        for entity_type in KIND_BY_NAME:
            subscriptions.add_metric([entity_type], counts[entity_type])
        yield subscriptions

    @staticmethod
    def _database(state: ServerState) -> Iterator[Metric]:
        database = state.database
        in_flight = GaugeMetricFamily(
            "medstream_db_transactions_in_flight",
            "Database transactions under way, waiting for a connection included, by kind",
            labels=["kind"],
        )
        for kind, count in database.in_flight.items():
            in_flight.add_metric([kind], count)
        yield in_flight
        connections = GaugeMetricFamily(
            "medstream_db_connections",
            "Database connections of each pool (`sqlite`; on PostgreSQL `transactions` and `autocommit`), by state "
            "(`in_use`, `idle`)",
            labels=["pool", "state"],
        )
        capacity = GaugeMetricFamily(
            "medstream_db_connections_max", "The most connections each pool opens", labels=["pool"]
        )
        for pool in database.pools():
            connections.add_metric([pool.name, "in_use"], pool.in_use)
            connections.add_metric([pool.name, "idle"], pool.idle)
            capacity.add_metric([pool.name], pool.capacity)
        yield connections
        yield capacity

    @staticmethod
    def _logins(state: ServerState) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "medstream_login_failures", "Logins refused for a wrong login or password", value=state.throttle.failures
        )
        throttled = CounterMetricFamily(
            "medstream_login_throttled",
            "Logins refused with 429 before their password was checked, by the limit that refused them: `login` "
            "(failures of that login), `address` (failures from that client address), `password_checks` (too many "
            "checks in progress)",
            labels=["limit"],
        )
        throttled.add_metric(["login"], state.throttle.refused)
        throttled.add_metric(["address"], state.peer_throttle.refused)
        throttled.add_metric(["password_checks"], state.password_checks.refused)
        yield throttled


def _histogram(
    name: str, documentation: str, labels: list[str], histograms: dict[tuple[str, ...], LoopHistogram]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for values, times in histograms.items():
        family.add_metric(
            list(values), [(_bound(bound), count) for bound, count in times.cumulative()], sum_value=times.total
        )
    return family


def _bound(bound: float) -> str:
    """A bucket's upper bound as Prometheus writes it (`le`): `+Inf` for the last."""
    return "+Inf" if math.isinf(bound) else repr(bound)
