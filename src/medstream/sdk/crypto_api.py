"""`api.crypto`: the SDK's end-to-end encryption over the REST API. It fetches what the sans-I/O crypto state
(`crypto/state.py`) needs (data owners' published keys, exchange data), creates exchange data on the first
share between two data owners, and encrypts and decrypts entities as their wire dicts.

An entity is decrypted with the key its delegations to this data owner carry; an entity is encrypted, at
create, under a new key delegated to this data owner itself (through its exchange data with itself), and at
update under the key it already has. Before it is encrypted, its `blindIndex` is made from its clear values.
The exchange data a data owner delegates carries its search key, so that its delegates search what it indexed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medstream.crypto.blind_index import IndexedField
from medstream.crypto.delegations import Permission
from medstream.crypto.encrypted_self import ENCRYPTED_SELF
from medstream.crypto.entity_keys import EntityKey
from medstream.crypto.exchange_data import SEARCH_KEY, ExchangeSecrets, add_wraps, create_exchange_data
from medstream.crypto.key_store_format import Argon2Parameters, encode_private_part
from medstream.crypto.owner_keys import PublicKeyRecord, parse_public_record
from medstream.crypto.recovery import new_recovery_key, recovery_code, seal_recovery_blob
from medstream.crypto.state import BLIND_INDEX, SECURE_DELEGATIONS, SECURITY_METADATA, CryptoState, delegations_of
from medstream.errors import DecryptionError, KeyVerificationError, NotFoundError, ValidationError
from medstream.model.blind_index import MAX_TOKENS_PER_FIELD
from medstream.model.common import Entity
from medstream.model.entities import KIND_BY_NAME
from medstream.sdk.key_store import save_key_store
from medstream.sdk.transport import Transport

_EXCHANGE_DATA = "/rest/v1/exchange-data"


def refuse_oversized_blind_index(entity_type: str, wire: Mapping[str, Any], fields: Mapping[str, IndexedField]) -> None:
    """ValidationError, before anything is sent, for a write whose values make more tokens in one blind-index
    field than an entity may carry (MAX_TOKENS_PER_FIELD, which the server enforces), naming where they come from."""
    for name, tokens in (wire.get(BLIND_INDEX) or {}).items():
        field = fields.get(name)
        if field is None or len(tokens) <= MAX_TOKENS_PER_FIELD:
            continue
        made = "one per value" if field.index == "equality" else "one per word and per prefix of 3 letters or more"
        raise ValidationError(
            f"{entity_type} {wire.get('id')}: its {', '.join(field.sources)} make {len(tokens)} blind-index tokens "
            f"for {name} ({made}), more than the {MAX_TOKENS_PER_FIELD} an entity may carry: not sent; shorten them"
        )


class EntityDecryptor:
    """Decrypts the entities of one kind as models (what a subscription's events carry)."""

    def __init__(self, crypto: CryptoApi, entity_type: str) -> None:
        self._crypto = crypto
        self._entity_type = entity_type
        self._model = KIND_BY_NAME[entity_type].model

    def decrypt_now(self, entity: Entity) -> Entity | None:
        if entity.encrypted_self is None:
            return entity
        plain = self._crypto.decrypt_now(self._entity_type, entity.to_json_dict())
        return None if plain is None else self._model.model_validate(plain)

    async def decrypt(self, entity: Entity) -> Entity:
        plain = await self._crypto.decrypt(self._entity_type, entity.to_json_dict())
        return self._model.model_validate(plain)


class CryptoApi:
    """The logged-in data owner's keys and what it shares: `fingerprint`, `verify_key`, and the encryption the
    entity APIs use."""

    def __init__(
        self,
        transport: Transport,
        state: CryptoState,
        key_store_path: Path,
        passphrase: str | None = None,
        argon2: Argon2Parameters | None = None,
    ) -> None:
        self._transport = transport
        self.state = state
        self.key_store_path = key_store_path
        self._passphrase = passphrase
        self._argon2 = argon2
        self._lock = asyncio.Lock()  # one exchange data creation at a time
        self._refused: dict[str, DecryptionError] = {}  # exchange data that did not open, until a key is verified

    @property
    def data_owner_id(self) -> str:
        return self.state.data_owner_id

    def encrypts(self, entity_type: str) -> bool:
        return bool(self.state.fields_of(entity_type))

    def decryptor(self, entity_type: str) -> EntityDecryptor:
        return EntityDecryptor(self, entity_type)

    # -- keys ---------------------------------------------------------------------------------------------

    async def save(self) -> None:
        """Write the key store (pins included) to its file, off the event loop (Argon2id takes a while)."""
        await asyncio.to_thread(
            save_key_store, self.key_store_path, self.state.store, self._passphrase, parameters=self._argon2
        )

    async def published_keys(self, data_owner_id: str) -> list[PublicKeyRecord]:
        """The public key records `data_owner_id` publishes that pass `parse_public_record`'s checks."""
        payload = await self._transport.request("GET", f"/rest/v1/data-owners/{data_owner_id}/keys")
        records = []
        for entry in payload.get("cryptoKeys") or []:
            try:
                records.append(parse_public_record(entry))
            except ValidationError:
                continue  # a record whose id is not its keys' (or otherwise malformed) is never trusted
        return records

    async def trusted_keys(self, data_owner_id: str) -> list[PublicKeyRecord]:
        """`data_owner_id`'s ACTIVE published keys, pinned on first use; KeyVerificationError when they are not
        the pinned ones."""
        published = await self.published_keys(data_owner_id)
        if self.state.check_published(data_owner_id, published):
            await self.save()
        return [record for record in published if record.is_active]

    async def fingerprint(self, data_owner_id: str, key_id: str | None = None) -> str:
        """The fingerprint to compare with the data owner (docs/security.md): of `key_id` when given, else of the
        key pinned for it, else of its first ACTIVE published key. Your own with your data owner id."""
        if data_owner_id == self.data_owner_id:
            candidates = [keys.public for keys in self.state.store.active_key_pairs()]
        else:
            candidates = self.state.pinned_keys(data_owner_id)
        if key_id is not None or not candidates:
            candidates = [*candidates, *(await self.published_keys(data_owner_id))]
        for record in candidates:
            if (key_id is None and record.is_active) or record.id == key_id:
                return record.fingerprint
        raise NotFoundError(f"data owner {data_owner_id} has no {'key ' + key_id if key_id else 'ACTIVE key'}")

    async def verify_key(self, data_owner_id: str, key_id: str) -> None:
        """Trust `data_owner_id`'s published key `key_id` after a person compared its fingerprint: it is pinned
        as verified, and sharing with that data owner, or reading what it signs, goes on."""
        for record in await self.published_keys(data_owner_id):
            if record.id == key_id:
                self.state.verify(data_owner_id, record)
                self._refused.clear()
                await self.save()
                return
        raise NotFoundError(f"data owner {data_owner_id} publishes no key {key_id}")

    def create_recovery_code(self) -> tuple[str, str]:
        """A new recovery code (to show once, for the person to write down) and the recovery blob it opens (to
        keep anywhere: it is useless without the code). `with_recovery(code, blob)` at login restores the keys."""
        key = new_recovery_key()
        private = encode_private_part(self.state.store.key_pairs, self.state.store.search_key)
        return recovery_code(key), seal_recovery_blob(key, private)

    # -- exchange data ------------------------------------------------------------------------------------

    async def _pin_delegator(self, wire: Mapping[str, Any]) -> None:
        delegator = wire.get("delegator")
        if isinstance(delegator, str) and delegator != self.data_owner_id and not self.state.pinned_keys(delegator):
            await self.trusted_keys(delegator)

    async def open_exchange_data(self, exchange_data_id: str) -> ExchangeSecrets:
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
        """An exchange data record as read: its delegator's keys pinned on first use, then verified and opened;
        one that does not open is remembered as refused."""
        exchange_data_id = str(wire.get("id"))
        try:
            await self._pin_delegator(wire)
            return self.state.open(wire)
        except (DecryptionError, KeyVerificationError, NotFoundError) as exc:
            error = DecryptionError(f"exchange data {exchange_data_id}: {exc.message}")
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

    async def blind_search(self, entity_type: str, field: str, values: Sequence[Any]) -> list[list[str]] | None:
        """The token groups that search `values` in the blind-index `field` of `entity_type`, under this data
        owner's search key and each delegator's (the exchange data delegated to it opened first); None when
        the configuration has the field searched in clear."""
        if self.state.blind_field(entity_type, field) is None:
            return None
        await self.learn_search_keys()
        groups = self.state.blind_search(entity_type, field, values)
        for group in groups or ():
            if len(group) > MAX_TOKENS_PER_FIELD:
                raise ValidationError(
                    f"a search on {entity_type} {field} makes {len(group)} tokens (values x search keys), more than "
                    f"the {MAX_TOKENS_PER_FIELD} a filter may carry: search fewer values at once"
                )
        return groups

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
                    secrets = self.state.open(wire)
                except DecryptionError:
                    continue  # made for keys this device does not hold, or not signed by them
                if secrets.search_key is None and delegate != self.data_owner_id:
                    wire, secrets = await self._add_search_key(wire, secrets, delegate)
                self.state.by_pair[(self.data_owner_id, delegate)] = str(wire["id"])
                return str(wire["id"]), secrets
            own = self.state.store.active_key_pairs()
            recipients = [keys.public for keys in own]
            if delegate != self.data_owner_id:
                recipients += await self.trusted_keys(delegate)
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
        recipients = [keys.public for keys in own] + await self.trusted_keys(delegate)
        updated = add_wraps({k: v for k, v in wire.items() if k != SEARCH_KEY}, with_key, recipients, own)
        stored = await self._transport.request("POST", _EXCHANGE_DATA, updated)
        return stored, self.state.open(stored)

    # -- entities -----------------------------------------------------------------------------------------

    async def entity_key(self, entity_type: str, wire: Mapping[str, Any]) -> EntityKey | None:
        """The entity's key through its delegations to this data owner, their exchange data opened first."""
        key = self.state.entity_key(entity_type, wire)
        if key is not None:
            return key
        opened = False
        for exchange_data_id in self.state.missing_exchange_data(wire):
            try:
                await self.open_exchange_data(exchange_data_id)
                opened = True
            except DecryptionError:
                continue  # another delegation may still carry the key
        return self.state.entity_key(entity_type, wire) if opened else None

    def decrypt_now(self, entity_type: str, wire: Mapping[str, Any]) -> dict[str, Any] | None:
        """The decrypted entity if the keys at hand suffice; None when exchange data must be fetched first.
        DecryptionError when it cannot be decrypted."""
        if wire.get(ENCRYPTED_SELF) is None:
            return dict(wire)
        if self.state.entity_key(entity_type, wire) is None and any(
            exchange_data_id not in self._refused for exchange_data_id in self.state.missing_exchange_data(wire)
        ):
            return None
        return self.state.decrypt(entity_type, wire)

    async def decrypt(self, entity_type: str, wire: Mapping[str, Any]) -> dict[str, Any]:
        """The entity with its encrypted fields merged back; DecryptionError when this data owner cannot."""
        if wire.get(ENCRYPTED_SELF) is None:
            return dict(wire)
        await self.entity_key(entity_type, wire)
        return self.state.decrypt(entity_type, wire)

    async def encrypt_for_write(
        self, entity_type: str, wire: dict[str, Any], stored: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """The wire dict to send for a create (no `rev`: an id if it has none, a new key delegated to this data
        owner) or an update (the key found through `stored`'s delegations, else a new one as for a create), its
        `blindIndex` made from its clear values under its responsible data owner's search key."""
        clear = self.state.for_write(entity_type, wire, stored)
        refuse_oversized_blind_index(entity_type, clear, self.state.blind_indexed.get(entity_type, {}))
        key = None
        if clear.get("rev") is not None and stored is not None:
            key = await self.entity_key(entity_type, stored)
        if key is None:
            key = EntityKey.generate()
            await self.exchange_with(self.data_owner_id)
            clear = self.state.with_own_delegation(entity_type, clear, key)
        return self.state.encrypt(entity_type, clear, key)

    async def shared(
        self, entity_type: str, stored: Mapping[str, Any], delegate: str, permissions: Permission
    ) -> dict[str, Any] | None:
        """`stored` (as the server has it, `encryptedSelf` untouched) with a delegation of its key to `delegate`;
        None when this data owner already delegates that key to it with these permissions."""
        key = await self.entity_key(entity_type, stored)
        if key is None:
            raise DecryptionError(f"{entity_type} {stored.get('id')}: its key is not shared with you: nothing to share")
        await self.trusted_keys(delegate)
        await self.exchange_with(delegate)
        delegations = delegations_of(stored)
        own = self.data_owner_id
        parents = [name for name, d in delegations.items() if d.get("delegate") == own and d.get("exchangeDataId")]
        entity_id = str(stored["id"])
        name, delegation = self.state.delegation(entity_type, entity_id, key, delegate, permissions, parents[:1])
        if self.state.carries(entity_type, entity_id, delegations.get(name), key, permissions):
            return None
        delegations[name] = delegation
        return {**stored, SECURITY_METADATA: {SECURE_DELEGATIONS: delegations}}

    async def rotated(self, entity_type: str, stored: Mapping[str, Any]) -> dict[str, Any]:
        """`stored` under a new key: its content re-encrypted, and the key re-wrapped in every delegation this
        data owner made with exchange data it holds (another delegator's delegations keep the old key)."""
        clear = await self.decrypt(entity_type, stored)
        for delegation in delegations_of(stored).values():
            exchange_data_id = delegation.get("exchangeDataId")
            if delegation.get("delegator") == self.data_owner_id and isinstance(exchange_data_id, str):
                try:
                    await self.open_exchange_data(exchange_data_id)
                except DecryptionError:
                    continue  # left with the old key: its delegate no longer reads new revisions
        key = EntityKey.generate()
        entity_id = str(stored["id"])
        delegations = self.state.rewrapped(entity_type, entity_id, delegations_of(stored), key)
        own = self.data_owner_id
        if not any(
            d.get("delegator") == own and d.get("delegate") == own and d.get("exchangeDataId") in self.state.secrets
            for d in delegations.values()
        ):  # the writer read it through another's delegation, which keeps the old key: one of its own
            await self.exchange_with(own)
            name, delegation = self.state.delegation(entity_type, entity_id, key, own, "WRITE")
            delegations[name] = delegation
        clear[SECURITY_METADATA] = {SECURE_DELEGATIONS: delegations}
        return self.state.encrypt(entity_type, clear, key)
