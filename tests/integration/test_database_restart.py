"""A PostgreSQL restart under load: nodes retry and recover; no callback is lost or repeated, no position reused.

PostgreSQL only. It restarts the local cluster (`pg_ctlcluster ... restart`), as an operator would.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from medstream.errors import MedstreamError, NotFoundError
from medstream.model import MedicalDevice
from medstream.sdk import MedTechApi, SubscriptionEvent, SubscriptionOptions
from tests.conftest import (
    ADMIN_LOGIN,
    ADMIN_PASSWORD,
    IN_CI,
    PG_HOST,
    PG_PORT,
    PG_USER,
    database_url_for,
    terminate_medstream_backends,
)
from tests.integration.events_support import node

# It restarts the PostgreSQL cluster every other test of the machine uses: it runs while none runs.
pytestmark = pytest.mark.exclusive

PG_CTLCLUSTER = shutil.which("pg_ctlcluster")
CLUSTER_VERSIONS = sorted(p.name for p in Path("/etc/postgresql").iterdir()) if Path("/etc/postgresql").is_dir() else []


async def _restart_postgresql() -> None:
    version = CLUSTER_VERSIONS[0]
    process = await asyncio.create_subprocess_exec(
        "pg_ctlcluster",
        "--skip-systemctl-redirect",
        version,
        "main",
        "restart",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    for _ in range(100):
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            connection = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
            await connection.close()
            return
        await asyncio.sleep(0.1)
    raise AssertionError("PostgreSQL did not come back after the restart")


async def _api(url: str) -> MedTechApi:
    return await MedTechApi.builder().with_url(url).with_username(ADMIN_LOGIN).with_password(ADMIN_PASSWORD).build()


async def test_a_database_restart_loses_no_event_repeats_none_and_reuses_no_position(tmp_path: Path) -> None:
    if PG_CTLCLUSTER is None or not CLUSTER_VERSIONS:
        if IN_CI:
            pytest.fail("pg_ctlcluster is needed to restart PostgreSQL (CI=true)")
        pytest.skip("no local PostgreSQL cluster to restart (pg_ctlcluster)")
    async with (
        database_url_for("postgresql", tmp_path) as database_url,
        node(database_url) as a,
        node(database_url) as b,
    ):
        subscriber, writer = await _api(a.url), await _api(b.url)
        received: list[tuple[int, str, str]] = []
        wanted = [0]  # how many events the test is waiting for, once it knows
        caught_up = asyncio.Event()

        def on_event(device: MedicalDevice, event: SubscriptionEvent[MedicalDevice]) -> None:
            received.append((event.seq, str(device.id), str(device.rev)))
            if wanted[0] and len(received) >= wanted[0]:
                caught_up.set()

        connection = await subscriber.medical_device_api.subscribe_to_medical_device_events(
            ["CREATE"],
            None,
            on_event,
            SubscriptionOptions(connection_retry_interval_ms=100, connection_max_retry=30),
        )
        confirmed: list[str] = []  # writes whose call succeeded
        uncertain: list[str] = []  # writes whose call failed: stored and delivered, or absent, never half
        stop = asyncio.Event()

        async def write() -> None:
            while not stop.is_set():
                device_id = str(uuid.uuid4())
                try:
                    await writer.medical_device_api.create_or_modify_medical_device(
                        MedicalDevice(id=device_id, name="pump")
                    )
                    confirmed.append(device_id)
                except MedstreamError:
                    uncertain.append(device_id)
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.01)

        writing = asyncio.create_task(write())
        await asyncio.sleep(1.0)
        await _restart_postgresql()
        await asyncio.sleep(2.0)  # the nodes reconnect and the writer goes on
        stop.set()
        await writing
        connection_to_db = await asyncpg.connect(database_url.replace("postgresql://", "postgres://"))
        try:
            rows = await connection_to_db.fetch(
                "SELECT seq, entity_id, rev FROM outbox WHERE entity_type = 'MedicalDevice' ORDER BY seq"
            )
        finally:
            await connection_to_db.close()
        logged = [(int(r["seq"]), str(r["entity_id"]), str(r["rev"])) for r in rows]
        wanted[0] = len(logged)
        if len(received) < len(logged):
            await asyncio.wait_for(caught_up.wait(), 30)
        await asyncio.sleep(0.3)  # nothing more (no duplicate) arrives
        print(f"\n{len(confirmed)} writes confirmed, {len(uncertain)} failed during the restart; {len(logged)} events")
        assert received == logged  # each exactly once, in order, and each seq with the content the log holds
        stored = {entity_id for _, entity_id, _ in logged}
        assert set(confirmed) <= stored
        assert len(confirmed) > 0
        for device_id in uncertain:  # a failed write is whole or absent: its entity exists iff its event does
            try:
                await writer.medical_device_api.get_medical_device(device_id)
                exists = True
            except NotFoundError:
                exists = False
            assert exists == (device_id in stored)
        await connection.close()
        await subscriber.close()
        await writer.close()


async def test_pooled_connections_killed_between_transactions_are_replaced_without_failing_a_call(
    tmp_path: Path,
) -> None:
    """No ping before each checkout: a transaction that finds its pooled connection dead runs again on a new one,
    so neither the write nor the read after the kill fails, and the write is stored once."""
    from medstream.store.database import Database
    from medstream.store.schema import server_keys

    async with database_url_for("postgresql", tmp_path) as database_url:
        database = Database(database_url, pool_size=2)
        await database.migrate()
        try:
            # Two connections in the pool, both idle now.
            await asyncio.gather(*(database.ping() for _ in range(2)))
            assert await terminate_medstream_backends(database_url) >= 1

            def insert(conn: Any) -> None:
                conn.execute(server_keys.insert().values(name="k-after-kill", value="v"))

            await database.run_write(insert)
            stored = "SELECT count(*) FROM server_keys WHERE name = 'k-after-kill'"
            count = await database.run_read(lambda conn: conn.exec_driver_sql(stored).scalar())
            assert count == 1
        finally:
            await database.close()
