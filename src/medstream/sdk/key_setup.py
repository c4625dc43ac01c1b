"""The logged-in data owner's keys at login: its key store opened (or made, on its first login, and its public
keys published on its data-owner entity; a store without a search key gets one; restored from a recovery code or
the key vault when it lacks the published keys), and the server's encryption configuration read once.

A data owner whose entity lists keys none of which its key store holds is refused with `MissingKeysError`
saying how to get them back: a new key pair would leave everything encrypted for the published keys unreadable.
Only when the application asks for it (`KeyStoreOptions.new_key_pair_after_loss`) does it make a new key pair
then: the lost keys stay published as RETIRED (no new wrap goes to a key no one holds), the new one is published
ACTIVE, and each counterparty gets a KEY_PAIR_UPDATE notification asking it to give access back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medstream.crypto.blind_index import IndexedField, parse_blind_indexed
from medstream.crypto.key_store_format import Argon2Parameters, KeyStore, decode_private
from medstream.crypto.owner_keys import DataOwnerKeyPair, parse_crypto_keys
from medstream.crypto.recovery import open_recovery_blob, parse_recovery_code
from medstream.crypto.state import CryptoState
from medstream.errors import ConflictError, MissingKeysError, ValidationError
from medstream.model.entities import KIND_BY_NAME
from medstream.sdk.crypto_api import CryptoApi
from medstream.sdk.key_store import default_key_store_path, key_store_lock, load_key_store, save_key_store
from medstream.sdk.key_vault import read_key_vault
from medstream.sdk.transport import Transport


@dataclass(frozen=True)
class KeyStoreOptions:
    """Where the key store is (None: the default place), its passphrase, what to restore the keys from when the
    store lacks them (a recovery code with its blob, or the key vault with its passphrase), and whether a new key
    pair replaces keys that are lost for good."""

    path: Path | None = None
    passphrase: str | None = None
    argon2: Argon2Parameters | None = None
    recovery: tuple[str, str] | None = None
    vault_passphrase: str | None = field(default=None, repr=False)
    new_key_pair_after_loss: bool = False


@dataclass(frozen=True)
class EncryptionConfiguration:
    """The server's encryption configuration (`GET /rest/v1/crypto/configuration`): the fields that travel in
    `encryptedSelf` by kind, the blind-index fields by kind, and whether encryption is required."""

    encrypted_fields: dict[str, tuple[str, ...]]
    blind_indexed: dict[str, dict[str, IndexedField]]
    require_encryption: bool


def parse_encryption_configuration(payload: Mapping[str, Any]) -> EncryptionConfiguration:
    """The configuration from the body of `GET /rest/v1/crypto/configuration`."""
    return EncryptionConfiguration(
        {str(kind): tuple(str(name) for name in names) for kind, names in payload["encryptedFields"].items()},
        parse_blind_indexed(payload.get("blindIndexed")),
        payload.get("requireEncryption") is True,
    )


async def encryption_configuration(transport: Transport) -> EncryptionConfiguration:
    """The server's encryption configuration, read once at login."""
    return parse_encryption_configuration(await transport.request("GET", "/rest/v1/crypto/configuration"))


def _missing(owner_id: str, published: list[str], path: Path) -> MissingKeysError:
    return MissingKeysError(
        f"data owner {owner_id} has published the keys {', '.join(published)}, and the key store {path} holds none "
        f"of them: this device lacks the private keys, and a new key pair would leave everything encrypted for them "
        f"unreadable. Copy the key store file from a device that has it to {path}, or restore the keys with your "
        f"recovery code and its blob (MedTechApi.builder()...with_recovery(code, blob)) or from your key vault "
        f"(...with_key_vault(passphrase)), then log in again. If the keys are lost for good, "
        f"MedTechApi.builder()...with_new_key_pair_after_loss() makes a new key pair and asks your counterparties "
        f"to give access back to what you shared with them; the rest stays unreadable."
    )


async def _from_vault(
    transport: Transport, owner_id: str, published: list[str], path: Path, passphrase: str, local: KeyStore | None
) -> KeyStore:
    """The key store kept in the user's key vault, with the pins of the local store (if any) added."""
    vaulted = await read_key_vault(transport, passphrase)
    if vaulted is None:
        raise MissingKeysError(f"{_missing(owner_id, published, path).message} The server keeps no key vault for you.")
    if vaulted.data_owner_id != owner_id:
        raise ValidationError(f"your key vault holds the keys of data owner {vaulted.data_owner_id}, not {owner_id}")
    for pinned_owner, pins in (local.pins if local is not None else {}).items():
        for pin in pins.values():
            vaulted.pin(pinned_owner, pin.record, verified=pin.verified)
    if vaulted.search_key is None and local is not None:
        vaulted.search_key = local.search_key
    return vaulted


def _lacks(store: KeyStore | None, published_ids: set[str]) -> bool:
    """Whether the key store is missing, or holds none of the published keys."""
    return store is None or not published_ids & {keys.id for keys in store.key_pairs}


def _renewed(owner_id: str, store: KeyStore | None, published_ids: set[str]) -> tuple[KeyStore, bool]:
    """A key store with an ACTIVE key pair that is not published, for a data owner whose published keys are
    lost, and whether it changed: a new one, unless a login that made one stopped before publishing it. An
    existing store keeps its pins and search key."""
    if store is not None and any(keys.id not in published_ids for keys in store.active_key_pairs()):
        return store, False
    pair = DataOwnerKeyPair.generate(int(time.time() * 1000))
    if store is None:
        return KeyStore(owner_id, [pair]), True
    return KeyStore(owner_id, [*store.key_pairs, pair], store.pins, store.search_key), True


def _retired_lost(records: list[dict[str, Any]], store: KeyStore) -> list[dict[str, Any]]:
    """The published `cryptoKeys` with every ACTIVE key the store does not hold turned RETIRED: kept (old
    exchange data still names them), but no new wrap goes to a key no one holds."""
    held = {keys.id for keys in store.key_pairs}
    return [
        {**entry, "status": "RETIRED"} if entry.get("id") not in held and entry.get("status") == "ACTIVE" else entry
        for entry in records
    ]


def _load(path: Path, owner_id: str, options: KeyStoreOptions) -> KeyStore | None:
    if not path.exists():
        return None
    store = load_key_store(path, options.passphrase)
    if store.data_owner_id != owner_id:
        raise ValidationError(f"key store {path} belongs to data owner {store.data_owner_id}, not {owner_id}")
    return store


_PUBLISH_ATTEMPTS = 3


class _PublishedMeanwhile(Exception):
    """The data owner's record changed since it was read, as its keys were to be published."""


async def open_crypto(
    transport: Transport, owner_type: str, owner: dict[str, Any], options: KeyStoreOptions
) -> CryptoApi:
    """The data owner's crypto API: its key store opened or made, its public keys published if they are not;
    under the key store's lock (`key_store_lock`). When the record changed before the keys were published (keys
    published by another login of this data owner), the record is read again and the key store opened again:
    on this machine it holds the keys the other login made; from another device, they are this one's lost keys
    (MissingKeysError, as at any later login)."""
    owner_id = str(owner["id"])
    path = options.path or default_key_store_path(transport.urls[0], owner_id)
    collection = KIND_BY_NAME[owner_type].collection
    async with key_store_lock(path):
        for _ in range(_PUBLISH_ATTEMPTS - 1):
            try:
                return await _open_locked(transport, owner_type, owner, path, options)
            except _PublishedMeanwhile:
                owner = await transport.request("GET", f"/rest/v1/{collection}/{owner_id}")
        try:
            return await _open_locked(transport, owner_type, owner, path, options)
        except _PublishedMeanwhile:
            raise ConflictError(
                f"the keys of data owner {owner_id} were published by another login while this one published its "
                f"own, {_PUBLISH_ATTEMPTS} times: log in again"
            ) from None


async def _open_locked(
    transport: Transport, owner_type: str, owner: dict[str, Any], path: Path, options: KeyStoreOptions
) -> CryptoApi:
    owner_id = str(owner["id"])
    published = parse_crypto_keys(owner.get("cryptoKeys") or [])
    published_ids = {record.id for record in published}
    store = await asyncio.to_thread(_load, path, owner_id, options)
    changed = False
    if options.recovery is not None and _lacks(store, published_ids):
        code, blob = options.recovery
        recovered, search_key = decode_private(open_recovery_blob(parse_recovery_code(code), blob), "recovery blob")
        if search_key is None and store is not None:
            search_key = store.search_key
        store = KeyStore(owner_id, recovered, store.pins if store is not None else {}, search_key)
        changed = True
    if options.vault_passphrase is not None and published and _lacks(store, published_ids):
        store = await _from_vault(transport, owner_id, sorted(published_ids), path, options.vault_passphrase, store)
        changed = True
    lost = bool(published) and _lacks(store, published_ids)
    if lost and not options.new_key_pair_after_loss:
        raise _missing(owner_id, sorted(published_ids), path)
    if lost:
        store, renewed = _renewed(owner_id, store, published_ids)
        changed = changed or renewed
    elif store is None or not store.key_pairs:
        store = KeyStore(owner_id, [DataOwnerKeyPair.generate(int(time.time() * 1000))])
        changed = True
    assert store is not None
    changed = store.ensure_search_key() or changed
    if changed:  # saved before anything is published: a key is never published that no store holds
        await asyncio.to_thread(save_key_store, path, store, options.passphrase, parameters=options.argon2)
    records = list(owner.get("cryptoKeys") or [])
    if lost:
        records = _retired_lost(records, store)
    unpublished = [keys.public.to_wire() for keys in store.active_key_pairs() if keys.id not in published_ids]
    if unpublished or lost:
        updated = {**owner, "cryptoKeys": [*records, *unpublished]}
        try:
            await transport.request("POST", f"/rest/v1/{KIND_BY_NAME[owner_type].collection}", updated)
        except ConflictError:
            raise _PublishedMeanwhile from None
    configuration = await encryption_configuration(transport)
    state = CryptoState(
        store, configuration.encrypted_fields, configuration.blind_indexed, configuration.require_encryption
    )
    crypto = CryptoApi(transport, state, path, options.passphrase, options.argon2)
    if lost:
        await crypto.notify_key_pair_update()
    return crypto
