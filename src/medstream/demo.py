"""The seed scenario: a server on the embedded SQLite default, driven through the SDK, printing what happens,
and what the server stored of the data sample (ciphertext) next to what the callback received."""

from __future__ import annotations

import asyncio
import contextlib
import secrets

from medstream import __version__
from medstream.filters.builders import DataSampleFilter
from medstream.model import CodingReference, Content, DataSample, HealthcareProfessional, Patient, User
from medstream.sdk import MedTechApi
from medstream.sdk.connection import SubscriptionEvent, SubscriptionOptions
from medstream.server.runner import start_server
from medstream.server.settings import Settings

DEMO_ADMIN_LOGIN = "admin"
DEMO_ADMIN_PASSWORD = "medstream-demo-admin"


def say(who: str, text: str) -> None:
    print(f"[{who:>6}] {text}", flush=True)


async def run_scenario(url: str, admin_login: str, admin_password: str) -> None:
    """What a newcomer's application does: a professional and their user, then (as them) a subscription, a
    patient and two data samples, of which the subscription sees one."""
    async with (
        await MedTechApi.builder()
        .with_url(url)
        .with_username(admin_login)
        .with_password(admin_password)
        .build() as admin
    ):
        say("sdk", f"logged in as {admin_login} (admin)")
        doctor = await admin.healthcare_professional_api.create_or_modify_healthcare_professional(
            HealthcareProfessional(first_name="Jane", last_name="Doe", speciality="general practice")
        )
        say("sdk", f"created healthcare professional Dr. {doctor.first_name} {doctor.last_name} ({doctor.id})")
        login, password = f"jane.doe.{secrets.token_hex(3)}", secrets.token_urlsafe(12)
        await admin.user_api.create_or_modify_user(
            User(login=login, name="Jane Doe", healthcare_party_id=doctor.id, password=password)
        )
        say("sdk", f"created user {login}, acting as Dr. Doe")

    async with await MedTechApi.builder().with_url(url).with_username(login).with_password(password).build() as api:
        owner = await api.get_data_owner()
        say("sdk", f"logged in as {login}; data owner: {owner.type} {owner.data_owner.id}")
        await subscribe_and_write(api)


async def subscribe_and_write(api: MedTechApi) -> None:
    """The iCure guide "Subscribing to iCure events": one callback for the labelled data sample only."""
    arrived = asyncio.Event()

    def on_event(sample: DataSample, event: SubscriptionEvent[DataSample]) -> None:
        content = sample.content["en"].string_value if "en" in sample.content else None
        say("event", f"{event.type} DataSample {sample.id} at seq {event.seq}: content {content!r}")
        arrived.set()

    connection = await api.data_sample_api.subscribe_to_data_sample_events(
        ["CREATE"],
        await DataSampleFilter(api).for_self().by_label_code_filter("IC-TEST", "TEST").build(),
        on_event,
        SubscriptionOptions(),
    )
    connection.on_connected(lambda: say("event", "connected")).on_closed(
        lambda reason: say("event", f"closed ({reason})")
    )
    say("sdk", "subscribed to DataSample CREATE events labelled IC-TEST/TEST")
    patient = await api.patient_api.create_or_modify_patient(
        Patient(first_name="John", last_name="Snow", note="Winter is coming")
    )
    say("sdk", f"created patient {patient.first_name} {patient.last_name}, note {patient.note!r} ({patient.id})")
    assert patient.id is not None
    unlabelled = await api.data_sample_api.create_or_modify_data_sample_for(
        patient.id, DataSample(content={"en": Content(string_value="Not for the subscription")})
    )
    say("sdk", f"created data sample without the label ({unlabelled.id}): no event for it")
    sample = await api.data_sample_api.create_or_modify_data_sample_for(
        patient.id,
        DataSample(
            labels={CodingReference(type="IC-TEST", code="TEST")},
            content={"en": Content(string_value="Hello world")},
        ),
    )
    say("sdk", f"created data sample labelled IC-TEST/TEST, content 'Hello world' ({sample.id}, rev {sample.rev})")
    await asyncio.wait_for(arrived.wait(), timeout=10)
    # What the server holds: the document as stored, read past the SDK's decryption.
    stored = await api.transport.request("GET", f"/rest/v1/data-samples/{sample.id}")
    ciphertext = str(stored.get("encryptedSelf"))
    say(
        "server",
        f"stored the data sample with content {stored.get('content')!r} and encryptedSelf {ciphertext[:44]}...",
    )
    await connection.close()


async def run_demo(settings: Settings, *, keep_serving: bool) -> None:
    admin_login = settings.admin_login or DEMO_ADMIN_LOGIN
    admin_password = settings.admin_password or DEMO_ADMIN_PASSWORD
    settings = settings.model_copy(update={"admin_login": admin_login, "admin_password": admin_password})
    server, task, url = await start_server(settings)
    say("server", f"Medstream {__version__} at {url} on {settings.database_url}; API docs at {url}/docs")
    try:
        await run_scenario(url, admin_login, admin_password)
        if keep_serving:
            say("server", f"still serving; log in as {admin_login} / {admin_password}. Ctrl-C stops it.")
            await task
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
