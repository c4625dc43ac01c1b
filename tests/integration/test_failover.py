"""Several server URLs: the SDK moves to another node when one is down, and a subscription resumes there."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from medstream.model import MedicalDevice
from medstream.sdk import MedTechApi, SubscriptionEvent, SubscriptionOptions
from medstream.server.runner import start_server
from medstream.server.settings import Settings
from tests.conftest import ADMIN_LOGIN, ADMIN_PASSWORD, database_url_for, unused_port


async def _admin(urls: list[str]) -> MedTechApi:
    return await MedTechApi.builder().with_urls(urls).with_username(ADMIN_LOGIN).with_password(ADMIN_PASSWORD).build()


def _settings(url: str) -> Settings:
    return Settings(port=0, database_url=url, admin_login=ADMIN_LOGIN, admin_password=ADMIN_PASSWORD)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_calls_skip_an_unreachable_node(backend: str, tmp_path: Path) -> None:
    async with database_url_for(backend, tmp_path) as url:
        server, task, live = await start_server(_settings(url))
        try:
            api = await _admin([f"http://127.0.0.1:{unused_port()}", live])
            device = await api.medical_device_api.create_or_modify_medical_device(MedicalDevice(name="pump"))
            assert (await api.medical_device_api.get_medical_device(str(device.id))).name == "pump"
            assert api.transport.base_url == live
            await api.close()
        finally:
            server.should_exit = True
            await task


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_subscription_fails_over_to_another_node_and_loses_nothing(backend: str, tmp_path: Path) -> None:
    async with database_url_for(backend, tmp_path) as url:
        node_a, task_a, url_a = await start_server(_settings(url))
        node_b, task_b, url_b = await start_server(_settings(url))
        try:
            writer = await _admin([url_b])
            subscriber = await _admin([url_a, url_b])
            received: list[tuple[int, str]] = []
            moved, all_in = asyncio.Event(), asyncio.Event()

            def on_event(device: MedicalDevice, event: SubscriptionEvent[MedicalDevice]) -> None:
                received.append((event.seq, str(device.id)))
                if len(received) >= 6:
                    all_in.set()

            connection = await subscriber.medical_device_api.subscribe_to_medical_device_events(
                ["CREATE"],
                None,
                on_event,
                SubscriptionOptions(connection_retry_interval_ms=50, connection_max_retry=10),
            )
            connection.on_reconnecting(lambda: moved.set())
            written = [
                (await writer.medical_device_api.create_or_modify_medical_device(MedicalDevice(name=f"d{i}"))).id
                for i in range(3)
            ]
            node_a.should_exit = True  # node A goes away (1001): the subscriber must move to B
            await task_a
            await asyncio.wait_for(moved.wait(), 10)
            for i in range(3, 6):
                written.append(
                    (await writer.medical_device_api.create_or_modify_medical_device(MedicalDevice(name=f"d{i}"))).id
                )
            await asyncio.wait_for(all_in.wait(), 15)
            await asyncio.sleep(0.3)  # nothing more (no duplicate) arrives
            assert [device_id for _, device_id in received] == written
            assert [seq for seq, _ in received] == sorted({seq for seq, _ in received})
            assert subscriber.transport.base_url == url_b
            await subscriber.close()
            await writer.close()
        finally:
            node_a.should_exit = node_b.should_exit = True
            await asyncio.gather(task_a, task_b)
