"""KEY_PAIR_UPDATE notifications over REST (`crypto/key_pair_update.py` decides): the data owner that made a new
key pair after losing its keys notifies its counterparties, and each counterparty answers by adding wraps for
the new key to the exchange data the two share, in both directions (docs/security.md, "A lost key").

One write per exchange data record, never one per entity: every entity shared through a record is readable
again once the record wraps for the new key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medstream.crypto.exchange_data import add_wraps, add_wraps_as_delegate
from medstream.crypto.key_pair_update import (
    KEY_PAIR_UPDATE,
    KeyPairUpdate,
    KeyPairUpdateAnswer,
    KeyPairUpdateOutcome,
    counterparties_to_notify,
    decide,
    key_pair_update_notification,
    lacks_wraps_for,
    parse_key_pair_update,
)
from medstream.crypto.owner_keys import PublicKeyRecord
from medstream.errors import ConflictError, DecryptionError, KeyVerificationError, NotFoundError
from medstream.model.ids import new_entity_id
from medstream.model.notification import Notification

if TYPE_CHECKING:
    from medstream.sdk.crypto_api import CryptoApi
    from medstream.sdk.transport import Transport

_EXCHANGE_DATA = "/rest/v1/exchange-data"
_NOTIFICATIONS = "/rest/v1/notifications"
_ATTEMPTS = 3  # writes retried after a conflict (the other party or another device wrote the record meanwhile)


async def _rows(transport: Transport, path: str, filter: dict[str, Any]) -> list[dict[str, Any]]:
    """Every entity `filter` selects, page after page."""
    body: dict[str, Any] = {"filter": filter, "limit": 1000}
    rows: list[dict[str, Any]] = []
    while True:
        page = await transport.request("POST", f"{path}/filter", body)
        rows.extend(page["rows"])
        if page.get("nextId") is None:
            return rows
        body["nextId"] = page["nextId"]


def _pair(delegator: str, delegate: str) -> dict[str, Any]:
    return {
        "$type": "IntersectionFilter",
        "filters": [
            {"$type": "ExchangeDataByDelegatorFilter", "delegatorId": delegator},
            {"$type": "ExchangeDataByDelegateFilter", "delegateId": delegate},
        ],
    }


async def _exchange_data(transport: Transport, data_owner_id: str, other: str | None = None) -> list[dict[str, Any]]:
    """The exchange data `data_owner_id` delegates or is delegated (with `other` only, when given), once each."""
    if other is None:
        filters = [
            {"$type": "ExchangeDataByDelegatorFilter", "delegatorId": data_owner_id},
            {"$type": "ExchangeDataByDelegateFilter", "delegateId": data_owner_id},
        ]
    else:
        filters = [_pair(data_owner_id, other), _pair(other, data_owner_id)]
    found = await _rows(transport, _EXCHANGE_DATA, {"$type": "UnionFilter", "filters": filters})
    return list({str(wire["id"]): wire for wire in found}.values())


async def _key_pair_updates(transport: Transport, data_owner_id: str) -> list[tuple[dict[str, Any], KeyPairUpdate]]:
    """The KEY_PAIR_UPDATE notifications shared with `data_owner_id`, as read and parsed."""
    filter = {
        "$type": "NotificationsByHcPartyAndTypeFilter",
        "healthcarePartyId": data_owner_id,
        "type": KEY_PAIR_UPDATE,
    }
    found = []
    for wire in await _rows(transport, _NOTIFICATIONS, filter):
        update = parse_key_pair_update(wire)
        if update is not None:
            found.append((wire, update))
    return found


async def notify(crypto: CryptoApi, transport: Transport) -> list[Notification]:
    """A pending notification about the newest ACTIVE key for each counterparty whose exchange data lacks wraps
    for it and that none is shared with yet; the notifications created, in one batch."""
    own = crypto.state.store.active_key_pairs()
    if not own:
        return []
    owner = crypto.data_owner_id
    key_id = max(own, key=lambda keys: (keys.created, keys.id)).id
    notified = [update for _, update in await _key_pair_updates(transport, owner)]
    targets = counterparties_to_notify(await _exchange_data(transport, owner), owner, key_id, notified)
    if not targets:
        return []
    body = [key_pair_update_notification(new_entity_id(), owner, key_id, target) for target in targets]
    stored = await transport.request("POST", f"{_NOTIFICATIONS}/batch", body)
    return [Notification.model_validate(wire) for wire in stored]


async def _set_status(transport: Transport, wire: dict[str, Any], status: str) -> None:
    """The notification with `status`, unless it was closed meanwhile (another device answered it)."""
    for _ in range(_ATTEMPTS):
        try:
            await transport.request("POST", _NOTIFICATIONS, {**wire, "status": status})
            return
        except ConflictError:
            wire = await transport.request("GET", f"{_NOTIFICATIONS}/{wire['id']}")
            update = parse_key_pair_update(wire)
            if update is None or not update.is_open:
                return
    raise ConflictError(f"notification {wire['id']} kept changing while its status was set to {status}")


async def _give_wraps(
    crypto: CryptoApi, transport: Transport, other: str, key: PublicKeyRecord
) -> tuple[list[str], list[str]]:
    """Wraps for `other`'s key `key` in every exchange data between this data owner and `other` that lacks them:
    signed as delegator in the records it delegates, as delegate in those `other` delegates. The ids of the
    records written, and of those it could not open (so could not give wraps)."""
    owner = crypto.data_owner_id
    written: list[str] = []
    unopened: list[str] = []
    for wire in await _exchange_data(transport, owner, other):
        exchange_data_id = str(wire["id"])
        for _ in range(_ATTEMPTS):
            if not lacks_wraps_for(wire, key.id):
                break
            try:
                secrets = await crypto.exchange_data.opened(wire)
            except (DecryptionError, KeyVerificationError, NotFoundError):
                unopened.append(exchange_data_id)
                break
            wire = crypto.state.exchange_data.get(exchange_data_id, wire)  # as stored, if it was signed again
            own = crypto.state.store.active_key_pairs()
            if wire.get("delegator") == owner:
                updated = add_wraps(wire, secrets, [key], own)
            else:
                updated = add_wraps_as_delegate(wire, secrets, [key], own)
            try:
                stored = await transport.request("POST", _EXCHANGE_DATA, updated)
            except ConflictError:
                wire = await transport.request("GET", f"{_EXCHANGE_DATA}/{exchange_data_id}")
                continue
            crypto.state.open(stored)
            written.append(exchange_data_id)
            break
    return written, unopened


async def answer(crypto: CryptoApi, transport: Transport) -> list[KeyPairUpdateAnswer]:
    """One answer per open KEY_PAIR_UPDATE notification shared with this data owner about another data owner's
    key (`CryptoApi.answer_key_pair_updates`)."""
    owner = crypto.data_owner_id
    answers = []
    for wire, update in await _key_pair_updates(transport, owner):
        if not update.is_open or update.data_owner_id == owner:
            continue
        try:
            published = await crypto.published_keys(update.data_owner_id)
        except NotFoundError:
            published = []
        outcome, record = decide(update, published, crypto.state.pin_of(update.data_owner_id, update.key_id))
        fingerprint = record.fingerprint if record is not None else None
        what = (update.notification_id, update.data_owner_id, update.key_id, outcome, fingerprint)
        if outcome is KeyPairUpdateOutcome.KEY_NOT_PUBLISHED:
            await _set_status(transport, wire, "cancelled")
        elif outcome is KeyPairUpdateOutcome.ANSWERED:
            assert record is not None
            written, unopened = await _give_wraps(crypto, transport, update.data_owner_id, record)
            await _set_status(transport, wire, "completed")
            answers.append(KeyPairUpdateAnswer(*what, tuple(written), tuple(unopened)))
            continue
        answers.append(KeyPairUpdateAnswer(*what))
    return answers
