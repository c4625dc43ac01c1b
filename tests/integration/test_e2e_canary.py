"""The server never sees encrypted content, on SQLite and PostgreSQL with encryption required: a distinct marker in
every encrypted field of every kind that has them (nested values included) is driven through the whole SDK
surface (create, batch create, update, sharing with a second professional, revoking with key rotation, filter,
match queries, filters on encrypted values that the SDK must refuse to send, subscriptions of
both professionals receiving CREATE, UPDATE and DELETE, a socket the server closes reopened and resumed, a stream
closed and resumed from a stored position, delete), then looked for, in every form, in everything the server
touched (`canary.py`): traffic both ways, its logs at debug, the database's files or dump, its tables and outbox.

The controls that make "found nowhere" mean something: each marker is in what the SDK returned and in what the
callbacks received (it was written and read back), and a marker in a clear field (a label code of each kind) is
found in the database and in the traffic (the captures hold the writes that carried the others)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from medstream.errors import ValidationError
from medstream.filters import (
    DataSampleByHealthcarePartyIdentifiersFilter,
    DataSampleFilter,
    Filter,
    HealthcareElementByHealthcarePartyIdentifiersFilter,
    HealthcareElementFilter,
    NotificationFilter,
    PatientByHealthcarePartyIdentifiersFilter,
    PatientByHealthcarePartyNameContainsFuzzyFilter,
    PatientByHealthcarePartySsinsFilter,
    PatientFilter,
)
from medstream.model import (
    Address,
    CodingReference,
    Contact,
    Content,
    DataSample,
    Entity,
    HealthcareElement,
    HealthcareProfessional,
    Identifier,
    Measure,
    Notification,
    Patient,
    PersonName,
    Property,
    Telecom,
    User,
)
from medstream.model.common import PropertyType, TypedValue
from medstream.model.encrypted_fields import ENCRYPTED_FIELDS
from medstream.model.notification import NotificationStatus, NotificationType
from medstream.model.patient import Partnership, PatientHealthCareParty
from medstream.sdk import MedTechApi
from medstream.sdk.connection import Connection, SubscriptionOptions
from medstream.sdk.entity_api import EntityApi
from tests.integration.canary import CanaryServer, canary_server, find, new_marker
from tests.integration.events_support import ALL_TYPES, Calls, Recorder

FREE_TEXT = " é ✓ \U0001f600"  # so that a marker's UTF-8, JSON-escaped and UTF-16 forms all differ
CANARY = "CANARY"  # the label type of every entity written here
# The encrypted fields that hold no text (an enum, a date as an integer): no marker fits them.
NOT_TEXT = {("Patient", "personalStatus"), ("Patient", "dateOfDeath")}
# A marker's place `Kind.field...` or `Kind[which].field...`: its kind and top-level field.
_FIELD = re.compile(r"^([A-Za-z]+)(?:\[\w*\])?\.([A-Za-z]+)")


@dataclass
class Markers:
    """The secret markers by the field that carries them (`Kind.field.path`), and the clear ones by kind."""

    secret: dict[str, str] = field(default_factory=dict)
    clear: dict[str, str] = field(default_factory=dict)

    def __call__(self, where: str) -> str:
        """A new secret marker for the encrypted field `where`."""
        assert where not in self.secret, f"one marker per field: {where}"
        self.secret[where] = new_marker(where) + FREE_TEXT
        return self.secret[where]

    def label(self, kind: str) -> CodingReference:
        """The clear label of `kind`: its code is a marker the server must see."""
        self.clear.setdefault(kind, new_marker(f"{kind}.label"))
        return CodingReference(type=CANARY, code=self.clear[kind])


def _patient(m: Markers) -> Patient:
    ssin, last_name = m("Patient.ssin"), m("Patient.lastName")
    return Patient(
        labels={m.label("Patient")},
        first_name=m("Patient.firstName"),
        last_name=last_name,
        names=[
            PersonName(
                last_name=m("Patient.names[].lastName"),
                first_names=[m("Patient.names[].firstNames[]")],
                prefix=[m("Patient.names[].prefix[]")],
                text=m("Patient.names[].text"),
            )
        ],
        company_name=m("Patient.companyName"),
        addresses=[
            Address(
                street=m("Patient.addresses[].street"),
                house_number=m("Patient.addresses[].houseNumber"),
                postal_code=m("Patient.addresses[].postalCode"),
                city=m("Patient.addresses[].city"),
                country=m("Patient.addresses[].country"),
                note=m("Patient.addresses[].note"),
                telecoms=[
                    Telecom(
                        telecom_number=m("Patient.addresses[].telecoms[].telecomNumber"),
                        telecom_description=m("Patient.addresses[].telecoms[].telecomDescription"),
                    )
                ],
            )
        ],
        note=m("Patient.note"),
        administrative_note=m("Patient.administrativeNote"),
        ssin=ssin,
        identifiers=[Identifier(system=m("Patient.identifiers[].system"), value=m("Patient.identifiers[].value"))],
        properties=[
            Property(
                type=PropertyType(identifier=m("Patient.properties[].type.identifier")),
                typed_value=TypedValue(string_value=m("Patient.properties[].typedValue.stringValue")),
            )
        ],
        partnerships=[Partnership(type=m("Patient.partnerships[].type"), partner_id=m("Patient.partnerships[].id"))],
        patient_health_care_parties=[PatientHealthCareParty(healthcare_party_id=m("Patient.patientHealthCareParties"))],
        patient_professions=[CodingReference(type="PROFESSION", code=m("Patient.patientProfessions[].code"))],
        languages=[m("Patient.languages[]")],
        nationality=m("Patient.nationality"),
        race=m("Patient.race"),
        ethnicity=m("Patient.ethnicity"),
        maiden_name=m("Patient.maidenName"),
        spouse_name=m("Patient.spouseName"),
        partner_name=m("Patient.partnerName"),
        place_of_birth=m("Patient.placeOfBirth"),
        place_of_death=m("Patient.placeOfDeath"),
        parameters={"canary": [m("Patient.parameters.canary[]")]},
        external_id=m("Patient.externalId"),
        alias=m("Patient.alias"),
        civility=m("Patient.civility"),
        date_of_birth=19700101,
    )


def _data_sample(m: Markers, prefix: str = "DataSample") -> DataSample:
    nested = DataSample(
        labels={m.label("DataSample")},
        content={"en": Content(string_value=m(f"{prefix}.content.nl.compoundValue[].content.en.stringValue"))},
        comment=m(f"{prefix}.content.nl.compoundValue[].comment"),
        qualified_links={"canary": {"key": m(f"{prefix}.content.nl.compoundValue[].qualifiedLinks")}},
        canvases_ids={m(f"{prefix}.content.nl.compoundValue[].canvasesIds[]")},
        transaction_id=m(f"{prefix}.content.nl.compoundValue[].transactionId"),
        identifiers=[Identifier(system="urn:canary", value=m(f"{prefix}.content.nl.compoundValue[].identifiers"))],
    )
    return DataSample(
        labels={m.label("DataSample")},
        content={
            "en": Content(string_value=m(f"{prefix}.content.en.stringValue")),
            "fr": Content(
                measure_value=Measure(
                    value=72.5,
                    unit=m(f"{prefix}.content.fr.measureValue.unit"),
                    comment=m(f"{prefix}.content.fr.measureValue.comment"),
                )
            ),
            "nl": Content(compound_value=[nested]),
        },
        comment=m(f"{prefix}.comment"),
        qualified_links={"canary": {"key": m(f"{prefix}.qualifiedLinks.canary.key")}},
        canvases_ids={m(f"{prefix}.canvasesIds[]")},
        transaction_id=m(f"{prefix}.transactionId"),
        identifiers=[Identifier(system="urn:canary", value=m(f"{prefix}.identifiers[].value"))],
    )


def _healthcare_element(m: Markers) -> HealthcareElement:
    return HealthcareElement(
        labels={m.label("HealthcareElement")},
        description=m("HealthcareElement.description"),
        note=m("HealthcareElement.note"),
        identifiers=[Identifier(system="urn:canary", value=m("HealthcareElement.identifiers[].value"))],
    )


def _contact(m: Markers) -> Contact:
    return Contact(
        labels={m.label("Contact")},
        opening_date=20240101120000,
        description=m("Contact.description"),
        location=m("Contact.location"),
        identifiers=[Identifier(system="urn:canary", value=m("Contact.identifiers[].value"))],
    )


def _notification(m: Markers) -> Notification:
    return Notification(
        labels={m.label("Notification")},
        type=NotificationType.OTHER,
        status=NotificationStatus.pending,
        properties=[Property(typed_value=TypedValue(string_value=m("Notification.properties[].typedValue")))],
    )


@dataclass
class Seen:
    """The JSON of everything the SDK returned to the application, and of every entity its callbacks received."""

    returned: list[str] = field(default_factory=list)
    recorders: list[Recorder] = field(default_factory=list)

    def keep(self, *entities: Entity | Iterable[Entity]) -> None:
        for item in entities:
            for entity in [item] if isinstance(item, Entity) else item:
                self.returned.append(orjson.dumps(entity.to_json_dict()).decode())

    def recorder(self) -> Recorder:
        self.recorders.append(Recorder())
        return self.recorders[-1]

    def delivered(self) -> str:
        return "\n".join(orjson.dumps(e.entity.to_json_dict()).decode() for r in self.recorders for e in r.events)


async def _professional(admin: MedTechApi, server: CanaryServer) -> tuple[MedTechApi, str]:
    hcp = await admin.healthcare_professional_api.create_or_modify_healthcare_professional(
        HealthcareProfessional(first_name="Ann", last_name=uuid.uuid4().hex[:8])
    )
    login, password = f"hcp-{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
    await admin.user_api.create_or_modify_user(User(login=login, healthcare_party_id=hcp.id, password=password))
    assert hcp.id is not None
    return await server.api(login, password), hcp.id


def _has(recorder: Recorder, event_type: str, entity_id: str | None) -> bool:
    return any(e.type.value == event_type and e.entity.id == entity_id for e in recorder.events)


def _clear_filters(api: MedTechApi, owner: str, m: Markers) -> list[tuple[EntityApi[Any], Filter]]:
    """Filters that read encrypted values in clear (an ssin, a name, identifiers), built as nodes, each with the
    sub-API it goes to."""

    def identifiers(where: str) -> tuple[Identifier, ...]:
        return (Identifier(system="urn:canary", value=m.secret[where]),)

    ssin, name = m.secret["Patient.ssin"], m.secret["Patient.lastName"]
    return [
        (api.patient_api, PatientByHealthcarePartySsinsFilter(healthcare_party_id=owner, ssins=frozenset({ssin}))),
        (
            api.patient_api,
            PatientByHealthcarePartyNameContainsFuzzyFilter(healthcare_party_id=owner, search_string=name),
        ),
        (
            api.patient_api,
            PatientByHealthcarePartyIdentifiersFilter(
                healthcare_party_id=owner, identifiers=identifiers("Patient.identifiers[].value")
            ),
        ),
        (
            api.data_sample_api,
            DataSampleByHealthcarePartyIdentifiersFilter(
                healthcare_party_id=owner, identifiers=identifiers("DataSample.identifiers[].value")
            ),
        ),
        (
            api.healthcare_element_api,
            HealthcareElementByHealthcarePartyIdentifiersFilter(
                healthcare_party_id=owner, identifiers=identifiers("HealthcareElement.identifiers[].value")
            ),
        ),
    ]


async def _drive_the_sdk(server: CanaryServer, m: Markers, seen: Seen) -> None:
    """Every SDK call an application makes with encrypted content, by Alice and Bob, two professionals."""
    admin = await server.admin_api()
    (alice, alice_id), (bob, bob_id) = await _professional(admin, server), await _professional(admin, server)
    await admin.close()
    by_ds_label = await DataSampleFilter(bob).by_label_code_filter(CANARY, m.label("DataSample").code).build()
    bob_events = seen.recorder()
    quick_retry = SubscriptionOptions(connection_retry_interval_ms=100)
    bob_connection = await bob.data_sample_api.subscribe_to_data_sample_events(
        ALL_TYPES, by_ds_label, bob_events, quick_retry
    )
    bob_reconnections = Calls()
    bob_connection.on_reconnecting(bob_reconnections)
    kinds = ("Patient", "DataSample", "Contact", "HealthcareElement", "Notification")
    alice_events = {kind: seen.recorder() for kind in kinds}
    subscriptions: dict[str, Connection[Any]] = {
        "Patient": await alice.patient_api.subscribe_to_patient_events(ALL_TYPES, None, alice_events["Patient"]),
        "DataSample": await alice.data_sample_api.subscribe_to_data_sample_events(
            ALL_TYPES, None, alice_events["DataSample"]
        ),
        "Contact": await alice.contact_api.subscribe_to_contact_events(ALL_TYPES, None, alice_events["Contact"]),
        "HealthcareElement": await alice.healthcare_element_api.subscribe_to_healthcare_element_events(
            ALL_TYPES, None, alice_events["HealthcareElement"]
        ),
        "Notification": await alice.notification_api.subscribe_to_notification_events(
            ALL_TYPES, None, alice_events["Notification"]
        ),
    }

    # Create, batch create.
    patient = await alice.patient_api.create_or_modify_patient(_patient(m))
    assert patient.id is not None
    sample, second = await alice.data_sample_api.create_or_modify_data_samples_for(
        patient.id, [_data_sample(m), DataSample(labels={m.label("DataSample")}, comment=m("DataSample[1].comment"))]
    )
    element = await alice.healthcare_element_api.create_or_modify_healthcare_element(_healthcare_element(m))
    notification = await alice.notification_api.create_or_modify_notification(_notification(m))
    contact = await alice.contact_api.create_or_modify_contact(_contact(m))
    seen.keep(patient, sample, second, element, notification, contact)
    await server.collect()  # the database while SQLite's WAL still holds these pages

    # Update; share with Bob, who reads, writes, creates and deletes his own; revoke (the key rotates).
    assert sample.id is not None
    updated = await alice.data_sample_api.create_or_modify(
        sample.model_copy(update={"comment": m("DataSample.comment@2")})
    )
    shared = await alice.data_sample_api.give_access_to(updated, bob_id, "WRITE")
    shared_patient = await alice.patient_api.give_access_to(patient, bob_id, "READ")
    read_by_bob = await bob.data_sample_api.get_data_sample(sample.id)
    patient_read_by_bob = await bob.patient_api.get_patient(patient.id)
    written_by_bob = await bob.data_sample_api.create_or_modify(
        read_by_bob.model_copy(update={"comment": m("DataSample.comment@bob")})
    )
    bobs_own = await bob.data_sample_api.create_or_modify_data_sample_for(
        patient.id, _data_sample(m, "DataSample[bob]")
    )
    bobs_tombstone = await bob.data_sample_api.delete_data_sample(str(bobs_own.id))
    seen.keep(
        updated, shared, shared_patient, read_by_bob, patient_read_by_bob, written_by_bob, bobs_own, bobs_tombstone
    )
    await bob_events.wait_until(
        lambda _: (
            _has(bob_events, "UPDATE", sample.id)
            and any(e.entity.rev == written_by_bob.rev for e in bob_events.events)
            and _has(bob_events, "CREATE", bobs_own.id)
            and _has(bob_events, "DELETE", bobs_own.id)
        ),
        "Bob's UPDATE (shared, then his write), CREATE and DELETE",
    )
    # Bob's socket is closed by the server (his new password ends his sessions, 4001): the SDK logs in again,
    # reconnects and resumes after the last event it delivered, so the write made meanwhile reaches him once.
    bob_user = await bob.user_api.get_logged_user()
    await bob.user_api.create_or_modify_user(bob_user.model_copy(update={"password": f"pw-{uuid.uuid4().hex}"}))
    await bob_reconnections.wait_count(1, "Bob's socket closed by the server")
    current = await alice.data_sample_api.get_data_sample(sample.id)
    while_bob_reconnects = await alice.data_sample_api.create_or_modify(
        current.model_copy(update={"comment": m("DataSample.comment@bob-reconnecting")})
    )
    await bob_events.wait_until(
        lambda events: any(e.entity.rev == while_bob_reconnects.rev for e in events), "the write made meanwhile"
    )
    assert len(bob_events.of(sample.id)) == len({e.seq for e in bob_events.of(sample.id)}), "each event once"
    seen.keep(while_bob_reconnects)
    rotated = await alice.data_sample_api.revoke_access(sample.id, bob_id)
    after_revoke = await alice.data_sample_api.create_or_modify(
        rotated.model_copy(update={"comment": m("DataSample.comment@revoked")})
    )
    assert bob_id not in after_revoke.readers
    seen.keep(rotated, after_revoke)

    # Queries: filter (paged), match, by ids.
    own_samples = await DataSampleFilter(alice).for_self().by_label_code_filter(CANARY, m.clear["DataSample"]).build()
    rows = [row async for row in (await alice.data_sample_api.filter_data_samples_by(own_samples, limit=1)).all_rows()]
    assert {row.id for row in rows} == {sample.id, second.id}
    assert sorted(await alice.data_sample_api.match_data_samples_by(own_samples)) == sorted([sample.id, second.id])
    seen.keep(rows, await alice.data_sample_api.get_data_samples([str(sample.id), str(second.id)]))
    by_ids = await PatientFilter(alice).by_ids([patient.id]).build()
    assert [p.id for p in (await alice.patient_api.filter_patients_by(by_ids)).rows] == [patient.id]
    assert await alice.patient_api.match_patients_by(by_ids) == [patient.id]
    elements = await HealthcareElementFilter(alice).by_label_code_filter(CANARY, m.clear["HealthcareElement"]).build()
    notifications = await NotificationFilter(alice).with_type(NotificationType.OTHER).build()
    seen.keep(
        (await alice.patient_api.filter_patients_by(by_ids)).rows,
        (await alice.healthcare_element_api.filter_healthcare_elements_by(elements)).rows,
        (await alice.notification_api.filter_notifications_by(notifications)).rows,
    )

    # A filter that reads an encrypted field in clear is refused before it leaves the SDK: sent, it would show the
    # server the very value that encryption hides from it.
    for api, clear_filter in _clear_filters(alice, alice_id, m):
        with pytest.raises(ValidationError, match="blind-index tokens"):
            await api.filter_by(clear_filter)
        with pytest.raises(ValidationError, match="blind-index tokens"):
            await api.match_by(clear_filter)
        with pytest.raises(ValidationError, match="blind-index tokens"):
            await api.subscribe_to_events(ALL_TYPES, clear_filter, Recorder())

    # Resume: Alice's data-sample stream is closed at a stored position; what is written meanwhile comes after it.
    await alice_events["DataSample"].wait_until(
        lambda events: any(e.entity.rev == after_revoke.rev for e in events), "Alice's UPDATE after the revoke"
    )
    stored = str(alice_events["DataSample"].events[-1].position)
    await subscriptions.pop("DataSample").close()
    while_away = await alice.data_sample_api.create_or_modify_data_sample_for(
        patient.id, DataSample(labels={m.label("DataSample")}, comment=m("DataSample[away].comment"))
    )
    tombstones = await alice.data_sample_api.delete_data_samples([str(sample.id), str(second.id)])
    resumed_events = seen.recorder()
    subscriptions["DataSample"] = await alice.data_sample_api.subscribe_to_data_sample_events(
        ALL_TYPES, None, resumed_events, resume_from=stored
    )
    await resumed_events.wait_until(
        lambda _: (
            _has(resumed_events, "CREATE", while_away.id)
            and _has(resumed_events, "DELETE", sample.id)
            and _has(resumed_events, "DELETE", second.id)
        ),
        "the CREATE and DELETEs written while the stream was closed",
    )
    assert resumed_events.events[0].entity.id == while_away.id, "the first event after the stored position"

    # Delete the rest.
    seen.keep(
        while_away,
        tombstones,
        await alice.healthcare_element_api.delete_healthcare_element(str(element.id)),
        await alice.notification_api.delete_notification(str(notification.id)),
        await alice.contact_api.delete_contact(str(contact.id)),
        await alice.patient_api.delete_patient(patient.id),
    )
    for kind, entity_id in (
        ("HealthcareElement", element.id),
        ("Notification", notification.id),
        ("Contact", contact.id),
        ("Patient", patient.id),
    ):
        await alice_events[kind].wait_until(
            lambda _, k=kind, i=entity_id: _has(alice_events[k], "DELETE", i), f"{kind} DELETE"
        )
    assert not any(e.entity.rev == after_revoke.rev for e in bob_events.events), "revoked: no event for Bob"
    for connection in [bob_connection, *subscriptions.values()]:
        await connection.close()
    await alice.close()
    await bob.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_no_encrypted_marker_reaches_the_server_in_any_form(backend: str, tmp_path: Path) -> None:
    m, seen = Markers(), Seen()
    async with canary_server(backend, tmp_path, require_encryption=True) as server:
        await _drive_the_sdk(server, m, seen)
    captures = server.captures

    returned, delivered = "\n".join(seen.returned), seen.delivered()
    not_returned = [where for where, marker in m.secret.items() if marker not in returned]
    not_delivered = [where for where, marker in m.secret.items() if marker not in delivered]
    assert not_returned == [] and not_delivered == [], "each marker was written, read back and delivered decrypted"

    leaks = {where: find(marker, captures) for where, marker in m.secret.items()}
    assert {where: places for where, places in leaks.items() if places} == {}

    # Every encrypted field of every kind carries markers, but those that cannot hold text.
    covered = {(match[1], match[2]) for match in map(_FIELD.match, m.secret) if match}
    expected = {(kind, name) for kind, names in ENCRYPTED_FIELDS.items() for name in names}
    assert covered == expected - NOT_TEXT

    database = "sqlite file" if backend == "sqlite" else "pg_dump"
    table = "sqlite table" if backend == "sqlite" else "postgresql table public."
    for kind, marker in m.clear.items():
        places = {found.rsplit(": ", 1)[0] for found in find(marker, captures)}
        assert any(database in p and "(stopped)" in p for p in places), (kind, places)
        assert any(table in p and "outbox" in p for p in places), (kind, places)
        assert any(p.startswith("tap") and p.endswith("request") for p in places), (kind, places)
        assert any(p.startswith("tap") and p.endswith("response") for p in places), (kind, places)
        assert any(p.startswith("tap") and "WEBSOCKET" in p and "sent" in p for p in places), (kind, places)
