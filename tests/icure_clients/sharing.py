"""Two professionals, A and B, each with an unchanged cardinal-sdk (Python 3.12), sharing through a server.

    python sharing.py '{"url": ..., "a": {"login", "password", "storage"}, "b": {"login", "password", "storage"}}'

Run by tests/integration/test_icure_cardinal.py in cardinal's own virtual environment. A writes a patient and a
contact holding a tagged service; B, subscribed to the services tagged IC-TEST/TEST it may read (and settled
with probes of its own), can read neither and receives no event. A then shares the patient and the contact with
B (cardinal's own `share_with`), and writes two contacts more: one made for B too, one for itself only. It prints
one JSON object, on its last line:

- `before`: what B read of A's patient, contact and service before the share (None: not found or refused);
- `after`: the same, decrypted, after the share;
- `events`: every service event B received after its probes, decrypted (B gets the shared contact's service,
  whose security metadata the share changed, and the contact made for it; not the one A kept);
- `matched`: the services B's filter selects after the share; `written`: the ids A wrote.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

# connect first: Python's hashlib, which it loads, crashes the process (SIGSEGV) once cardinal's native
# library is loaded.
from connect import connect, run_script

# isort: split
from cardinal_sdk import CardinalSdk
from cardinal_sdk.filters import ServiceFilters
from cardinal_sdk.model import (
    AccessLevel,
    CodeStub,
    DecryptedContact,
    DecryptedContent,
    DecryptedPatient,
    DecryptedService,
)
from cardinal_sdk.subscription.EntitySubscriptionEvent import EntitySubscriptionEvent

TAG = CodeStub(id="IC-TEST|TEST|1", type="IC-TEST", code="TEST", version="1")
PROBE_SECONDS = 6.0
MAX_PROBES = 5
QUIET_SECONDS = 3.0

Type = EntitySubscriptionEvent.Type


def _sdk(url: str, who: dict[str, str]) -> CardinalSdk:
    """A professional's client, encrypting what the server requires (connect.py)."""
    return connect({"url": url, **who})


def _service(text: str) -> DecryptedService:
    return DecryptedService(id=str(uuid.uuid4()), tags={TAG}, content={"en": DecryptedContent(string_value=text)})


def _contact(
    sdk: CardinalSdk, patient: Any, service: DecryptedService, delegates: dict[str, AccessLevel] | None = None
) -> DecryptedContact:
    contact = DecryptedContact(id=str(uuid.uuid4()), opening_date=20240101120000, services=[service])
    with_metadata = sdk.contact.with_encryption_metadata_blocking(contact, patient, delegates=delegates or {})
    return sdk.contact.create_contact_blocking(with_metadata)


def _next(subscription: Any, seconds: float) -> Any:
    return subscription.wait_for_event_blocking(timedelta(seconds=seconds))


def _texts(service: Any) -> dict[str, Any]:
    return {lang: c.string_value for lang, c in service.content.items()}


def _attempt(call: Any) -> Any:
    """What a read gives, or None if the server refused it or found nothing."""
    try:
        return call()
    except Exception:  # cardinal raises its own error types for a 403 or 404
        return None


def _reads(sdk: CardinalSdk, patient_id: str, contact_id: str, service_id: str) -> dict[str, Any]:
    patient = _attempt(lambda: sdk.patient.get_patient_blocking(patient_id))
    contact = _attempt(lambda: sdk.contact.get_contact_blocking(contact_id))
    service = _attempt(lambda: sdk.contact.get_service_blocking(service_id))
    return {
        "patient": None if patient is None else {"lastName": patient.last_name, "note": patient.note},
        "contact": None if contact is None else [_texts(s) for s in contact.services],
        "service": None if service is None else _texts(service),
    }


def run(config: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {"events": [], "other_events": []}
    a = _sdk(config["url"], config["a"])
    b = _sdk(config["url"], config["b"])
    b_id = b.user.get_current_user_blocking().healthcare_party_id

    patient = a.patient.create_patient_blocking(
        a.patient.with_encryption_metadata_blocking(
            DecryptedPatient(id=str(uuid.uuid4()), first_name="Sansa", last_name="Stark", note="Lady of Winterfell")
        )
    )
    first = _service("Shared later")
    first_contact = _contact(a, patient, first)

    # B subscribes, and settles with probes of its own patient, before anything is shared.
    subscription = b.contact.subscribe_to_service_create_or_update_events_blocking(
        ServiceFilters.by_tag_and_value_date_for_self("IC-TEST", "TEST")
    )
    connected = _next(subscription, 20)
    result["connected"] = connected.type.value if connected is not None else None
    own = b.patient.create_patient_blocking(
        b.patient.with_encryption_metadata_blocking(DecryptedPatient(id=str(uuid.uuid4()), last_name="Probe"))
    )
    settled, probes = False, 0
    while not settled and probes < MAX_PROBES:
        probe = _service("probe")
        _contact(b, own, probe)
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

    result["before"] = _reads(b, patient.id, first_contact.id, first.id)
    result["matched_before"] = sorted(
        b.contact.match_services_by_blocking(ServiceFilters.by_tag_and_value_date_for_self("IC-TEST", "TEST"))
    )

    shared_patient = a.patient.share_with_blocking(b_id, patient)
    a.contact.share_with_blocking(b_id, first_contact)
    for_b, kept = _service("For both of us"), _service("Mine only")
    for_b_contact = _contact(a, shared_patient, for_b, {b_id: AccessLevel.Read})
    kept_contact = _contact(a, shared_patient, kept)
    result["written"] = {
        "patient": patient.id,
        "first": first.id,
        "first_contact": first_contact.id,
        "for_b": for_b.id,
        "for_b_contact": for_b_contact.id,
        "kept": kept.id,
        "kept_contact": kept_contact.id,
    }

    event = _next(subscription, 20)
    while event is not None:
        if event.type == Type.EntityNotification:
            service = b.contact.decrypt_service_blocking(event.entity)
            result["events"].append({"id": service.id, "contactId": service.contact_id, "content": _texts(service)})
        else:
            result["other_events"].append(event.type.value)
        event = _next(subscription, QUIET_SECONDS)

    result["after"] = _reads(b, patient.id, first_contact.id, first.id)
    result["kept_read"] = _reads(b, patient.id, kept_contact.id, kept.id)["service"]
    result["matched"] = sorted(
        b.contact.match_services_by_blocking(ServiceFilters.by_tag_and_value_date_for_self("IC-TEST", "TEST"))
    )
    subscription.close()
    return result


if __name__ == "__main__":
    run_script(run)
