"""Health elements through an unchanged cardinal-sdk (Python 3.12): two professionals, A and B, each with a client.

    python health_elements.py '{"url": ..., "a": {"login", "password", "storage"}, "b": {"login", "password",
                                "storage"}}'

Run by tests/integration/test_icure_cardinal.py in cardinal's own virtual environment. A subscribes twice to its
health elements (all of them, "for self"; those tagged IC-TEST/TEST, "by tag for self"), B once (all of its own);
each subscription is settled with probes (health elements of its data owner's own, written until one comes back).
A then writes a patient's health elements: an untagged one (`untagged`), and a tagged one (`tagged`) that it
modifies and deletes. B reads neither and matches neither; A shares the untagged one with B (cardinal's own
`share_with`), after which B reads it, decrypted, and finds it with its filter. It prints one JSON object, on its
last line:

- `events`: by subscription (`a_all`, `a_tagged`, `b_all`), the notifications about `untagged` and `tagged` in the
  order received, decrypted by the subscriber: `{"id", "rev", "note", "deleted"}`. A subscription's events come in
  the order of the writes, so the absence of an event before the last one expected is the absence of that event;
- `before` and `after`: what B read of `untagged` (and of `tagged`) before and after the share (None: not found);
- `matched_before`, `matched_after`, `filtered_after`: the ids of A's health elements B's filter selects, and the
  notes of those it decrypts;
- `written`: the ids and revs A wrote.
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
from cardinal_sdk.filters import HealthElementFilters
from cardinal_sdk.model import CodeStub, DecryptedHealthElement, DecryptedPatient, SubscriptionEventType
from cardinal_sdk.subscription.EntitySubscriptionEvent import EntitySubscriptionEvent

TAG = CodeStub(id="IC-TEST|TEST|1", type="IC-TEST", code="TEST", version="1")
EVENTS = {SubscriptionEventType.Create, SubscriptionEventType.Update}
PROBE_SECONDS = 6.0
MAX_PROBES = 5
EVENT_SECONDS = 20.0

Type = EntitySubscriptionEvent.Type


def _next(subscription: Any, seconds: float) -> Any:
    return subscription.wait_for_event_blocking(timedelta(seconds=seconds))


def _patient(sdk: CardinalSdk, last_name: str) -> DecryptedPatient:
    patient = DecryptedPatient(id=str(uuid.uuid4()), last_name=last_name)
    return sdk.patient.create_patient_blocking(sdk.patient.with_encryption_metadata_blocking(patient))


def _element(sdk: CardinalSdk, patient: DecryptedPatient, note: str, tagged: bool) -> DecryptedHealthElement:
    element = DecryptedHealthElement(
        id=str(uuid.uuid4()), note=note, descr=f"about {note}", tags={TAG} if tagged else set(), opening_date=20240101
    )
    with_metadata = sdk.health_element.with_encryption_metadata_blocking(element, patient)
    return sdk.health_element.create_health_element_blocking(with_metadata)


def _settle(subscriptions: list[Any], probe: Any) -> bool:
    """Probes written until each subscription has received one: it is then live on the server (cardinal reports
    `Connected` when its socket opens, before the server has its subscription)."""
    waiting, probes = list(subscriptions), 0
    while waiting and probes < MAX_PROBES:
        probe_id = probe()
        probes += 1
        deadline = time.monotonic() + PROBE_SECONDS
        for subscription in list(waiting):
            while (left := deadline - time.monotonic()) > 0:
                event = _next(subscription, left)
                if event is None:
                    break
                if event.type == Type.EntityNotification and event.entity.id == probe_id:
                    waiting.remove(subscription)
                    break
    for subscription in subscriptions:
        while _next(subscription, 0.5) is not None:  # late probe events
            pass
    return not waiting


def _collect(sdk: CardinalSdk, subscription: Any, ids: set[str], last: tuple[str, str]) -> list[dict[str, Any]]:
    """The notifications about `ids`, decrypted, up to the one with the id and rev `last` (or EVENT_SECONDS)."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + EVENT_SECONDS
    while (left := deadline - time.monotonic()) > 0:
        event = _next(subscription, left)
        if event is None:
            break
        if event.type != Type.EntityNotification:
            events.append({"other": event.type.value})
            continue
        if event.entity.id not in ids:
            continue
        [element] = sdk.health_element.decrypt_blocking([event.entity])
        events.append(
            {"id": element.id, "rev": element.rev, "note": element.note, "deleted": element.deletion_date is not None}
        )
        if (element.id, element.rev) == last:
            break
    return events


def _read(sdk: CardinalSdk, element_id: str) -> dict[str, Any] | None:
    try:
        element = sdk.health_element.get_health_element_blocking(element_id)
    except Exception:  # cardinal raises its own error types for a 404
        return None
    if element is None:
        return None
    return {"note": element.note, "descr": element.descr, "tags": sorted(t.code or "" for t in element.tags)}


def run(config: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    a = connect({"url": config["url"], **config["a"]})
    b = connect({"url": config["url"], **config["b"]})
    b_id = b.user.get_current_user_blocking().healthcare_party_id

    a_all = a.health_element.subscribe_to_events_blocking(EVENTS, HealthElementFilters.all_health_elements_for_self())
    a_tagged = a.health_element.subscribe_to_events_blocking(
        EVENTS, HealthElementFilters.by_tag_for_self("IC-TEST", "TEST")
    )
    b_all = b.health_element.subscribe_to_events_blocking(EVENTS, HealthElementFilters.all_health_elements_for_self())
    connected = [_next(s, 20) for s in (a_all, a_tagged, b_all)]
    result["connected"] = [e.type.value if e is not None else None for e in connected]

    a_patient, b_patient = _patient(a, "Stark"), _patient(b, "Probe")
    result["settled"] = [
        _settle([a_all, a_tagged], lambda: _element(a, a_patient, "probe", tagged=True).id),
        _settle([b_all], lambda: _element(b, b_patient, "probe", tagged=True).id),
    ]

    untagged = _element(a, a_patient, "Asthma", tagged=False)
    tagged = _element(a, a_patient, "Diabetes", tagged=True)
    changed = a.health_element.modify_health_element_blocking(dataclasses.replace(tagged, note="Diabetes, insulin"))
    deleted = a.health_element.delete_health_element_by_id_blocking(changed.id, changed.rev)

    all_for_self = HealthElementFilters.all_health_elements_for_self()
    ids = {untagged.id, tagged.id}
    result["before"] = {"untagged": _read(b, untagged.id), "tagged": _read(b, tagged.id)}
    result["matched_before"] = sorted(set(b.health_element.match_health_elements_by_blocking(all_for_self)) & ids)

    shared = a.health_element.share_with_blocking(b_id, untagged)
    result["written"] = {
        "untagged": untagged.id,
        "tagged": tagged.id,
        "untagged_revs": [untagged.rev, shared.rev],
        "tagged_revs": [tagged.rev, changed.rev, deleted.rev],
    }
    result["events"] = {
        "a_all": _collect(a, a_all, ids, (untagged.id, shared.rev)),
        "a_tagged": _collect(a, a_tagged, ids, (tagged.id, deleted.rev)),
        "b_all": _collect(b, b_all, ids, (untagged.id, shared.rev)),
    }
    result["after"] = {"untagged": _read(b, untagged.id), "tagged": _read(b, tagged.id)}
    result["matched_after"] = sorted(set(b.health_element.match_health_elements_by_blocking(all_for_self)) & ids)
    iterator = b.health_element.filter_health_elements_by_blocking(all_for_self)
    found = []
    while iterator.has_next_blocking():
        found.extend(e for e in iterator.next_blocking(10) if e.id in ids)
    result["filtered_after"] = sorted((e.id, e.note) for e in found)
    for subscription in (a_all, a_tagged, b_all):
        subscription.close()
    return result


if __name__ == "__main__":
    run_script(run)
