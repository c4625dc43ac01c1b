"""What a logged-in SDK knows of the keys, sans I/O: its own key pairs and pinned counterparties (the key
store), the exchange data it has seen and opened, and the entity keys it has unwrapped.

The SDK's I/O (`sdk/crypto_api.py`) fetches what this asks for (a counterparty's published keys, an exchange
data record) and hands it in; everything that decides or computes is here:

- **Pins, trust on first use.** A counterparty's published ACTIVE keys are pinned the first time they are seen;
  afterwards a published key that is not pinned (a new key, or one substituted on the server) is refused with a
  `KeyVerificationError` naming the data owner and that key's fingerprint, until `verify` pins it.
- **Exchange data** is trusted only once a signature verifies under a pinned key (its delegator's, or its
  delegate's on a record the delegate gave wraps for the delegator's new key), then opened with one of the own
  key pairs (`crypto/exchange_data.py`); K_ex and S_ac are kept by exchange data id. A record this data owner
  delegates that none of its own keys signed is named by `unsigned_own`: the SDK signs it again.
- **Entity keys**: found through the entity's secure delegations to this data owner, else through those it
  made to others (it holds their exchange data too), kept by (entity type, entity id, kid).
- **Search keys**: its own (in the key store) and each delegator's that an opened exchange data carried. An
  entity's blind-index tokens are made under the search key of its `responsible` data owner when known, else
  under its own; a search uses them all.
- **Writes**: what is encrypted for a write (an id, its blind index), the delegation of a new key to its
  writer, then `encryptedSelf`; an entity of a kind without encrypted fields is written as it is.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from medstream.crypto.blind_index import IndexedField, entity_blind_index, search_tokens
from medstream.crypto.delegations import Permission, delegation_key, secure_delegation
from medstream.crypto.encrypted_self import ENCRYPTED_SELF, decrypt_fields, encrypt_fields, encrypted_self_kid
from medstream.crypto.entity_keys import (
    WRAPPED_KEY_SIZE,
    EntityKey,
    unwrap_entity_key,
    unwrap_payload,
    wrap_entity_key,
)
from medstream.crypto.exchange_data import DELEGATOR_SIGNATURE, ExchangeSecrets, open_exchange_data
from medstream.crypto.key_store_format import KeyStore, PinnedKey
from medstream.crypto.owner_keys import PublicKeyRecord
from medstream.crypto.suite import KID_SIZE, unframe
from medstream.errors import DecryptionError, KeyVerificationError
from medstream.model.ids import new_entity_id

SECURITY_METADATA = "securityMetadata"
SECURE_DELEGATIONS = "secureDelegations"
BLIND_INDEX = "blindIndex"


def delegations_of(wire: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The secure delegations of an entity's wire dict, by delegation key (a copy)."""
    metadata = wire.get(SECURITY_METADATA) or {}
    return {key: dict(value) for key, value in (metadata.get(SECURE_DELEGATIONS) or {}).items()}


ENTITY_KEYS_KEPT = 10_000


class EntityKeyCache(OrderedDict[tuple[str, str, bytes], EntityKey]):
    """The entity keys last unwrapped or made, by (entity type, id, kid), at most `size`: a subscriber decrypts
    one new entity per event, and a key that left is unwrapped again from its entity's delegations when needed."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def lookup(self, key: tuple[str, str, bytes]) -> EntityKey | None:
        """The key, now the most recently used; None when it is not kept."""
        found = super().get(key)
        if found is not None:
            self.move_to_end(key)
        return found

    def __setitem__(self, key: tuple[str, str, bytes], value: EntityKey) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        if len(self) > self.size:
            self.popitem(last=False)


@dataclass
class CryptoState:
    """The caches of one logged-in data owner; `store` is its key store (saved by the caller when `pin` or
    `verify` says it changed). `encrypted_fields`, `blind_indexed` and `require_encryption` are the server's
    encryption configuration."""

    store: KeyStore
    encrypted_fields: Mapping[str, tuple[str, ...]]
    blind_indexed: Mapping[str, Mapping[str, IndexedField]] = field(default_factory=dict)
    require_encryption: bool = False
    search_keys: dict[str, bytes] = field(default_factory=dict, repr=False)  # delegators' search keys, by id
    exchange_data: dict[str, dict[str, Any]] = field(default_factory=dict)  # by id, as read or written
    by_pair: dict[tuple[str, str], str] = field(default_factory=dict)  # (delegator, delegate) -> exchange data id
    secrets: dict[str, ExchangeSecrets] = field(default_factory=dict)  # opened K_ex and S_ac, by exchange data id
    entity_keys: EntityKeyCache = field(default_factory=lambda: EntityKeyCache(ENTITY_KEYS_KEPT))
    unsigned_own: set[str] = field(default_factory=set)  # opened records it delegates that no own key signed

    @property
    def data_owner_id(self) -> str:
        return self.store.data_owner_id

    def fields_of(self, entity_type: str) -> tuple[str, ...]:
        """The top-level wire names of `entity_type` that travel in `encryptedSelf` (none: not encrypted)."""
        return tuple(self.encrypted_fields.get(entity_type, ()))

    # -- counterparties' keys -----------------------------------------------------------------------------

    def check_published(self, data_owner_id: str, published: Iterable[PublicKeyRecord]) -> bool:
        """Pin a counterparty's published ACTIVE keys on first use; True when the key store changed (first
        pins). KeyVerificationError for a published ACTIVE key that is not pinned while others are."""
        active = [record for record in published if record.is_active]
        if data_owner_id == self.data_owner_id:
            return False
        if not active:
            raise KeyVerificationError(f"data owner {data_owner_id} has published no ACTIVE key: nothing to share with")
        pinned = self.store.pins.get(data_owner_id)
        if not pinned:
            for record in active:
                self.store.pin(data_owner_id, record)
            return True
        unknown = [record for record in active if record.id not in pinned]
        if unknown:
            new = unknown[0]
            raise KeyVerificationError(
                f"data owner {data_owner_id} now publishes key {new.id} (fingerprint {new.fingerprint}), which is not "
                f"the key pinned for it ({', '.join(sorted(pinned))}): compare this fingerprint with the data owner, "
                f"then call api.crypto.verify_key({data_owner_id!r}, {new.id!r})"
            )
        return False

    def verify(self, data_owner_id: str, record: PublicKeyRecord) -> None:
        """Pin `record` for `data_owner_id` as verified: a person compared its fingerprint."""
        self.store.pin(data_owner_id, record, verified=True)

    def pinned_keys(self, data_owner_id: str) -> list[PublicKeyRecord]:
        return [pin.record for pin in self.store.pins.get(data_owner_id, {}).values()]

    def pin_of(self, data_owner_id: str, key_id: str) -> PinnedKey | None:
        """The pin of `data_owner_id`'s key `key_id`, if pinned (`verified` once a person compared it)."""
        return self.store.pins.get(data_owner_id, {}).get(key_id)

    # -- exchange data ------------------------------------------------------------------------------------

    def open(self, wire: Mapping[str, Any]) -> ExchangeSecrets:
        """K_ex and S_ac of an exchange data record (signature checked against the pins first), kept."""
        exchange_data_id = str(wire.get("id"))
        known = self.secrets.get(exchange_data_id)
        if known is not None and self.exchange_data.get(exchange_data_id) == wire:
            return known
        secrets = open_exchange_data(wire, self.store.key_pairs, self.store.pinned_records())
        self.exchange_data[exchange_data_id] = dict(wire)
        self.secrets[exchange_data_id] = secrets
        delegator, delegate = wire.get("delegator"), wire.get("delegate")
        own_ids = {keys.id for keys in self.store.key_pairs}
        if delegator == self.data_owner_id and not own_ids.intersection(wire.get(DELEGATOR_SIGNATURE) or {}):
            self.unsigned_own.add(exchange_data_id)
        else:
            self.unsigned_own.discard(exchange_data_id)
        if isinstance(delegator, str) and isinstance(delegate, str):
            self.by_pair.setdefault((delegator, delegate), exchange_data_id)
        if isinstance(delegator, str) and delegator != self.data_owner_id and secrets.search_key is not None:
            self.search_keys[delegator] = secrets.search_key
        return secrets

    def shared_with(self, delegate: str) -> tuple[str, ExchangeSecrets] | None:
        """The opened exchange data this data owner delegates to `delegate`, if known."""
        exchange_data_id = self.by_pair.get((self.data_owner_id, delegate))
        if exchange_data_id is None or exchange_data_id not in self.secrets:
            return None
        return exchange_data_id, self.secrets[exchange_data_id]

    # -- blind indexes ------------------------------------------------------------------------------------

    @property
    def own_search_key(self) -> bytes:
        if self.store.search_key is None:
            raise DecryptionError(f"the key store of {self.data_owner_id} holds no search key")
        return self.store.search_key

    def known_search_keys(self) -> list[bytes]:
        """Every search key a search uses: this data owner's, then each delegator's it learnt."""
        return [self.own_search_key, *self.search_keys.values()]

    def index_key_for(self, wire: Mapping[str, Any]) -> bytes:
        """The search key an entity's tokens are made under: its `responsible` data owner's if known, else
        this data owner's own."""
        responsible = wire.get("responsible")
        if isinstance(responsible, str) and responsible in self.search_keys:
            return self.search_keys[responsible]
        return self.own_search_key

    def blind_index(self, entity_type: str, wire: Mapping[str, Any]) -> dict[str, list[str]]:
        """The `blindIndex` of an entity from its clear values (empty for a kind without blind-index fields)."""
        fields = self.blind_indexed.get(entity_type)
        if not fields:
            return {}
        return entity_blind_index(self.index_key_for(wire), fields, wire)

    def set_blind_index(self, entity_type: str, wire: dict[str, Any], stored: Mapping[str, Any] | None = None) -> None:
        """Set `wire`'s `blindIndex` from its clear values, under the search key of its responsible data owner
        (`stored`'s when `wire` names none), or remove it when there is nothing to index; a kind without
        blind-index fields is left as it is."""
        if not self.blind_indexed.get(entity_type):
            return
        responsible = wire.get("responsible") or (stored or {}).get("responsible")
        index = self.blind_index(entity_type, {**wire, "responsible": responsible})
        if index:
            wire[BLIND_INDEX] = index
        else:
            wire.pop(BLIND_INDEX, None)

    def blind_field(self, entity_type: str, name: str) -> IndexedField | None:
        """The blind-index field `name` of `entity_type` when a search on it goes through tokens; None when it
        is searched in clear: the kind has no such field, or the server neither requires encryption nor
        encrypts any of the field's sources."""
        field = self.blind_indexed.get(entity_type, {}).get(name)
        if field is None:
            return None
        if not self.require_encryption and not set(self.fields_of(entity_type)).intersection(field.sources):
            return None
        return field

    def blind_search(self, entity_type: str, name: str, values: Iterable[Any]) -> list[list[str]] | None:
        """The token groups (`search_tokens`) that search `values` in the blind-index field `name` under every
        known search key; None when the field is searched in clear (`blind_field`)."""
        field = self.blind_field(entity_type, name)
        if field is None:
            return None
        return search_tokens(self.known_search_keys(), name, field, values)

    # -- entity keys --------------------------------------------------------------------------------------

    def missing_exchange_data(self, wire: Mapping[str, Any], *, made_by_self: bool = False) -> list[str]:
        """The exchange data ids of the entity's delegations to this data owner that are not opened yet; with
        `made_by_self`, of the delegations this data owner made to others instead."""
        missing = []
        own = self.data_owner_id
        for delegation in delegations_of(wire).values():
            exchange_data_id = delegation.get("exchangeDataId")
            wanted = (
                delegation.get("delegator") == own and delegation.get("delegate") != own
                if made_by_self
                else delegation.get("delegate") == own
            )
            if (
                wanted
                and isinstance(exchange_data_id, str)
                and delegation.get("encryptionKeys")
                and exchange_data_id not in self.secrets
                and exchange_data_id not in missing
            ):
                missing.append(exchange_data_id)
        return missing

    def entity_key(self, entity_type: str, wire: Mapping[str, Any], kid: bytes | None = None) -> EntityKey | None:
        """The entity's key (the one of `kid`, else of its `encryptedSelf`, else the newest its delegations to
        this data owner carry), from the cache or unwrapped with opened exchange data, through a delegation to
        this data owner or one it made; None when none opens."""
        entity_id = str(wire.get("id"))
        kid = kid or encrypted_self_kid(wire, entity_type)
        cached = None if kid is None else self.entity_keys.lookup((entity_type, entity_id, kid))
        if cached is not None:
            return cached
        found: EntityKey | None = None
        failure: DecryptionError | None = None
        own = self.data_owner_id
        what = f"{entity_type} {entity_id}: encryption key"
        metadata = wire.get(SECURITY_METADATA) or {}
        for delegation in (metadata.get(SECURE_DELEGATIONS) or {}).values():  # read, not copied: this is per event
            secrets = self.secrets.get(str(delegation.get("exchangeDataId")))
            if own not in (delegation.get("delegate"), delegation.get("delegator")) or secrets is None:
                continue
            for blob in delegation.get("encryptionKeys") or ():
                try:  # another delegation may carry the key intact
                    payload = unframe(blob, what, length=WRAPPED_KEY_SIZE)
                    if kid is not None and payload[:KID_SIZE] != kid:
                        continue
                    key = unwrap_payload(secrets.exchange_key, entity_type, entity_id, payload, what)
                except DecryptionError as exc:
                    failure = exc
                    continue
                self.entity_keys[(entity_type, entity_id, key.kid)] = key
                found = key
            if found is not None and kid is not None:
                return found
        if found is None and failure is not None:
            raise failure
        return found

    def remember(self, entity_type: str, entity_id: str, key: EntityKey) -> None:
        self.entity_keys[(entity_type, entity_id, key.kid)] = key

    # -- content ------------------------------------------------------------------------------------------

    def decrypt(self, entity_type: str, wire: Mapping[str, Any], key: EntityKey | None = None) -> dict[str, Any]:
        """The entity with its `encryptedSelf` merged back, with `key` when it is the one (`entity_key`'s answer,
        already found), else the one its delegations carry. DecryptionError when no delegation to this data
        owner carries its key (after the exchange data `missing_exchange_data` names was opened), or when the
        content does not decrypt."""
        if wire.get(ENCRYPTED_SELF) is None:
            return dict(wire)

        def key_of(kid: bytes) -> bytes:  # the kid is read from `encryptedSelf` as it is opened, once
            found = key if key is not None and key.kid == kid else self.entity_key(entity_type, wire, kid)
            if found is None:
                raise DecryptionError(
                    f"{entity_type} {wire.get('id')}: no delegation to {self.data_owner_id} carries its key "
                    f"(kid {kid.hex()}): it was not shared with this data owner's keys"
                )
            return found.key

        return decrypt_fields(wire, entity_type, key_of)

    def encrypt(self, entity_type: str, wire: Mapping[str, Any], key: EntityKey) -> dict[str, Any]:
        """The entity's wire dict with its encrypted fields in `encryptedSelf` under `key`; an entity of a kind
        without encrypted fields as it is, with no `encryptedSelf`."""
        fields = self.fields_of(entity_type)
        if not fields:
            return dict(wire)
        self.remember(entity_type, str(wire["id"]), key)
        return encrypt_fields(wire, entity_type, fields, key)

    # -- writes -------------------------------------------------------------------------------------------

    def for_write(
        self, entity_type: str, wire: Mapping[str, Any], stored: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The clear wire dict to encrypt for a write of `wire`: with an id (a new one when it has none), no
        `encryptedSelf`, its `blindIndex` made from its clear values under its responsible data owner's search
        key (`stored`'s responsible when `wire` names none), and, for an update (a `rev`) that carries no
        `securityMetadata`, the one of `stored`, the entity as the server has it."""
        clear = {name: value for name, value in wire.items() if name != ENCRYPTED_SELF}
        if clear.get("id") is None:
            # A version 7 UUID, as the server makes (`model/ids.py`): ids made one after the other sort one after the
            # other, so a batch's rows land together in every index keyed by id, not one page per row; it tells
            # when the entity was made, which the server knows already (it stamps `created`).
            clear["id"] = new_entity_id()
        stored_metadata = stored.get(SECURITY_METADATA) if stored is not None else None
        if clear.get("rev") is not None and clear.get(SECURITY_METADATA) is None and stored_metadata is not None:
            clear[SECURITY_METADATA] = stored_metadata
        self.set_blind_index(entity_type, clear, stored)
        return clear

    def with_own_delegation(self, entity_type: str, wire: Mapping[str, Any], key: EntityKey) -> dict[str, Any]:
        """`wire` with a WRITE delegation of `key` from this data owner to itself beside its other delegations
        (the exchange data with itself must be opened)."""
        name, delegation = self.delegation(entity_type, str(wire["id"]), key, self.data_owner_id, "WRITE")
        delegations = delegations_of(wire)
        delegations[name] = delegation
        return {**wire, SECURITY_METADATA: {SECURE_DELEGATIONS: delegations}}

    def delegation(
        self,
        entity_type: str,
        entity_id: str,
        key: EntityKey,
        delegate: str,
        permissions: Permission,
        parents: Iterable[str] = (),
    ) -> tuple[str, dict[str, Any]]:
        """A secure delegation from this data owner to `delegate` carrying `key`, with its delegation key; the
        exchange data self -> delegate must be opened (`shared_with`)."""
        shared = self.shared_with(delegate)
        if shared is None:
            raise DecryptionError(f"no exchange data of {self.data_owner_id} with {delegate} is open")
        exchange_data_id, secrets = shared
        blob = wrap_entity_key(secrets.exchange_key, entity_type, entity_id, key)
        value = secure_delegation(self.data_owner_id, delegate, exchange_data_id, [blob], permissions, parents)
        return delegation_key(secrets.access_control_secret, entity_type), value

    def carries(
        self,
        entity_type: str,
        entity_id: str,
        delegation: Mapping[str, Any] | None,
        key: EntityKey,
        permissions: Permission,
    ) -> bool:
        """Whether `delegation` (this data owner's, made with exchange data it opened) already carries `key`
        with `permissions`: sharing again would change nothing."""
        if delegation is None or delegation.get("delegator") != self.data_owner_id:
            return False
        secrets = self.secrets.get(str(delegation.get("exchangeDataId")))
        if secrets is None or delegation.get("permissions", "WRITE") != permissions:
            return False
        for blob in delegation.get("encryptionKeys") or ():
            try:
                if unwrap_entity_key(secrets.exchange_key, entity_type, entity_id, blob) == key:
                    return True
            except DecryptionError:
                continue
        return False

    def rewrapped(
        self, entity_type: str, entity_id: str, delegations: Mapping[str, Mapping[str, Any]], key: EntityKey
    ) -> dict[str, dict[str, Any]]:
        """`delegations` with `key` in place of the keys of every delegation this data owner made with exchange
        data it holds; the others (another delegator's, the server's) are left as they are."""
        result: dict[str, dict[str, Any]] = {}
        for name, delegation in delegations.items():
            value = dict(delegation)
            secrets = self.secrets.get(str(value.get("exchangeDataId")))
            if value.get("delegator") == self.data_owner_id and value.get("encryptionKeys") and secrets is not None:
                value["encryptionKeys"] = [wrap_entity_key(secrets.exchange_key, entity_type, entity_id, key)]
            result[name] = value
        return result
