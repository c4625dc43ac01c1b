"""Patient events as an unchanged cardinal-sdk (Python 3.12) receives them from a server.

    python patients.py '{"url": ..., "login": ..., "password": ..., "storage": <key store directory>,
                         "encryption": "server" or "default"}'

Run by tests/integration/test_icure_cardinal.py in cardinal's own virtual environment; `encryption` as for
guide.py (connect.py). The client subscribes to
the patients of its data owner (CREATE and UPDATE: cardinal has no DELETE, iCure deletes by an update setting
`deletionDate`), writes probe patients until one comes back (the subscription is then live on the server), then
creates Arya Stark, changes her note and deletes her. It prints one JSON object, on its last line: `events`, the
notifications about Arya in order, decrypted (`rev`, `note`, `deleted`), and `written`, the revs it wrote.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from datetime import timedelta
from typing import Any

# connect first: Python's hashlib, which it loads, crashes the process (SIGSEGV) once cardinal's native
# library is loaded.
from connect import connect, run_script

# isort: split
from cardinal_sdk import CardinalSdk
from cardinal_sdk.filters import PatientFilters
from cardinal_sdk.model import DecryptedPatient, SubscriptionEventType
from cardinal_sdk.subscription.EntitySubscriptionEvent import EntitySubscriptionEvent

Type = EntitySubscriptionEvent.Type
PROBE_SECONDS = 6.0
MAX_PROBES = 5


def _next(subscription: Any, seconds: float) -> Any:
    return subscription.wait_for_event_blocking(timedelta(seconds=seconds))


def _create(sdk: CardinalSdk, first_name: str, note: str) -> DecryptedPatient:
    patient = DecryptedPatient(id=str(uuid.uuid4()), first_name=first_name, last_name="Stark", note=note)
    return sdk.patient.create_patient_blocking(sdk.patient.with_encryption_metadata_blocking(patient))


def run(config: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {"events": [], "other_events": []}
    sdk = connect(config)
    owner = sdk.user.get_current_user_blocking().healthcare_party_id
    subscription = sdk.patient.subscribe_to_events_blocking(
        {SubscriptionEventType.Create, SubscriptionEventType.Update}, PatientFilters.all_patients_for_data_owner(owner)
    )
    first = _next(subscription, 20)
    result["connected"] = first.type.value if first is not None else None

    settled, probes = False, 0
    while not settled and probes < MAX_PROBES:
        probe = _create(sdk, "Probe", "probe")
        probes += 1
        deadline = time.monotonic() + PROBE_SECONDS
        while not settled and (left := deadline - time.monotonic()) > 0:
            event = _next(subscription, left)
            if event is None:
                break
            settled = event.type == Type.EntityNotification and event.entity.id == probe.id
    result["settled"] = settled
    while _next(subscription, 0.5) is not None:  # late probe events
        pass

    arya = _create(sdk, "Arya", "A girl has no name")
    changed = sdk.patient.modify_patient_blocking(dataclasses.replace(arya, note="Valar morghulis"))
    deleted = sdk.patient.delete_patient_by_id_blocking(changed.id, changed.rev)
    result["written"] = [arya.rev, changed.rev, deleted.rev]
    deadline = time.monotonic() + 20
    while (left := deadline - time.monotonic()) > 0 and len(result["events"]) < 3:
        event = _next(subscription, left)
        if event is None:
            break
        if event.type != Type.EntityNotification:
            result["other_events"].append(event.type.value)
        elif event.entity.id == arya.id:
            [patient] = sdk.patient.decrypt_blocking([event.entity])
            result["events"].append(
                {"rev": patient.rev, "note": patient.note, "deleted": patient.deletion_date is not None}
            )
    subscription.close()
    return result


if __name__ == "__main__":
    run_script(run)
