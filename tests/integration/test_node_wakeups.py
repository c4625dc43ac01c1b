"""PostgreSQL nodes wake each other with `LISTEN`/`NOTIFY` after their commits (`store/postgresql/wakeups.py`):
an event written through one node reaches subscribers on another long before that node's slow poll, a listening
connection that is cut off catches up on what it missed once it is back, and an idle node costs the database a
handful of transactions a second, not one every few milliseconds.

Real `medstream serve` processes on a fresh database each. The polls are set far longer than the waits here,
so an event that arrives came through a notice or a catch-up, not through a poll. The last tests drive one
node's notices and listening connection in this process: a burst's notices coalesced, a node's own notices
ignored, and a listening connection that stops answering without closing (through a relay that stalls it)
found by its check and replaced.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import pytest

from medstream.access import Actor
from medstream.model import MedicalDevice
from medstream.model.entities import KIND_BY_NAME
from medstream.store.database import Database
from medstream.store.postgresql.backend import PostgreSQLBackend
from medstream.store.postgresql.connections import Autocommit
from medstream.store.postgresql.wakeups import APPLICATION_NAME, CHANNEL, Wakeups
from medstream.store.repository import EntityRepository
from tests.conftest import ADMIN_LOGIN, ADMIN_PASSWORD, PG_HOST, PG_PORT, PG_USER, database_url_for
from tests.integration.cluster import Cluster, EventReader, Node, login, open_readers, running_cluster, running_nodes

pytestmark = pytest.mark.timeout(180)

SLOW_POLL = "60"  # seconds: far longer than any wait below
WITHIN = 10.0  # seconds an event may take to cross nodes here (a notice takes milliseconds)
ADMIN = Actor(user_id="admin", data_owner_id=None, is_admin=True)


async def _admin_conn() -> asyncpg.Connection:
    return await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")


async def _create_device(node: Node, token: str, name: str) -> tuple[str, str]:
    async with httpx.AsyncClient(base_url=node.url, timeout=10) as client:
        response = await client.post(
            "/rest/v1/medical-devices", json={"name": name}, headers={"Authorization": f"Bearer {token}"}
        )
        response.raise_for_status()
        body = response.json()
        return body["id"], body["rev"]


async def _listeners(database: str, role: str | None = None) -> list[int]:
    """The backend pids of the nodes' listening connections on `database` (of `role` only, if given)."""
    conn = await _admin_conn()
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2"
            " AND ($3::text IS NULL OR usename = $3)",
            database,
            APPLICATION_NAME,
            role,
        )
    finally:
        await conn.close()
    return [r["pid"] for r in rows]


async def _wait_listening(database: str, role: str | None, count: int) -> list[int]:
    deadline = time.monotonic() + WITHIN
    while len(pids := await _listeners(database, role)) < count:
        assert time.monotonic() < deadline, f"no node listens on {database} ({role or 'any role'})"
        await asyncio.sleep(0.1)
    return pids


async def test_an_event_written_on_one_node_reaches_another_long_before_its_poll(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, count=2, extra_args=("--dispatcher-poll-seconds", SLOW_POLL)) as cluster:
        readers = await open_readers(cluster.nodes, cluster.token)
        try:
            for i in range(5):  # one after the other: each must come by its own notice
                entity_id, rev = await _create_device(cluster.nodes[0], cluster.token, f"pump-{i}")
                arrived = await readers[1].wait_for(entity_id, rev, WITHIN)
                assert arrived is not None, f"event {i} written on node A did not reach node B within {WITHIN} s"
            # and node B's writes reach node A the same way
            entity_id, rev = await _create_device(cluster.nodes[1], cluster.token, "pump-b")
            assert await readers[0].wait_for(entity_id, rev, WITHIN) is not None
            for reader in readers:
                # node B's reader gets node B's own write by its own wake-up, not by the notice just checked
                assert await reader.wait_for(entity_id, rev, WITHIN) is not None
                assert reader.out_of_step == 0, reader.out_of_step_examples
                assert reader.protocol_errors == []
                assert len(reader.events) == 6
        finally:
            for reader in readers:
                await reader.close()


async def test_a_listener_cut_off_catches_up_on_what_it_missed_once_it_is_back(tmp_path: Path) -> None:
    """Node B connects as a role of its own. Its listening connection is killed while the role may not log in,
    so it cannot listen again; an event written on node A meanwhile sends a notice that B never hears. Once
    the role may log in again, B listens again and reads what it missed, with no notice and no poll."""
    role = f"medstream_node_b_{uuid.uuid4().hex[:8]}"
    admin = await _admin_conn()
    await admin.execute(f'CREATE ROLE "{role}" LOGIN SUPERUSER')
    try:
        async with running_cluster(tmp_path, count=1, extra_args=("--dispatcher-poll-seconds", SLOW_POLL)) as cluster:
            database = cluster.database_url.rsplit("/", 1)[1]
            url_b = f"postgresql://{role}@{PG_HOST}:{PG_PORT}/{database}"
            log_dir = tmp_path / "node-b"
            log_dir.mkdir()
            extra = ("--dispatcher-poll-seconds", SLOW_POLL)
            async with running_nodes(url_b, 1, log_dir, ADMIN_LOGIN, ADMIN_PASSWORD, extra) as (node_b,):
                await _catch_up_after_a_cut(cluster, node_b, admin, database, role)
    finally:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role)
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


async def _catch_up_after_a_cut(
    cluster: Cluster, node_b: Node, admin: asyncpg.Connection, database: str, role: str
) -> None:
    node_a = cluster.nodes[0]
    reader_a = EventReader("A", node_a.url, cluster.token)
    reader_b = EventReader("B", node_b.url, await login(node_b.url, ADMIN_LOGIN, ADMIN_PASSWORD))
    await reader_a.open()
    await reader_b.open()
    try:
        (listener,) = await _wait_listening(database, role, 1)
        await admin.execute(f'ALTER ROLE "{role}" NOLOGIN')
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", listener)
        await _gone(database, role)

        missed_id, missed_rev = await _create_device(node_a, cluster.token, "written-while-b-was-deaf")
        assert await reader_a.wait_for(missed_id, missed_rev, WITHIN) is not None  # committed and numbered
        # B heard no notice and polls once a minute: the event waits for B's listener.
        assert await reader_b.wait_for(missed_id, missed_rev, 1.0) is None
        assert await _listeners(database, role) == []

        await admin.execute(f'ALTER ROLE "{role}" LOGIN')
        assert await reader_b.wait_for(missed_id, missed_rev, WITHIN) is not None, "no catch-up after reconnecting"
        (again,) = await _wait_listening(database, role, 1)
        assert again != listener

        # Listening again: the next write comes by its notice.
        entity_id, rev = await _create_device(node_a, cluster.token, "after-the-cut")
        assert await reader_b.wait_for(entity_id, rev, WITHIN) is not None
        assert [e.entity_id for e in reader_b.events] == [missed_id, entity_id]
        assert reader_b.out_of_step == 0 and reader_b.protocol_errors == []
    finally:
        await reader_a.close()
        await reader_b.close()


async def _gone(database: str, role: str) -> None:
    deadline = time.monotonic() + WITHIN
    while await _listeners(database, role):
        assert time.monotonic() < deadline, "the terminated listener is still there"
        await asyncio.sleep(0.05)


async def _committed_transactions(database: str) -> int:
    conn = await _admin_conn()  # on another database: its own transactions are not counted
    try:
        return int(await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", database))
    finally:
        await conn.close()


# It counts the transactions of idle nodes over a window: on a machine busy with other tests, the nodes' start-up
# writes (and their statistics, which PostgreSQL may flush up to 10 s late) spill into that window.
@pytest.mark.exclusive
async def test_idle_nodes_make_few_transactions(tmp_path: Path) -> None:
    """Two idle nodes with the default settings: their dispatchers poll once a second, the session watch
    reads every 5 s and the listening connections are checked every 30 s, so about 2.5 transactions a
    second in all (a poll every 5 ms was about 180 a second per node)."""
    async with running_cluster(tmp_path, count=2) as cluster:
        database = cluster.database_url.rsplit("/", 1)[1]
        await asyncio.sleep(3)  # past the start's writes and the statistics' flush (at most 1 s behind)
        before, started = await _committed_transactions(database), time.monotonic()
        await asyncio.sleep(8)
        after, elapsed = await _committed_transactions(database), time.monotonic() - started
        per_second = (after - before) / elapsed
        print(f"two idle nodes: {after - before} transactions in {elapsed:.1f} s ({per_second:.1f}/s)")
        assert per_second < 8, f"{per_second:.1f} transactions/s for two idle nodes"


async def test_a_burst_of_commits_shares_one_notice_sent_after_them(tmp_path: Path) -> None:
    """With a notice interval of a minute: a first write's notice goes out at once; 49 writes committed next
    are owed one notice, not 49, and it goes out when the node closes (as after a command-line write)."""
    async with database_url_for("postgresql", tmp_path) as url:
        heard: list[int] = []
        listening = await asyncpg.connect(url)
        await listening.add_listener(CHANNEL, lambda _conn, pid, _channel, _payload: heard.append(pid))
        database = Database(url, pool_size=4, notify_interval=60.0)
        await database.migrate()
        backend = database.backend
        assert isinstance(backend, PostgreSQLBackend)
        repository = EntityRepository(database)
        devices = KIND_BY_NAME["MedicalDevice"]
        try:
            await repository.create_or_modify(devices, [MedicalDevice(name="first")], ADMIN)
            await _wait_until(lambda: len(heard) == 1)
            await asyncio.gather(
                *(repository.create_or_modify(devices, [MedicalDevice(name=f"pump-{i}")], ADMIN) for i in range(49))
            )
            await asyncio.sleep(0.5)  # room for more notices, were the burst not coalesced
            assert len(heard) == 1
            assert backend.wakeups.notices_sent == 1
        finally:
            await database.close()
        await _wait_until(lambda: len(heard) == 2)
        await asyncio.sleep(0.2)
        await listening.close()
        assert len(heard) == 2, "the burst's commits were not told once, after them, at close"


async def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WITHIN
    while not condition():
        assert time.monotonic() < deadline, "not within the wait"
        await asyncio.sleep(0.02)


async def test_a_node_is_woken_by_the_other_nodes_notices_not_by_its_own(tmp_path: Path) -> None:
    async with database_url_for("postgresql", tmp_path) as url:
        database = Database(url, pool_size=2)
        await database.migrate()
        backend = database.backend
        assert isinstance(backend, PostgreSQLBackend)
        heard: list[int] = []
        witness = await asyncpg.connect(url)  # another listener: the node's own notice has gone out to all
        await witness.add_listener(CHANNEL, lambda _conn, pid, _channel, _payload: heard.append(pid))
        woken: list[float] = []
        try:
            backend.listen(lambda: woken.append(time.monotonic()))
            await _wait_until(lambda: len(woken) == 1)  # connected: the catch-up read
            backend.wakeups.committed()
            await _wait_until(lambda: len(heard) == 1)
            await asyncio.sleep(0.3)  # the node's listener got its own notice too
            assert len(woken) == 1

            await witness.execute("SELECT pg_notify($1, '')", CHANNEL)  # another node's
            await _wait_until(lambda: len(woken) == 2)
        finally:
            await witness.close()
            await database.close()


class _StallingProxy:
    """A TCP relay to PostgreSQL whose connections made so far can be stalled: bytes stop flowing both ways
    while the sockets stay open, as on a link that died without a word (a half-open connection)."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections = 0
        self._stalled: set[int] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._never = asyncio.Event()

    async def __aenter__(self) -> _StallingProxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()

    def stall_all(self) -> None:
        self._stalled = set(range(self._connections))

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        number = self._connections
        self._connections += 1
        server_reader, server_writer = await asyncio.open_connection(PG_HOST, PG_PORT)
        self._writers += [client_writer, server_writer]

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                if number in self._stalled:
                    await self._never.wait()  # held for good
                sink.write(data)
                await sink.drain()
            sink.close()

        await asyncio.gather(
            pump(client_reader, server_writer), pump(server_reader, client_writer), return_exceptions=True
        )


async def test_a_listening_connection_that_dies_without_a_word_is_found_by_its_check_and_replaced(
    tmp_path: Path,
) -> None:
    async with database_url_for("postgresql", tmp_path) as url, _StallingProxy() as proxy:
        database = url.rsplit("/", 1)[1]
        through_proxy = f"postgresql://{PG_USER}@127.0.0.1:{proxy.port}/{database}"
        connections = Autocommit(url, size=1, server_settings={})
        wakeups = Wakeups(
            through_proxy,
            connections,
            server_settings={},
            notify_interval=0.005,
            check_interval=0.2,
            statement_timeout=1.0,
        )
        woken: list[float] = []
        notifier = await asyncpg.connect(url)
        try:
            wakeups.start(lambda: woken.append(time.monotonic()))
            await _wait_until(lambda: len(woken) == 1)
            (first,) = await _listeners(database)

            proxy.stall_all()  # no end is heard: only the check can tell
            await _wait_until(lambda: len(woken) == 2)  # listening again, and the catch-up read
            (second,) = [pid for pid in await _listeners(database) if pid != first]

            await notifier.execute("SELECT pg_notify($1, '')", CHANNEL)
            await _wait_until(lambda: len(woken) == 3)
            assert second != first
        finally:
            await notifier.close()
            await wakeups.close()
            await connections.close()
