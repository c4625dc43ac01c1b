"""A data owner that lost its keys makes a new key pair, on SQLite and PostgreSQL: it reads nothing until its
counterparties answer its KEY_PAIR_UPDATE notifications, each answer (only for a key the counterparty verified)
gives back what went through the exchange data of those two, and nothing else comes back; only the two parties
of an exchange data record may modify it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from medstream.crypto import DataOwnerKeyPair, server_delegation_key
from medstream.crypto.key_pair_update import key_pair_update_notification
from medstream.errors import DecryptionError, ForbiddenError, MissingKeysError, NotFoundError
from medstream.filters import DataSampleFilter, NotificationFilter
from medstream.model import CodingReference, Content, DataSample, ExchangeData, Notification, Patient
from medstream.model.notification import NotificationStatus, NotificationType
from medstream.sdk import KeyPairUpdateOutcome, MedTechApi
from tests.conftest import Professional, ProfessionalFactory, RunningServer, serve
from tests.integration.events_support import Calls, Recorder
from tests.integration.stored_rows import read_document


@pytest_asyncio.fixture(scope="module", params=["sqlite", "postgresql"])
async def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    """A server that requires encryption: every medical field reaches it encrypted by the SDK, or is refused."""
    async with serve(request.param, tmp_path_factory.mktemp(request.param), require_encryption=True) as running:
        yield running


LABEL = CodingReference(type="IC-TEST", code="KEYS")


async def _sample(api: MedTechApi, patient_id: str, text: str) -> DataSample:
    return await api.data_sample_api.create_or_modify_data_sample_for(
        patient_id, DataSample(labels={LABEL}, content={"en": Content(string_value=text)})
    )


async def _patient(api: MedTechApi, name: str) -> Patient:
    return await api.patient_api.create_or_modify_patient(Patient(first_name=name, last_name="Snow"))


def _id(entity: DataSample | Patient | Notification) -> str:
    assert entity.id is not None
    return entity.id


async def _text(api: MedTechApi, sample_id: str) -> str | None:
    return (await api.data_sample_api.get_data_sample(sample_id)).content["en"].string_value


async def _exchange_data(owner: Professional, delegator: str, delegate: str) -> dict[str, Any]:
    """The one exchange data record from `delegator` to `delegate`, as stored."""
    found = await owner.api.exchange_data_api.filter_exchange_data_by(
        {
            "$type": "IntersectionFilter",
            "filters": [
                {"$type": "ExchangeDataByDelegatorFilter", "delegatorId": delegator},
                {"$type": "ExchangeDataByDelegateFilter", "delegateId": delegate},
            ],
        }
    )
    assert len(found.rows) == 1, found.rows
    return found.rows[0].to_json_dict()


async def _lose_keys(server: RunningServer, who: Professional) -> MedTechApi:
    """`who`'s key store deleted, then a login that refuses without the option, then one with it."""
    path = who.api.crypto.key_store_path
    await who.api.close()
    path.unlink()
    builder = MedTechApi.builder().with_url(server.url).with_username(who.login).with_password(who.password)
    with pytest.raises(MissingKeysError, match="with_new_key_pair_after_loss"):
        await builder.build()
    return await builder.with_new_key_pair_after_loss().build()


async def test_a_new_key_pair_gets_back_what_each_answering_counterparty_shared_and_nothing_else(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    alice, bob, carol = await new_professional("Alice"), await new_professional("Bob"), await new_professional("Carol")
    patient = await _patient(alice.api, "John")
    sample = await _sample(alice.api, _id(patient), "from alice")
    await alice.api.patient_api.give_access_to(patient, bob.id)
    sample = await alice.api.data_sample_api.give_access_to(sample, bob.id)
    bobs_patient = await _patient(bob.api, "Jon")
    shared_by_bob = await _sample(bob.api, _id(bobs_patient), "from bob, for alice")
    await bob.api.data_sample_api.give_access_to(shared_by_bob, alice.id)
    kept_by_bob = await _sample(bob.api, _id(bobs_patient), "bob's alone")
    carols = await _sample(carol.api, _id(await _patient(carol.api, "Arya")), "from carol")
    await carol.api.data_sample_api.give_access_to(carols, bob.id)
    assert await _text(bob.api, _id(carols)) == "from carol"
    old_key = (await bob.api.get_data_owner()).data_owner.crypto_keys[0].id

    notices = Recorder()
    alice_notices = await alice.api.notification_api.subscribe_to_notification_events(
        ["CREATE"], await NotificationFilter(alice.api).with_type(NotificationType.KEY_PAIR_UPDATE).build(), notices
    )
    renewed = await _lose_keys(server, bob)
    try:
        keys = (await renewed.get_data_owner()).data_owner.crypto_keys
        assert [k.status for k in keys] == ["RETIRED", "ACTIVE"] and keys[0].id == old_key, "kept, not wrapped for"
        new_key = keys[1].id

        # One notification per counterparty, shared with it: Alice gets it as an event and through the filter.
        await notices.wait_count(1)
        notice = notices.events[0].entity
        assert notice.type is NotificationType.KEY_PAIR_UPDATE and notice.status is NotificationStatus.pending
        assert {(i.system, i.value) for i in notice.identifiers} == {
            ("dataOwnerConcernedId", bob.id),
            ("dataOwnerConcernedPublicKeyId", new_key),
        }
        assert notice.readers == {bob.id, alice.id} and notice.encrypted_self is None
        by_filter = await NotificationFilter(carol.api).with_type(NotificationType.KEY_PAIR_UPDATE).build()
        assert [n.id for n in (await carol.api.notification_api.filter_notifications_by(by_filter)).rows] != []
        assert await renewed.crypto.notify_key_pair_update() == [], "each counterparty has its notification"

        # Nothing reads yet: every key Bob had is gone, his signing key with them.
        for entity_id in (_id(sample), _id(carols)):
            with pytest.raises(DecryptionError, match="no wrap for any of this data owner's keys"):
                await renewed.data_sample_api.get_data_sample(entity_id)
        for entity_id in (_id(shared_by_bob), _id(kept_by_bob)):
            with pytest.raises(DecryptionError, match=f"signed only by keys of {bob.id} that are not pinned"):
                await renewed.data_sample_api.get_data_sample(entity_id)
        received, errors = Recorder(), Calls()
        labelled = await DataSampleFilter(renewed).by_label_code_filter("IC-TEST", "KEYS").build()
        bob_events = await renewed.data_sample_api.subscribe_to_data_sample_events(
            ["CREATE", "UPDATE"], labelled, received
        )
        bob_events.on_error(errors)
        before = await alice.api.data_sample_api.create_or_modify(
            sample.model_copy(update={"content": {"en": Content(string_value="before the answer")}})
        )
        await errors.wait_count(1, "decryption errors")
        assert isinstance(errors.values[0], DecryptionError) and received.events == []

        # Alice answers only once she has verified the new key.
        stored_before = await _exchange_data(alice, alice.id, bob.id)
        (waiting,) = await alice.api.crypto.answer_key_pair_updates()
        assert waiting.outcome is KeyPairUpdateOutcome.AWAITING_VERIFICATION and waiting.key_id == new_key
        assert waiting.fingerprint == await renewed.crypto.fingerprint(bob.id)
        assert await _exchange_data(alice, alice.id, bob.id) == stored_before, "nothing wrapped for an unverified key"
        with pytest.raises(DecryptionError):
            await renewed.data_sample_api.get_data_sample(_id(sample))
        await alice.api.crypto.verify_key(bob.id, new_key)
        (answered,) = await alice.api.crypto.answer_key_pair_updates()
        assert answered.outcome is KeyPairUpdateOutcome.ANSWERED and answered.unopened == ()
        a_to_b, b_to_a = await _exchange_data(alice, alice.id, bob.id), await _exchange_data(alice, bob.id, alice.id)
        assert sorted(answered.exchange_data_ids) == sorted([a_to_b["id"], b_to_a["id"]]), "one write per record"
        assert new_key in a_to_b["exchangeKey"] and new_key in b_to_a["exchangeKey"]
        assert set(b_to_a["delegateSignature"]) == set(a_to_b["delegatorSignature"]), "Alice signs as delegate"
        assert (await alice.api.notification_api.get_notification(_id(notice))).status is NotificationStatus.completed
        assert await alice.api.crypto.answer_key_pair_updates() == [], "nothing open is left"

        # Bob reads again what Alice shared, and what he shared with her; his events decrypt.
        assert (await renewed.patient_api.get_patient(_id(patient))).first_name == "John"
        assert await _text(renewed, _id(sample)) == "before the answer"
        assert await _text(renewed, _id(shared_by_bob)) == "from bob, for alice"
        resigned = await _exchange_data(alice, bob.id, alice.id)
        assert set(resigned["delegatorSignature"]) == {new_key} and "delegateSignature" not in resigned
        async with await server.api(alice.login, alice.password) as alice_again:  # nothing opened yet
            assert await _text(alice_again, _id(shared_by_bob)) == "from bob, for alice", "his new key signed it"
        after = await alice.api.data_sample_api.create_or_modify(
            before.model_copy(update={"content": {"en": Content(string_value="after the answer")}})
        )
        await received.wait_until(lambda events: any(e.entity.rev == after.rev for e in events), "the update")
        assert received.events[-1].entity.content["en"].string_value == "after the answer"

        # Nothing else: his own self-exchange data is lost, and Carol has not answered.
        with pytest.raises(DecryptionError):
            await renewed.data_sample_api.get_data_sample(_id(kept_by_bob))
        with pytest.raises(DecryptionError, match="no wrap for any of this data owner's keys"):
            await renewed.data_sample_api.get_data_sample(_id(carols))
        await carol.api.crypto.verify_key(bob.id, new_key)
        (carols_answer,) = await carol.api.crypto.answer_key_pair_updates()
        assert carols_answer.outcome is KeyPairUpdateOutcome.ANSWERED
        assert await _text(renewed, _id(carols)) == "from carol"
        with pytest.raises(DecryptionError):
            await renewed.data_sample_api.get_data_sample(_id(kept_by_bob))
        await bob_events.close()
    finally:
        await alice_notices.close()
        await renewed.close()


async def test_only_the_two_parties_modify_their_exchange_data(
    server: RunningServer, new_professional: ProfessionalFactory, admin_api: MedTechApi
) -> None:
    alice, bob, stranger = await new_professional("Alice"), await new_professional("Bob"), await new_professional()
    sample = await _sample(alice.api, _id(await _patient(alice.api, "John")), "between the two")
    await alice.api.data_sample_api.give_access_to(sample, bob.id)
    record = ExchangeData.model_validate(await _exchange_data(alice, alice.id, bob.id))
    assert record.id is not None
    forged = record.model_copy(update={"exchange_key": {**record.exchange_key, "0" * 32: "AQID"}})
    with pytest.raises(NotFoundError):  # the stranger does not even see it
        await stranger.api.exchange_data_api.create_or_modify_exchange_data(forged)
    with pytest.raises(ForbiddenError, match=r"delegator .* or its delegate"):
        await admin_api.exchange_data_api.create_or_modify_exchange_data(forged)
    with pytest.raises(ForbiddenError):
        await admin_api.exchange_data_api.delete_exchange_data(record.id)
    stored = await read_document(server, "ExchangeData", record.id)
    assert stored["rev"] == record.rev and "0" * 32 not in stored["exchangeKey"]
    by_delegate = await bob.api.exchange_data_api.create_or_modify_exchange_data(forged)
    assert by_delegate.rev != record.rev, "either party may write it (a signature decides whether it is trusted)"


async def test_a_notification_naming_a_key_its_data_owner_does_not_publish_is_cancelled_and_changes_nothing(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    """Anyone may write a KEY_PAIR_UPDATE notification (here a stranger, naming Bob and a key of its own): the
    answer trusts only keys the named data owner publishes, and cancels it."""
    alice, bob, stranger = await new_professional("Alice"), await new_professional("Bob"), await new_professional()
    await alice.api.data_sample_api.give_access_to(
        await _sample(alice.api, _id(await _patient(alice.api, "John")), "for bob"), bob.id
    )
    before = await _exchange_data(alice, alice.id, bob.id)
    forged = key_pair_update_notification(str(uuid.uuid4()), bob.id, DataOwnerKeyPair.generate(1).id, alice.id)
    forged["securityMetadata"]["secureDelegations"] = {
        server_delegation_key(stranger.id, alice.id): {"delegator": stranger.id, "delegate": alice.id}
    }
    await stranger.api.transport.request("POST", "/rest/v1/notifications", forged)
    (answer,) = await alice.api.crypto.answer_key_pair_updates()
    assert answer.outcome is KeyPairUpdateOutcome.KEY_NOT_PUBLISHED and answer.data_owner_id == bob.id
    assert (await alice.api.notification_api.get_notification(forged["id"])).status is NotificationStatus.cancelled
    assert await _exchange_data(alice, alice.id, bob.id) == before
    assert await alice.api.crypto.answer_key_pair_updates() == []


async def test_the_new_key_pair_option_replaces_no_key_at_hand(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    alice, bob = await new_professional("Alice"), await new_professional("Bob")
    await alice.api.data_sample_api.give_access_to(
        await _sample(alice.api, _id(await _patient(alice.api, "John")), "kept"), bob.id
    )
    keys = (await bob.api.get_data_owner()).data_owner.crypto_keys
    builder = MedTechApi.builder().with_url(server.url).with_username(bob.login).with_password(bob.password)
    async with await builder.with_new_key_pair_after_loss().build() as again:
        assert (await again.get_data_owner()).data_owner.crypto_keys == keys
        assert await again.crypto.notify_key_pair_update() == [], "its exchange data wraps for its key"
    assert await alice.api.crypto.answer_key_pair_updates() == []
