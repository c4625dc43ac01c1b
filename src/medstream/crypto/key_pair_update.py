"""KEY_PAIR_UPDATE notifications, sans I/O: a data owner that made a new key pair after losing its keys asks each
counterparty it has exchange data with to add wraps for the new key; the counterparty answers once it has
verified that key (docs/security.md, "A lost key").

A notification names the data owner and its new key in clear `identifiers` (no medical data, and nothing that
the data owner's published keys do not show already), so that the counterparty reads it before it trusts the
new key; it carries nothing encrypted. It is shared with the counterparty through a key-less delegation:

    {"id": ..., "type": "KEY_PAIR_UPDATE", "status": "pending", "responsible": <data owner id>,
     "identifiers": [{"system": "dataOwnerConcernedId", "value": <data owner id>},
                     {"system": "dataOwnerConcernedPublicKeyId", "value": <new public key id>}],
     "securityMetadata": {"secureDelegations": {<server delegation key>: {"delegator": <data owner id>,
                                                                         "delegate": <counterparty>, ...}}}}

The counterparty answers only for a key it pinned as verified (a person compared its fingerprint): a new key
seen through the server alone could be the server's own, and wrapping K_ex for it would hand the server every
entity shared through that exchange data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from medstream.crypto.delegations import secure_delegation, server_delegation_key
from medstream.crypto.exchange_data import SEARCH_KEY, wrapped_key_ids
from medstream.crypto.key_store_format import PinnedKey
from medstream.crypto.owner_keys import PublicKeyRecord

KEY_PAIR_UPDATE = "KEY_PAIR_UPDATE"
DATA_OWNER_SYSTEM = "dataOwnerConcernedId"
PUBLIC_KEY_SYSTEM = "dataOwnerConcernedPublicKeyId"
OPEN_STATUSES = frozenset({"pending", "ongoing", None})  # a notification still to answer


class KeyPairUpdateOutcome(StrEnum):
    """What answering one KEY_PAIR_UPDATE notification did."""

    ANSWERED = "answered"  # the exchange data of both parties wraps for the new key; the notification is completed
    AWAITING_VERIFICATION = "awaiting_verification"  # nothing done: the new key is not pinned as verified yet
    KEY_NOT_PUBLISHED = "key_not_published"  # the key is not among the data owner's ACTIVE keys: cancelled


@dataclass(frozen=True)
class KeyPairUpdate:
    """A KEY_PAIR_UPDATE notification as read: who made a new key pair, its new key id, where it stands, and the
    data owners it is shared with."""

    notification_id: str
    data_owner_id: str
    key_id: str
    status: str | None
    readers: frozenset[str]

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(frozen=True)
class KeyPairUpdateAnswer:
    """The result of answering one notification: its outcome, the fingerprint of the key (to compare before
    `verify_key`), the exchange data given wraps for the key, and those that could not be opened to do so."""

    notification_id: str
    data_owner_id: str
    key_id: str
    outcome: KeyPairUpdateOutcome
    fingerprint: str | None = None
    exchange_data_ids: tuple[str, ...] = ()
    unopened: tuple[str, ...] = ()


def key_pair_update_notification(
    notification_id: str, data_owner_id: str, key_id: str, counterparty: str
) -> dict[str, Any]:
    """The wire dict of a pending notification from `data_owner_id` about its key `key_id`, shared with
    `counterparty` (with WRITE, to mark it done)."""
    delegation = secure_delegation(data_owner_id, counterparty, None, (), "WRITE")
    return {
        "id": notification_id,
        "type": KEY_PAIR_UPDATE,
        "status": "pending",
        "responsible": data_owner_id,
        "identifiers": [
            {"system": DATA_OWNER_SYSTEM, "value": data_owner_id},
            {"system": PUBLIC_KEY_SYSTEM, "value": key_id},
        ],
        "securityMetadata": {"secureDelegations": {server_delegation_key(data_owner_id, counterparty): delegation}},
    }


def parse_key_pair_update(wire: Mapping[str, Any]) -> KeyPairUpdate | None:
    """The notification as a KeyPairUpdate; None for another type, or one that does not name a data owner and a
    key."""
    if wire.get("type") != KEY_PAIR_UPDATE:
        return None
    named: dict[str, str] = {}
    for identifier in wire.get("identifiers") or ():
        if isinstance(identifier, Mapping) and isinstance(identifier.get("value"), str):
            named.setdefault(str(identifier.get("system")), identifier["value"])
    data_owner_id, key_id = named.get(DATA_OWNER_SYSTEM), named.get(PUBLIC_KEY_SYSTEM)
    if not data_owner_id or not key_id or not isinstance(wire.get("id"), str):
        return None
    delegations = (wire.get("securityMetadata") or {}).get("secureDelegations") or {}
    readers = frozenset(
        str(d["delegate"]) for d in delegations.values() if isinstance(d, Mapping) and d.get("delegate")
    )
    status = wire.get("status")
    return KeyPairUpdate(str(wire["id"]), data_owner_id, key_id, status if isinstance(status, str) else None, readers)


def decide(
    update: KeyPairUpdate, published: Iterable[PublicKeyRecord], pin: PinnedKey | None
) -> tuple[KeyPairUpdateOutcome, PublicKeyRecord | None]:
    """Whether a counterparty answers `update`, given the data owner's published keys and its own pin of the
    named key: ANSWERED (with the key to wrap for) only for an ACTIVE published key pinned as verified;
    AWAITING_VERIFICATION (with the key, for its fingerprint) for one not verified yet;
    KEY_NOT_PUBLISHED for a key the data owner does not publish as ACTIVE (retired since, or never its own)."""
    record = next((r for r in published if r.id == update.key_id and r.is_active), None)
    if record is None:
        return KeyPairUpdateOutcome.KEY_NOT_PUBLISHED, None
    if pin is None or not pin.verified:  # a pin's id is its keys' hash: the pinned key is the published one
        return KeyPairUpdateOutcome.AWAITING_VERIFICATION, record
    return KeyPairUpdateOutcome.ANSWERED, record


def lacks_wraps_for(wire: Mapping[str, Any], key_id: str) -> bool:
    """Whether an exchange data record lacks a wrap for `key_id` of K_ex, S_ac, or of its search key when it
    carries one."""
    if key_id not in wrapped_key_ids(wire):
        return True
    search_keys = wire.get(SEARCH_KEY)
    return bool(search_keys) and isinstance(search_keys, Mapping) and key_id not in search_keys


def counterparties_to_notify(
    records: Iterable[Mapping[str, Any]], data_owner_id: str, key_id: str, notified: Iterable[KeyPairUpdate]
) -> list[str]:
    """The other parties of the exchange data `records` of `data_owner_id` that lack wraps for its key `key_id`,
    less those an open or completed notification about that key is shared with already; sorted."""
    done = {
        reader
        for update in notified
        if update.data_owner_id == data_owner_id and update.key_id == key_id and update.status != "cancelled"
        for reader in update.readers
    }
    wanted: set[str] = set()
    for wire in records:
        delegator, delegate = wire.get("delegator"), wire.get("delegate")
        if data_owner_id not in (delegator, delegate) or not lacks_wraps_for(wire, key_id):
            continue
        other = delegate if delegator == data_owner_id else delegator
        if isinstance(other, str) and other != data_owner_id and other not in done:
            wanted.add(other)
    return sorted(wanted)
