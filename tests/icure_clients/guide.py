"""iCure's guide "Subscribing to iCure events", run by an unchanged cardinal-sdk (Python 3.12) against a server.

    python guide.py '{"url": ..., "login": ..., "password": ..., "storage": <key store directory>,
                      "encryption": "server" or "default"}'

Run by tests/integration/test_icure_cardinal.py in cardinal's own virtual environment (it imports only connect.py,
cardinal and the standard library). `encryption` (connect.py): "server", the default, encrypts what the server
requires encrypted besides cardinal's defaults; "default" keeps cardinal's default configuration. It prints one
JSON object, on its last line, saying what it saw (with `error` and what it saw until then if it failed):

- `patient_id`: the id of the patient it creates;
- `patient`: the patient as the client read it back, decrypted (John Snow, 'Winter is coming');
- `connected`: the subscription's lifecycle events before the first write that counts;
- `probes`: how many probe services were written until one came back as an event. The client reports
  Connected before its subscription frame has reached the server (the protocol has no acknowledgement) and
  sometimes loses its first socket and reconnects 2 s then 4 s later: a probe's event proves the subscription
  is live on the server, so that what follows cannot be lost to that;
- `events`: every service event after the probes, decrypted: the untagged service must bring none, the tagged
  one exactly one, 'Hello world';
- `modified_events`: the service events after the client modifies the tagged contact (cardinal's
  `modify_contact`), its service's content changed to 'Hello again', decrypted: exactly one, that service's;
  `modified_contact`: the contact's new rev and its services' contents as the server answered;
- `matched`, `read_back`: the services the subscription's filter selects, as a client re-reads them after a
  reconnect, and the two services read back by id, decrypted;
- `close_reason`: the subscription's close reason after `close()`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import traceback
import uuid
from datetime import timedelta
from typing import Any

# connect first: Python's hashlib, which it loads, crashes the process (SIGSEGV) once cardinal's native
# library is loaded.
from connect import connect

# isort: split
from cardinal_sdk import CardinalSdk
from cardinal_sdk.filters import ServiceFilters
from cardinal_sdk.model import CodeStub, DecryptedContact, DecryptedContent, DecryptedPatient, DecryptedService
from cardinal_sdk.subscription.EntitySubscriptionEvent import EntitySubscriptionEvent

TAG = CodeStub(id="IC-TEST|TEST|1", type="IC-TEST", code="TEST", version="1")
PROBE_SECONDS = 6.0
MAX_PROBES = 5
QUIET_SECONDS = 3.0

Type = EntitySubscriptionEvent.Type


def _service(text: str, tagged: bool) -> DecryptedService:
    return DecryptedService(
        id=str(uuid.uuid4()),
        tags={TAG} if tagged else set(),
        content={"en": DecryptedContent(string_value=text)},
    )


def _write_contact(sdk: CardinalSdk, patient: Any, service: DecryptedService) -> DecryptedContact:
    contact = DecryptedContact(id=str(uuid.uuid4()), opening_date=20240101120000, services=[service])
    return sdk.contact.create_contact_blocking(sdk.contact.with_encryption_metadata_blocking(contact, patient))


def _next(subscription: Any, seconds: float) -> Any:
    return subscription.wait_for_event_blocking(timedelta(seconds=seconds))


def _content(sdk: CardinalSdk, event: Any) -> dict[str, Any]:
    service = sdk.contact.decrypt_service_blocking(event.entity)
    return {
        "id": service.id,
        "contactId": service.contact_id,
        "tags": sorted(f"{t.type}|{t.code}" for t in service.tags),
        "content": {lang: c.string_value for lang, c in service.content.items()},
    }


def run(config: dict[str, Any], result: dict[str, Any]) -> None:
    result.update(connected=[], events=[], other_events=[])
    sdk = connect(config)
    user = sdk.user.get_current_user_blocking()
    result["user"] = {"login": user.login, "healthcarePartyId": user.healthcare_party_id}

    result["patient_id"] = str(uuid.uuid4())
    patient = sdk.patient.create_patient_blocking(
        sdk.patient.with_encryption_metadata_blocking(
            DecryptedPatient(id=result["patient_id"], first_name="John", last_name="Snow", note="Winter is coming")
        )
    )
    result["patient"] = {"id": patient.id, "firstName": patient.first_name, "lastName": patient.last_name,
                         "note": patient.note, "rev": patient.rev}  # fmt: skip

    subscription = sdk.contact.subscribe_to_service_create_or_update_events_blocking(
        ServiceFilters.by_tag_and_value_date_for_self("IC-TEST", "TEST")
    )
    first = _next(subscription, 20)
    result["connected"].append(first.type.value if first is not None else None)

    # Settle: write tagged probes until one comes back, so that the subscription is live on the server.
    result["probes"] = 0
    settled = False
    while not settled and result["probes"] < MAX_PROBES:
        probe = _service("probe", tagged=True)
        _write_contact(sdk, patient, probe)
        result["probes"] += 1
        deadline = time.monotonic() + PROBE_SECONDS
        while not settled and (left := deadline - time.monotonic()) > 0:
            event = _next(subscription, left)
            if event is None:
                break
            if event.type == Type.EntityNotification:
                settled = event.entity.id == probe.id
            else:
                result["connected"].append(event.type.value)
    result["settled"] = settled
    # Events of earlier probes that arrive late are not the guide's.
    while (late := _next(subscription, 0.5)) is not None:
        result["other_events"].append(late.type.value)

    untagged = _service("Not for you", tagged=False)
    tagged = _service("Hello world", tagged=True)
    untagged_contact = _write_contact(sdk, patient, untagged)
    tagged_contact = _write_contact(sdk, patient, tagged)
    result["written"] = {
        "untagged": untagged.id,
        "tagged": tagged.id,
        "tagged_contact": tagged_contact.id,
        "untagged_contact": untagged_contact.id,
        "tagged_contact_rev": tagged_contact.rev,
        "tagged_contact_services": [s.id for s in tagged_contact.services],
    }
    event = _next(subscription, 20)
    while event is not None:
        if event.type == Type.EntityNotification:
            result["events"].append(_content(sdk, event))
        else:
            result["other_events"].append(event.type.value)
        event = _next(subscription, QUIET_SECONDS)

    # The tagged contact modified: its service's content changes; the subscriber receives that service's UPDATE.
    hello_again = {"en": DecryptedContent(string_value="Hello again")}
    again = dataclasses.replace(tagged_contact.services[0], content=hello_again)
    modified = sdk.contact.modify_contact_blocking(dataclasses.replace(tagged_contact, services=[again]))
    result["modified_contact"] = {
        "rev": modified.rev,
        "services": [{lang: c.string_value for lang, c in s.content.items()} for s in modified.services],
    }
    result["modified_events"] = []
    event = _next(subscription, 20)
    while event is not None:
        if event.type == Type.EntityNotification:
            result["modified_events"].append(_content(sdk, event))
        else:
            result["other_events"].append(event.type.value)
        event = _next(subscription, QUIET_SECONDS)

    # What a client re-reads after a reconnect (iCure's socket cannot resume): the services the filter selects.
    matched = sdk.contact.match_services_by_blocking(ServiceFilters.by_tag_and_value_date_for_self("IC-TEST", "TEST"))
    result["matched"] = sorted(matched)
    found = sdk.contact.get_services_blocking([tagged.id, untagged.id])
    result["read_back"] = {s.id: {lang: c.string_value for lang, c in s.content.items()} for s in found}

    subscription.close()
    reason = subscription.get_close_reason()
    result["close_reason"] = reason.value if reason is not None else None


def main() -> None:
    config = json.loads(sys.argv[1])
    result: dict[str, Any] = {}
    try:
        run(config, result)
    except Exception as exc:  # the test shows what failed, with the traceback and what was seen until then
        result.update(error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
