"""An event message the SDK cannot read (a corrupt log row, a server that breaks the protocol) is said to its
subscription's `on_error` and passed over: the subscription goes on with the events after it. Failing the
connection instead would resume before the message and meet it again, without end."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from medstream.errors import MedstreamError
from medstream.model import Patient
from medstream.sdk.connection import SubscriptionEvent
from tests.integration.raw_events import WAIT, dedicated_server


async def test_an_event_message_that_cannot_be_read_is_an_error_and_the_events_after_it_arrive(
    tmp_path: Path,
) -> None:
    async with dedicated_server(tmp_path) as server:
        api = await server.admin_api()
        arrived: list[tuple[int, str | None]] = []
        errors: list[BaseException] = []
        reconnections: list[int] = []
        event_arrived = asyncio.Event()

        def on_event(patient: Patient, event: SubscriptionEvent[Patient]) -> None:
            arrived.append((event.seq, patient.first_name))
            event_arrived.set()

        async def next_arrival() -> None:
            await asyncio.wait_for(event_arrived.wait(), WAIT)
            event_arrived.clear()

        try:
            connection = await api.patient_api.subscribe_to_patient_events(["CREATE"], None, on_event)
            connection.on_error(errors.append).on_reconnecting(lambda attempt: reconnections.append(attempt))
            await api.patient_api.create_or_modify_patient(Patient(first_name="before"))
            await next_arrival()
            (before_seq, _name) = arrived[0]

            # A log row whose document is not JSON, as a damaged database or another writer could leave it.
            path = server.database_url.removeprefix("sqlite:///")
            with sqlite3.connect(path, isolation_level=None) as db:
                db.execute("BEGIN IMMEDIATE")
                (last,) = db.execute("SELECT last_seq FROM outbox_tail WHERE id = 1").fetchone()
                assert last == before_seq
                db.execute(
                    "INSERT INTO outbox (seq, entity_type, entity_id, rev, event_type, document, readers, created)"
                    " VALUES (?, 'Patient', 'broken', '1-0', 'CREATE', '{\"id\": \"broken\", \"firstName', '[]', 0)",
                    (last + 1,),
                )
                db.execute("UPDATE outbox_tail SET last_seq = ? WHERE id = 1", (last + 1,))
                db.execute("COMMIT")
            await api.patient_api.create_or_modify_patient(Patient(first_name="after"))
            await next_arrival()

            assert arrived == [(before_seq, "before"), (before_seq + 2, "after")]
            assert len(errors) == 1 and isinstance(errors[0], MedstreamError)
            assert f"event {before_seq + 1}: the message cannot be read" in str(errors[0])
            assert reconnections == [] and connection.is_connected
        finally:
            await api.close()
