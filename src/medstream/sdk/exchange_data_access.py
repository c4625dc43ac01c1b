"""The exchange data a logged-in data owner reads, opens and makes, over REST (`crypto/state.py` decides and
keeps what is opened): a record is opened once its signers are pinned and a signature verifies; one it
delegates that none of its keys signed (its delegate gave it wraps for a new key after a lost key) is signed
again; the exchange data from it to a delegate is found or created on the first share between the two.

A record that does not open is remembered as refused until a key is verified, unless it only lacked a wrap for
this data owner's keys: a counterparty may add that wrap at any time (its answer to a KEY_PAIR_UPDATE).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from medstream.crypto.exchange_data import (
    DELEGATE_SIGNATURE,
    SEARCH_KEY,
    ExchangeSecrets,
    add_wraps,
    create_exchange_data,
    wrapped_key_ids,
)
from medstream.crypto.owner_keys import PublicKeyRecord
from medstream.crypto.state import CryptoState
from medstream.errors import ConflictError, DecryptionError, KeyVerificationError, NotFoundError
from medstream.sdk.transport import Transport

_EXCHANGE_DATA = "/rest/v1/exchange-data"


class ExchangeDataAccess:
    """The exchange data of one logged-in data owner: `open` by id, `opened` as read, `exchange_with` a
    delegate, `learn_search_keys` from what is delegated to it. `trusted_keys` gives a counterparty's ACTIVE
    published keys, pinned on first use."""

    def __init__(
        self,
        transport: Transport,
        state: CryptoState,
        trusted_keys: Callable[[str], Awaitable[list[PublicKeyRecord]]],
    ) -> None:
        self._transport = transport
        self.state = state
        self._trusted_keys = trusted_keys
        self._lock = asyncio.Lock()  # one exchange data creation at a time
        self._refused: dict[str, DecryptionError] = {}  # by id: records that did not open, until a key is verified

    @property
    def data_owner_id(self) -> str:
        return self.state.data_owner_id

    def forget_refusals(self) -> None:
        """A key was verified: every refused record may open now."""
        self._refused.clear()

    def is_refused(self, exchange_data_id: str) -> bool:
        return exchange_data_id in self._refused

    async def _pin_signers(self, wire: Mapping[str, Any]) -> None:
        """Pin, on first use, the delegator of a record, and its delegate when the delegate signed it."""
        parties = [wire.get("delegator")] + ([wire.get("delegate")] if wire.get(DELEGATE_SIGNATURE) else [])
        for party in parties:
            if isinstance(party, str) and party != self.data_owner_id and not self.state.pinned_keys(party):
                await self._trusted_keys(party)

    async def opened(self, wire: Mapping[str, Any]) -> ExchangeSecrets:
        """An exchange data record as read: its signers pinned on first use, verified and opened; one this data
        owner delegates that none of its keys signed (its delegate gave it wraps for a new key) is signed again.
        DecryptionError when it does not open."""
        await self._pin_signers(wire)
        secrets = self.state.open(wire)
        exchange_data_id = str(wire.get("id"))
        if exchange_data_id in self.state.unsigned_own:
            own = self.state.store.active_key_pairs()
            updated = add_wraps(wire, secrets, [keys.public for keys in own], own)
            try:
                stored = await self._transport.request("POST", _EXCHANGE_DATA, updated)
            except ConflictError:  # written meanwhile: signed at its next opening
                return secrets
            self.state.open(stored)
        return secrets

    async def open(self, exchange_data_id: str) -> ExchangeSecrets:
        """K_ex and S_ac of the exchange data `exchange_data_id`, read, verified and opened once."""
        known = self.state.secrets.get(exchange_data_id)
        if known is not None:
            return known
        refused = self._refused.get(exchange_data_id)
        if refused is not None:
            raise refused
        try:
            wire = await self._transport.request("GET", f"{_EXCHANGE_DATA}/{exchange_data_id}")
        except NotFoundError as exc:
            error = DecryptionError(f"exchange data {exchange_data_id}: {exc.message}")
            self._refused[exchange_data_id] = error
            raise error from None
        return await self._open_wire(wire)

    async def _open_wire(self, wire: Mapping[str, Any]) -> ExchangeSecrets:
        """`opened`, and a record that does not open remembered as refused (unless it only lacked a wrap for
        this data owner's keys)."""
        exchange_data_id = str(wire.get("id"))
        try:
            return await self.opened(wire)
        except (DecryptionError, KeyVerificationError, NotFoundError) as exc:
            where = f"exchange data {exchange_data_id}"
            error = DecryptionError(exc.message if exc.message.startswith(where) else f"{where}: {exc.message}")
            if wrapped_key_ids(wire).intersection(keys.id for keys in self.state.store.key_pairs):
                self._refused[exchange_data_id] = error
            raise error from None

    async def learn_search_keys(self) -> None:
        """Open the exchange data delegated to this data owner that it has not opened yet, learning the search
        keys they carry; a record that does not open (not signed by a pinned key, no wrap for this device's
        keys) is skipped."""
        body: dict[str, Any] = {
            "filter": {"$type": "ExchangeDataByDelegateFilter", "delegateId": self.data_owner_id},
            "limit": 1000,
        }
        while True:
            page = await self._transport.request("POST", f"{_EXCHANGE_DATA}/filter", body)
            for wire in page["rows"]:
                exchange_data_id = str(wire.get("id"))
                if exchange_data_id in self._refused or (
                    exchange_data_id in self.state.secrets and self.state.exchange_data.get(exchange_data_id) == wire
                ):
                    continue
                try:
                    await self._open_wire(wire)
                except DecryptionError:
                    continue
            if page.get("nextId") is None:
                return
            body["nextId"] = page["nextId"]

    async def exchange_with(self, delegate: str) -> tuple[str, ExchangeSecrets]:
        """The exchange data from this data owner to `delegate` (itself included), found or created and signed."""
        shared = self.state.shared_with(delegate)
        if shared is not None:
            return shared
        async with self._lock:
            shared = self.state.shared_with(delegate)
            if shared is not None:
                return shared
            body = {
                "filter": {
                    "$type": "IntersectionFilter",
                    "filters": [
                        {"$type": "ExchangeDataByDelegatorFilter", "delegatorId": self.data_owner_id},
                        {"$type": "ExchangeDataByDelegateFilter", "delegateId": delegate},
                    ],
                },
                "limit": 100,
            }
            found = await self._transport.request("POST", f"{_EXCHANGE_DATA}/filter", body)
            for wire in sorted(found["rows"], key=lambda row: str(row.get("id"))):
                try:
                    secrets = await self.opened(wire)
                except (DecryptionError, KeyVerificationError, NotFoundError):
                    continue  # made for keys this device does not hold, or not signed by them
                wire = self.state.exchange_data.get(str(wire["id"]), wire)  # as stored, if signed again
                if secrets.search_key is None and delegate != self.data_owner_id:
                    wire, secrets = await self._add_search_key(wire, secrets, delegate)
                self.state.by_pair[(self.data_owner_id, delegate)] = str(wire["id"])
                return str(wire["id"]), secrets
            own = self.state.store.active_key_pairs()
            recipients = [keys.public for keys in own]
            if delegate != self.data_owner_id:
                recipients += await self._trusted_keys(delegate)
            new_secrets = ExchangeSecrets.generate(self.state.own_search_key)
            wire, _ = create_exchange_data(uuid.uuid4().hex, self.data_owner_id, delegate, own, recipients, new_secrets)
            stored = await self._transport.request("POST", _EXCHANGE_DATA, wire)
            secrets = self.state.open(stored)
            self.state.by_pair[(self.data_owner_id, delegate)] = str(stored["id"])
            return str(stored["id"]), secrets

    async def _add_search_key(
        self, wire: Mapping[str, Any], secrets: ExchangeSecrets, delegate: str
    ) -> tuple[Mapping[str, Any], ExchangeSecrets]:
        """Exchange data this data owner delegates, made without its search key, with the search key wrapped
        for every ACTIVE key of both parties and signed again (the delegate then searches what it indexes)."""
        with_key = ExchangeSecrets(secrets.exchange_key, secrets.access_control_secret, self.state.own_search_key)
        own = self.state.store.active_key_pairs()
        recipients = [keys.public for keys in own] + await self._trusted_keys(delegate)
        updated = add_wraps({k: v for k, v in wire.items() if k != SEARCH_KEY}, with_key, recipients, own)
        stored = await self._transport.request("POST", _EXCHANGE_DATA, updated)
        return stored, self.state.open(stored)
