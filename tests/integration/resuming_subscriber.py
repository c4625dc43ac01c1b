"""A subscriber application that survives its own restarts: `python -m tests.integration.resuming_subscriber URL
STORE` subscribes to patient creations and appends, for each event, a line "<patient id> <position>" to STORE.

The line holds the event and the position to resume after it, so both are stored at once (one `write` to a file
opened for appending: a killed process leaves either the whole line or none). On start it resumes after the
position of STORE's last line; on a first start it stores the position the subscription starts from ("-" for
the id), so that nothing written after the first start is missed even if it is killed before its first event.
A gap is stored as a line "gap <position>". It prints "subscribed" once the server has acknowledged it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from medstream.model import Patient
from medstream.sdk import Gap, MedTechApi, Position, SubscriptionEvent, SubscriptionOptions
from tests.conftest import ADMIN_LOGIN, ADMIN_PASSWORD


def stored_position(store: Path) -> Position | None:
    """The position of the last line of `store`, if it has one."""
    if not store.exists():
        return None
    lines = store.read_text().splitlines()
    return Position.parse(lines[-1].split(" ")[1]) if lines else None


async def main(url: str, store: Path) -> None:
    start = stored_position(store)
    fd = os.open(store, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def keep(what: str, position: Position | None) -> None:
        os.write(fd, f"{what} {position}\n".encode())

    def on_event(patient: Patient, event: SubscriptionEvent[Patient]) -> None:
        keep(str(patient.id), event.position)

    def on_gap(gap: Gap) -> None:
        keep("gap", gap.resume_from)

    api = await MedTechApi.builder().with_url(url).with_username(ADMIN_LOGIN).with_password(ADMIN_PASSWORD).build()
    options = SubscriptionOptions(connection_retry_interval_ms=100, connection_max_retry=20)
    connection = await api.patient_api.subscribe_to_patient_events(
        ["CREATE"], None, on_event, options, resume_from=start
    )
    connection.on_gap(on_gap)
    if start is None:
        keep("-", connection.position)
    print("subscribed", flush=True)
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
