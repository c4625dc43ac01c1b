"""Patient events as an unchanged cardinal-sdk (Python 3.12) receives them from a server.

    python patients.py '{"url": ..., "login": ..., "password": ..., "storage": <key store directory>,
                         "encryption": "server" or "default"}'

Run by tests/integration/test_icure_cardinal.py in cardinal's own virtual environment; `encryption` as for
guide.py (connect.py). The client subscribes to
the patients of its data owner (CREATE and UPDATE: cardinal has no DELETE, iCure deletes by an update setting
`deletionDate`), writes probe patients until one comes back (the subscription is then live on the server), then
creates Arya Stark, changes her note and deletes her. It prints one JSON object, on its last line: `events`, the
notifications about Arya in order, decrypted (`rev`, `note`, `deleted`), and `written`, the revs it wrote.

A second subscription, on the same client, takes a combinator: cardinal's `difference(union(women, born in the
sixties), women schooled as knights)`, all for self. Cersei (a woman), Ned (born in 1965), Robert (neither) and
Brienne (a woman schooled as a knight) are created, then Cersei's note changed: `combined` lists the
notifications it receives, in order, as `[first name, rev]`, and `combined_written` the revs of Cersei's creation
and change and of Ned's creation.
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
from cardinal_sdk.filters import PatientFilters, difference, union
from cardinal_sdk.model import DecryptedPatient, Gender, SubscriptionEventType
from cardinal_sdk.subscription.EntitySubscriptionEvent import EntitySubscriptionEvent

Type = EntitySubscriptionEvent.Type
PROBE_SECONDS = 6.0
MAX_PROBES = 5
QUIET_SECONDS = 3.0


def _next(subscription: Any, seconds: float) -> Any:
    return subscription.wait_for_event_blocking(timedelta(seconds=seconds))


def _create(sdk: CardinalSdk, first_name: str, note: str, **fields: Any) -> DecryptedPatient:
    patient = DecryptedPatient(id=str(uuid.uuid4()), first_name=first_name, last_name="Stark", note=note, **fields)
    return sdk.patient.create_patient_blocking(sdk.patient.with_encryption_metadata_blocking(patient))


def _settle(sdk: CardinalSdk, subscriptions: list[Any]) -> bool:
    """Write probe patients (women born in 1965, whom every subscription here selects) until one comes back on
    every subscription: they are then live on the server (the protocol does not acknowledge them)."""
    for _ in range(MAX_PROBES):
        probe = _create(sdk, "Probe", "probe", gender=Gender.Female, date_of_birth=19650101)
        waiting = list(subscriptions)
        deadline = time.monotonic() + PROBE_SECONDS
        for subscription in subscriptions:
            while subscription in waiting and (left := deadline - time.monotonic()) > 0:
                event = _next(subscription, left)
                if event is None:
                    break
                if event.type == Type.EntityNotification and event.entity.id == probe.id:
                    waiting.remove(subscription)
        if not waiting:
            for subscription in subscriptions:  # late probe events
                while _next(subscription, 0.5) is not None:
                    pass
            return True
    return False


def run(config: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {"events": [], "other_events": []}
    sdk = connect(config)
    owner = sdk.user.get_current_user_blocking().healthcare_party_id
    subscription = sdk.patient.subscribe_to_events_blocking(
        {SubscriptionEventType.Create, SubscriptionEventType.Update}, PatientFilters.all_patients_for_data_owner(owner)
    )
    women = PatientFilters.by_gender_education_profession_for_self(Gender.Female)
    sixties = PatientFilters.by_date_of_birth_between_for_self(19600101, 19691231)
    knights = PatientFilters.by_gender_education_profession_for_self(Gender.Female, education="knight")
    combined = sdk.patient.subscribe_to_events_blocking(
        {SubscriptionEventType.Create, SubscriptionEventType.Update}, difference(union(women, sixties), knights)
    )
    first = _next(subscription, 20)
    result["connected"] = first.type.value if first is not None else None
    combined_first = _next(combined, 20)
    result["combined_connected"] = combined_first.type.value if combined_first is not None else None
    result["settled"] = _settle(sdk, [subscription, combined])

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

    cersei = _create(sdk, "Cersei", "Hear me roar", gender=Gender.Female, date_of_birth=19900101)
    ned = _create(sdk, "Ned", "Winter is coming", gender=Gender.Male, date_of_birth=19650101)
    _create(sdk, "Robert", "Ours is the fury", gender=Gender.Male, date_of_birth=19900101)
    _create(sdk, "Brienne", "Oathkeeper", gender=Gender.Female, date_of_birth=19900101, education="knight")
    queen = sdk.patient.modify_patient_blocking(dataclasses.replace(cersei, note="Queen"))
    result["combined_written"] = [cersei.rev, queen.rev, ned.rev]
    result["combined"] = []
    event = _next(combined, 20)
    while event is not None:
        if event.type != Type.EntityNotification:
            result["other_events"].append(event.type.value)
        else:
            [patient] = sdk.patient.decrypt_blocking([event.entity])
            result["combined"].append([patient.first_name, patient.rev])
        event = _next(combined, QUIET_SECONDS if len(result["combined"]) >= 3 else 20)
    combined.close()
    subscription.close()
    return result


if __name__ == "__main__":
    run_script(run)
