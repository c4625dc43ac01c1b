"""docs/deploy.md's nginx configuration, run by real nginx in front of two real node processes.

The configuration is read from the doc itself, so the doc cannot drift from what is tested.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from medstream.model import MedicalDevice
from medstream.sdk import MedTechApi, SubscriptionEvent, SubscriptionOptions
from tests.conftest import ADMIN_LOGIN, ADMIN_PASSWORD, IN_CI, database_url_for, unused_port

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def _doc_nginx_config() -> str:
    text = (ROOT / "docs" / "deploy.md").read_text()
    match = re.search(r"```nginx\n(.*?)```", text, re.S)
    assert match, "docs/deploy.md has no nginx block"
    return match.group(1)


def _node(port: int, database_url: str) -> subprocess.Popen[bytes]:
    medstream = Path(sys.executable).with_name("medstream")
    return subprocess.Popen(
        [
            str(medstream),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--database",
            database_url,
            "--admin-login",
            ADMIN_LOGIN,
            "--admin-password",
            ADMIN_PASSWORD,
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _nginx(binary: str, config: Path, prefix: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([binary, "-c", str(config), "-p", str(prefix)], stderr=subprocess.DEVNULL)


async def _healthy(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                if (await client.get(url + "/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never became healthy")


@pytest.fixture
def nginx_binary() -> Iterator[str]:
    if NGINX is None:
        if IN_CI:
            pytest.fail("nginx is not installed (CI=true: .ci/run installs it)")
        pytest.skip("nginx is not installed: apt-get install nginx-light")
    yield NGINX


@pytest_asyncio.fixture
async def cluster(nginx_binary: str, tmp_path: Path) -> AsyncIterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """Two nodes on one fresh PostgreSQL database, behind nginx configured as the doc says."""
    async with database_url_for("postgresql", tmp_path) as database_url:
        ports = [unused_port(), unused_port()]
        nodes = [_node(ports[0], database_url)]
        try:
            await _healthy(f"http://127.0.0.1:{ports[0]}")  # the first migrates; then the second starts
            nodes.append(_node(ports[1], database_url))
            await _healthy(f"http://127.0.0.1:{ports[1]}")
            proxy_port = unused_port()
            snippet = (
                _doc_nginx_config()
                .replace("127.0.0.1:8081", f"127.0.0.1:{ports[0]}")
                .replace("127.0.0.1:8082", f"127.0.0.1:{ports[1]}")
                .replace("127.0.0.1:8080", f"127.0.0.1:{proxy_port}")
            )
            temp = tmp_path / "nginx"
            temp.mkdir()
            config = temp / "nginx.conf"
            config.write_text(
                f"daemon off; pid {temp}/nginx.pid; error_log {temp}/error.log warn;\n"
                "events { worker_connections 1024; }\n"
                f"http {{ access_log off; client_body_temp_path {temp}/body; proxy_temp_path {temp}/proxy;\n"
                f"fastcgi_temp_path {temp}/fcgi; uwsgi_temp_path {temp}/uwsgi; scgi_temp_path {temp}/scgi;\n"
                f"{snippet}\n}}\n"
            )
            proxy = _nginx(nginx_binary, config, temp)
            try:
                await _healthy(f"http://127.0.0.1:{proxy_port}")
                yield f"http://127.0.0.1:{proxy_port}", nodes
            finally:
                proxy.send_signal(signal.SIGQUIT)
                proxy.wait(10)
        finally:
            for node in nodes:
                if node.poll() is None:
                    node.kill()
                node.wait(10)


async def test_rest_and_events_through_nginx_survive_a_killed_node(
    cluster: tuple[str, list[subprocess.Popen[bytes]]],
) -> None:
    proxy, nodes = cluster
    api = await MedTechApi.builder().with_url(proxy).with_username(ADMIN_LOGIN).with_password(ADMIN_PASSWORD).build()
    received: list[tuple[int, str]] = []
    enough = asyncio.Event()
    wanted = 10

    def on_event(device: MedicalDevice, event: SubscriptionEvent[MedicalDevice]) -> None:
        received.append((event.seq, str(device.id)))
        if len(received) >= wanted:
            enough.set()

    connection = await api.medical_device_api.subscribe_to_medical_device_events(
        ["CREATE"], None, on_event, SubscriptionOptions(connection_retry_interval_ms=100, connection_max_retry=20)
    )
    written = [
        (await api.medical_device_api.create_or_modify_medical_device(MedicalDevice(name=f"d{i}"))).id for i in range(5)
    ]
    nodes[0].send_signal(signal.SIGKILL)  # whichever node held the socket or took writes, one is gone now
    nodes[0].wait(10)
    for i in range(5, wanted):
        written.append((await api.medical_device_api.create_or_modify_medical_device(MedicalDevice(name=f"d{i}"))).id)
    await asyncio.wait_for(enough.wait(), 30)
    await asyncio.sleep(0.3)
    assert [device_id for _, device_id in received] == written
    assert [seq for seq, _ in received] == sorted({seq for seq, _ in received})
    async with httpx.AsyncClient() as client:
        assert (await client.get(proxy + "/health")).json()["database"]["status"] == "ok"
    await connection.close()
    await api.close()
