"""`api.crypto`: the SDK's end-to-end encryption over the REST API. It fetches what the sans-I/O crypto state
(`crypto/state.py`) needs (data owners' published keys; exchange data through `exchange_data_access.py`), and
encrypts and decrypts entities as their wire dicts. After a lost key, it notifies counterparties of the new key
pair and answers their notifications (`key_pair_updates.py`).

An entity is decrypted with the key its delegations to this data owner carry (else with the key of a delegation
it made to another, through exchange data it delegates); an entity is encrypted, at
create, under a new key delegated to this data owner itself (through its exchange data with itself), and at
update under the key it already has. Before it is encrypted, its `blindIndex` is made from its clear values.
The exchange data a data owner delegates carries its search key, so that its delegates search what it indexed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medstream.crypto.blind_index import IndexedField
from medstream.crypto.delegations import Permission
from medstream.crypto.encrypted_self import ENCRYPTED_SELF
from medstream.crypto.entity_keys import EntityKey
from medstream.crypto.key_pair_update import KeyPairUpdateAnswer
from medstream.crypto.key_store_format import Argon2Parameters, encode_private_part
from medstream.crypto.owner_keys import PublicKeyRecord, parse_public_record
from medstream.crypto.recovery import new_recovery_key, recovery_code, seal_recovery_blob
from medstream.crypto.state import BLIND_INDEX, SECURE_DELEGATIONS, SECURITY_METADATA, CryptoState, delegations_of
from medstream.errors import DecryptionError, NotFoundError, ValidationError
from medstream.model.blind_index import MAX_TOKENS_PER_FIELD
from medstream.model.common import Entity
from medstream.model.entities import KIND_BY_NAME
from medstream.model.notification import Notification
from medstream.sdk import key_pair_updates, key_vault
from medstream.sdk.exchange_data_access import ExchangeDataAccess
from medstream.sdk.key_store import save_key_store
from medstream.sdk.transport import Transport


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
    """Decrypts the entities of one kind, from their wire dicts to models (what a subscription's events carry):
    the entity is validated once, after its encrypted fields are merged back."""

    def __init__(self, crypto: CryptoApi, entity_type: str) -> None:
        self._crypto = crypto
        self._entity_type = entity_type
        self._model = KIND_BY_NAME[entity_type].model

    def decrypt_now(self, wire: Mapping[str, Any]) -> Entity | None:
        plain = self._crypto.decrypt_now(self._entity_type, wire)
        return None if plain is None else self._model.model_validate(plain)

    async def decrypt(self, wire: Mapping[str, Any]) -> Entity:
        plain = await self._crypto.decrypt(self._entity_type, wire)
        return self._model.model_validate(plain)


class CryptoApi:
    """The logged-in data owner's keys and what it shares: `fingerprint`, `verify_key`, recovery codes, the key
    vault, key pair updates, and the encryption the entity APIs use."""

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
        self.exchange_data = ExchangeDataAccess(transport, state, self.trusted_keys)

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
                self.exchange_data.forget_refusals()
                await self.save()
                return
        raise NotFoundError(f"data owner {data_owner_id} publishes no key {key_id}")

    async def notify_key_pair_update(self) -> list[Notification]:
        """After a new key pair made on a lost key (the builder's `with_new_key_pair_after_loss()`, which calls
        this at login): one pending KEY_PAIR_UPDATE notification, naming this data owner and its new key, for
        each counterparty whose exchange data with it lacks wraps for that key and has none about it yet. Calling
        it again sends only what is missing. The notifications created."""
        return await key_pair_updates.notify(self, self._transport)

    async def answer_key_pair_updates(self) -> list[KeyPairUpdateAnswer]:
        """Answer the open KEY_PAIR_UPDATE notifications shared with this data owner, one result each: for a key
        pinned as verified (`verify_key` after comparing its `fingerprint`), the exchange data of both
        directions with that data owner gets wraps for it, and the notification is completed; a key not verified
        yet is reported AWAITING_VERIFICATION and nothing is done; a key the data owner no longer publishes as
        ACTIVE cancels the notification."""
        return await key_pair_updates.answer(self, self._transport)

    def create_recovery_code(self) -> tuple[str, str]:
        """A new recovery code (to show once, for the person to write down) and the recovery blob it opens (to
        keep anywhere: it is useless without the code). `with_recovery(code, blob)` at login restores the keys."""
        key = new_recovery_key()
        private = encode_private_part(self.state.store.key_pairs, self.state.store.search_key)
        return recovery_code(key), seal_recovery_blob(key, private)

    async def upload_key_vault(self, passphrase: str, *, argon2: Argon2Parameters | None = None) -> str:
        """Keep this data owner's key store (private keys, search key, pins) on the server, sealed under
        `passphrase`, replacing the vault kept before; its rev. The passphrase must not be the login password and
        must be strong (docs/security.md, "The key vault"): ValidationError otherwise, and nothing is sent.
        `with_key_vault(passphrase)` at login restores the keys on a device that lacks them."""
        return await key_vault.upload_key_vault(self._transport, self.state.store, passphrase, argon2)

    async def delete_key_vault(self) -> bool:
        """Delete the key vault the server keeps for this user; whether there was one."""
        return await key_vault.delete_key_vault(self._transport)

    # -- blind indexes ------------------------------------------------------------------------------------

    async def blind_search(self, entity_type: str, field: str, values: Sequence[Any]) -> list[list[str]] | None:
        """The token groups that search `values` in the blind-index `field` of `entity_type`, under this data
        owner's search key and each delegator's (the exchange data delegated to it opened first); None when
        the configuration has the field searched in clear."""
        if self.state.blind_field(entity_type, field) is None:
            return None
        await self.exchange_data.learn_search_keys()
        groups = self.state.blind_search(entity_type, field, values)
        for group in groups or ():
            if len(group) > MAX_TOKENS_PER_FIELD:
                raise ValidationError(
                    f"a search on {entity_type} {field} makes {len(group)} tokens (values x search keys), more than "
                    f"the {MAX_TOKENS_PER_FIELD} a filter may carry: search fewer values at once"
                )
        return groups

    # -- entities -----------------------------------------------------------------------------------------

    async def entity_key(
        self, entity_type: str, wire: Mapping[str, Any], reasons: list[str] | None = None
    ) -> EntityKey | None:
        """The entity's key through its delegations to this data owner, their exchange data opened first, else
        through the delegations it made to others (their exchange data is its own too: after a lost key, a
        counterparty's answer gives it back what it shared). Why each exchange data did not open goes to
        `reasons`."""
        key = self.state.entity_key(entity_type, wire)
        if key is not None:
            return key
        for made_by_self in (False, True):
            opened = False
            for exchange_data_id in self.state.missing_exchange_data(wire, made_by_self=made_by_self):
                try:
                    await self.exchange_data.open(exchange_data_id)
                    opened = True
                except DecryptionError as exc:
                    if reasons is not None:
                        reasons.append(exc.message)
                    continue  # another delegation may still carry the key
            key = self.state.entity_key(entity_type, wire) if opened else None
            if key is not None:
                return key
        return None

    def decrypt_now(self, entity_type: str, wire: Mapping[str, Any]) -> dict[str, Any] | None:
        """The decrypted entity if the keys at hand suffice; None when exchange data must be fetched first.
        DecryptionError when it cannot be decrypted."""
        if wire.get(ENCRYPTED_SELF) is None:
            return dict(wire)
        key = self.state.entity_key(entity_type, wire)
        if key is None and any(
            not self.exchange_data.is_refused(exchange_data_id)
            for made_by_self in (False, True)
            for exchange_data_id in self.state.missing_exchange_data(wire, made_by_self=made_by_self)
        ):
            return None
        return self.state.decrypt(entity_type, wire, key)

    async def decrypt(self, entity_type: str, wire: Mapping[str, Any]) -> dict[str, Any]:
        """The entity with its encrypted fields merged back; DecryptionError when this data owner cannot, saying
        why the exchange data its delegations name did not open."""
        if wire.get(ENCRYPTED_SELF) is None:
            return dict(wire)
        reasons: list[str] = []
        await self.entity_key(entity_type, wire, reasons)
        try:
            return self.state.decrypt(entity_type, wire)
        except DecryptionError as exc:
            if not reasons:
                raise
            raise DecryptionError(f"{exc.message}; {'; '.join(reasons)}") from None

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
            await self.exchange_data.exchange_with(self.data_owner_id)
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
        await self.exchange_data.exchange_with(delegate)
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
                    await self.exchange_data.open(exchange_data_id)
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
            await self.exchange_data.exchange_with(own)
            name, delegation = self.state.delegation(entity_type, entity_id, key, own, "WRITE")
            delegations[name] = delegation
        clear[SECURITY_METADATA] = {SECURE_DELEGATIONS: delegations}
        return self.state.encrypt(entity_type, clear, key)
