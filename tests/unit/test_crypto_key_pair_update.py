"""crypto/key_pair_update.py: the KEY_PAIR_UPDATE notification's wire form, reading it back, whether a
counterparty answers it, and who is notified."""

from __future__ import annotations

from typing import Any

import pytest

from medstream.crypto import DataOwnerKeyPair, PinnedKey, create_exchange_data, server_delegation_key
from medstream.crypto.key_pair_update import (
    KeyPairUpdate,
    KeyPairUpdateOutcome,
    counterparties_to_notify,
    decide,
    key_pair_update_notification,
    lacks_wraps_for,
    parse_key_pair_update,
)
from medstream.crypto.owner_keys import PublicKeyRecord
from medstream.model import Notification
from tests.unit.crypto_fixtures import HCP_KEYS, PATIENT_KEYS

NEW_KEY = DataOwnerKeyPair.generate(created=5)


def test_the_notification_names_the_data_owner_and_its_key_in_clear_and_is_shared_with_the_counterparty() -> None:
    wire = key_pair_update_notification("n-1", "hcp-a", NEW_KEY.id, "pat-b")
    notification = Notification.model_validate(wire)  # a valid Notification as the server reads it
    assert notification.type == "KEY_PAIR_UPDATE" and notification.status == "pending"
    assert notification.properties == [] and notification.encrypted_self is None, "nothing to decrypt"
    assert [(i.system, i.value) for i in notification.identifiers] == [
        ("dataOwnerConcernedId", "hcp-a"),
        ("dataOwnerConcernedPublicKeyId", NEW_KEY.id),
    ]
    (key, delegation) = wire["securityMetadata"]["secureDelegations"].popitem()
    assert key == server_delegation_key("hcp-a", "pat-b"), "the key every key-less delegation of the pair has"
    assert (delegation["delegator"], delegation["delegate"], delegation["permissions"]) == ("hcp-a", "pat-b", "WRITE")
    assert delegation["encryptionKeys"] == [] and delegation["exchangeDataId"] is None


def test_a_notification_reads_back_as_what_it_names() -> None:
    wire = key_pair_update_notification("n-1", "hcp-a", NEW_KEY.id, "pat-b")
    update = parse_key_pair_update(wire)
    assert update == KeyPairUpdate("n-1", "hcp-a", NEW_KEY.id, "pending", frozenset({"pat-b"}))
    assert update.is_open
    assert parse_key_pair_update({**wire, "status": "completed"}) == KeyPairUpdate(
        "n-1", "hcp-a", NEW_KEY.id, "completed", frozenset({"pat-b"})
    )
    assert not parse_key_pair_update({**wire, "status": "cancelled"}).is_open  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "change",
    [
        {"type": "OTHER"},
        {"identifiers": [{"system": "dataOwnerConcernedId", "value": "hcp-a"}]},
        {"identifiers": [{"system": "dataOwnerConcernedPublicKeyId", "value": "k"}]},
        {"identifiers": "not a list of identifiers"},
        {"id": None},
    ],
)
def test_anything_but_a_key_pair_update_naming_a_data_owner_and_a_key_is_not_one(change: dict[str, Any]) -> None:
    wire = {**key_pair_update_notification("n-1", "hcp-a", NEW_KEY.id, "pat-b"), **change}
    assert parse_key_pair_update(wire) is None


def _update(key_id: str = NEW_KEY.id) -> KeyPairUpdate:
    return KeyPairUpdate("n-1", "hcp-a", key_id, "pending", frozenset({"pat-b"}))


def test_a_counterparty_answers_only_for_a_published_active_key_it_verified() -> None:
    published = [HCP_KEYS.with_status("RETIRED").public, NEW_KEY.public]  # the lost key, then the new one
    assert decide(_update(), published, PinnedKey(NEW_KEY.public, verified=True)) == (
        KeyPairUpdateOutcome.ANSWERED,
        NEW_KEY.public,
    )
    for pin in (None, PinnedKey(NEW_KEY.public, verified=False)):  # never seen, or pinned on first use only
        assert decide(_update(), published, pin) == (KeyPairUpdateOutcome.AWAITING_VERIFICATION, NEW_KEY.public)
    verified_old = PinnedKey(HCP_KEYS.public, verified=True)
    assert decide(_update(HCP_KEYS.id), published, verified_old) == (KeyPairUpdateOutcome.KEY_NOT_PUBLISHED, None)
    assert decide(_update("0" * 32), published, None) == (KeyPairUpdateOutcome.KEY_NOT_PUBLISHED, None)


def _records(*wraps: tuple[str, str, list[PublicKeyRecord]]) -> list[dict[str, Any]]:
    return [
        create_exchange_data(f"ed-{i}", delegator, delegate, [HCP_KEYS], recipients)[0]
        for i, (delegator, delegate, recipients) in enumerate(wraps)
    ]


def test_a_record_lacks_wraps_until_each_secret_has_one_for_the_key() -> None:
    (old,) = _records(("hcp-a", "pat-b", [HCP_KEYS.public, PATIENT_KEYS.public]))
    assert lacks_wraps_for(old, NEW_KEY.id) and not lacks_wraps_for(old, PATIENT_KEYS.id)
    with_key = {**old, "searchKey": {HCP_KEYS.id: "AQ=="}}
    assert lacks_wraps_for(with_key, PATIENT_KEYS.id), "its search key is not wrapped for it"


def test_every_counterparty_whose_exchange_data_lacks_the_new_key_is_notified_once() -> None:
    records = _records(
        ("hcp-a", "pat-b", [HCP_KEYS.public, PATIENT_KEYS.public]),  # lost: only the old key
        ("pat-c", "hcp-a", [HCP_KEYS.public]),
        ("hcp-a", "hcp-a", [HCP_KEYS.public]),  # its own: no one to ask
        ("hcp-a", "pat-d", [NEW_KEY.public]),  # made with the new key already
        ("pat-e", "pat-f", [PATIENT_KEYS.public]),  # not its own (as a server could answer)
    )
    assert counterparties_to_notify(records, "hcp-a", NEW_KEY.id, []) == ["pat-b", "pat-c"]
    sent = KeyPairUpdate("n-1", "hcp-a", NEW_KEY.id, "completed", frozenset({"hcp-a", "pat-b"}))
    assert counterparties_to_notify(records, "hcp-a", NEW_KEY.id, [sent]) == ["pat-c"]
    cancelled = KeyPairUpdate("n-2", "hcp-a", NEW_KEY.id, "cancelled", frozenset({"hcp-a", "pat-c"}))
    about_another_key = KeyPairUpdate("n-3", "hcp-a", HCP_KEYS.id, "pending", frozenset({"hcp-a", "pat-c"}))
    assert counterparties_to_notify(records, "hcp-a", NEW_KEY.id, [sent, cancelled, about_another_key]) == ["pat-c"]
