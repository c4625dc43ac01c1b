"""ExchangeData: the secrets one data owner (the delegator) shares with another (the delegate), or with itself.

`exchangeKey` (K_ex, which wraps entity keys) and `accessControlSecret` (S_ac, from which delegation keys come)
are each wrapped with HPKE for every ACTIVE public key of both parties, and so is `searchKey`, the delegator's
search key (the key of its blind-index tokens), when the record carries one:

    blob = b64(0x01 || enc(32) || ct)   info = ctx("exchange-data", id, fieldName, publicKeyId)

and the delegator signs the record with each of its key pairs at hand:

    delegatorSignature[keyId] = b64(0x01 || Ed25519(ctx("exchange-data-signature") + canonical_json(
        {"id", "delegator", "delegate", "exchangeKey", "accessControlSecret"[, "searchKey"]})))

`searchKey` is part of the signed content only when the record has one (a non-empty map), so records without
it are signed exactly as before, and a search key removed from or added to a signed record breaks the signature.

A reader trusts K_ex and S_ac only after a signature verifies under a key it has pinned: the delegator's
signature, or a signature of the delegate under `delegateSignature`, made the same way over the same content
with the context `ctx("exchange-data-delegate-signature")`. The delegator adds wraps for a new key of either
party and signs again (`add_wraps`, which drops any delegate signature: it would not cover the new maps). The
delegate adds wraps for a new key of a delegator that lost its keys and signs as delegate
(`add_wraps_as_delegate`), as the delegator no longer can; the delegator, once it opens them with its new key,
signs the record again itself. Trusting the delegate's signature gives the delegate no power it lacks: it
holds K_ex, S_ac and the search key the record carries already. Whoever else writes the record (the server
included) can make neither signature.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke

from medstream.crypto.owner_keys import DataOwnerKeyPair, PublicKeyRecord
from medstream.crypto.suite import KEY_SIZE, SIGNATURE_SIZE, ctx, frame, unframe
from medstream.errors import DecryptionError, ValidationError

HPKE_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
WRAPPED_FIELDS = ("exchangeKey", "accessControlSecret")
SEARCH_KEY = "searchKey"
DELEGATOR_SIGNATURE = "delegatorSignature"
DELEGATE_SIGNATURE = "delegateSignature"
_SIGNATURE_CONTEXTS = {
    DELEGATOR_SIGNATURE: "exchange-data-signature",
    DELEGATE_SIGNATURE: "exchange-data-delegate-signature",
}
_WRAP_SIZE = 32 + KEY_SIZE + 16  # HPKE enc, the 32-byte secret, the AES-GCM tag


@dataclass(frozen=True)
class ExchangeSecrets:
    """What an opened ExchangeData holds: K_ex and S_ac, and the delegator's search key when it carries one."""

    exchange_key: bytes
    access_control_secret: bytes
    search_key: bytes | None = None

    @classmethod
    def generate(cls, search_key: bytes | None = None) -> ExchangeSecrets:
        return cls(os.urandom(KEY_SIZE), os.urandom(KEY_SIZE), search_key)

    def wrapped(self) -> list[tuple[str, bytes]]:
        """The (field name, secret) pairs a record carries wrapped: K_ex, S_ac, and the search key if any."""
        pairs = [(WRAPPED_FIELDS[0], self.exchange_key), (WRAPPED_FIELDS[1], self.access_control_secret)]
        if self.search_key is not None:
            pairs.append((SEARCH_KEY, self.search_key))
        return pairs

    def __repr__(self) -> str:  # never the secrets
        return "ExchangeSecrets(...)"


def _info(exchange_data_id: str, field_name: str, public_key_id: str) -> bytes:
    return ctx("exchange-data", exchange_data_id, field_name, public_key_id)


def wrap_secret(secret: bytes, exchange_data_id: str, field_name: str, recipient: PublicKeyRecord) -> str:
    """One HPKE wrap of `secret` for `recipient`, bound to its exchange data, field and key id."""
    info = _info(exchange_data_id, field_name, recipient.id)
    return frame(HPKE_SUITE.encrypt(secret, recipient.encryption_public_key(), info))


def unwrap_secret(blob: object, exchange_data_id: str, field_name: str, own: DataOwnerKeyPair) -> bytes:
    what = f"exchange data {exchange_data_id}: {field_name} for key {own.id}"
    sealed = unframe(blob, what, length=_WRAP_SIZE)
    try:
        secret = HPKE_SUITE.decrypt(sealed, own.encryption_private, _info(exchange_data_id, field_name, own.id))
    except (InvalidTag, ValueError):  # InvalidTag for any wrong or changed byte (the all-zero point included)
        raise DecryptionError(f"{what}: authentication failed (wrong key, wrong place, or altered)") from None
    if len(secret) != KEY_SIZE:
        raise DecryptionError(f"{what}: {len(secret)}-byte secret, expected {KEY_SIZE}")
    return secret


def signed_content(wire: Mapping[str, Any], signature_field: str = DELEGATOR_SIGNATURE) -> bytes:
    """What a party signs: the context of its signature field, then the canonical JSON (orjson, sorted keys) of
    the five fields, and of `searchKey` when the record has one."""
    content = {name: wire.get(name) for name in ("id", "delegator", "delegate", *WRAPPED_FIELDS)}
    if wire.get(SEARCH_KEY):
        content[SEARCH_KEY] = wire[SEARCH_KEY]
    return ctx(_SIGNATURE_CONTEXTS[signature_field]) + orjson.dumps(content, option=orjson.OPT_SORT_KEYS)


def sign_exchange_data(
    wire: Mapping[str, Any], keys: Iterable[DataOwnerKeyPair], signature_field: str = DELEGATOR_SIGNATURE
) -> dict[str, str]:
    """The `delegatorSignature` map of `wire` (or its `delegateSignature` map): one signature per key pair of
    that party given."""
    content = signed_content(wire, signature_field)
    signatures = {pair.id: frame(pair.signing_private.sign(content)) for pair in keys}
    if not signatures:
        raise ValidationError(f"exchange data: a key pair of the party is needed to make its {signature_field}")
    return signatures


def wrapped_key_ids(wire: Mapping[str, Any]) -> frozenset[str]:
    """The public key ids the record wraps both K_ex and S_ac for."""
    exchange_keys, access_secrets = wire.get(WRAPPED_FIELDS[0]), wire.get(WRAPPED_FIELDS[1])
    if not isinstance(exchange_keys, Mapping) or not isinstance(access_secrets, Mapping):
        return frozenset()
    return frozenset(str(kid) for kid in exchange_keys if kid in access_secrets)


def create_exchange_data(
    exchange_data_id: str,
    delegator: str,
    delegate: str,
    delegator_keys: Iterable[DataOwnerKeyPair],
    recipients: Iterable[PublicKeyRecord],
    secrets: ExchangeSecrets | None = None,
) -> tuple[dict[str, Any], ExchangeSecrets]:
    """A new ExchangeData wire dict and its secrets: K_ex and S_ac (and the search key of `secrets`, if any)
    wrapped for every ACTIVE key among `recipients` (the public keys of both parties), signed with each of
    `delegator_keys`."""
    secrets = secrets or ExchangeSecrets.generate()
    active = {record.id: record for record in recipients if record.is_active}
    if not active:
        raise ValidationError(f"exchange data {exchange_data_id}: no ACTIVE public key to wrap its secrets for")
    wire: dict[str, Any] = {"id": exchange_data_id, "delegator": delegator, "delegate": delegate}
    for field_name, secret in secrets.wrapped():
        wire[field_name] = {kid: wrap_secret(secret, exchange_data_id, field_name, r) for kid, r in active.items()}
    wire["delegatorSignature"] = sign_exchange_data(wire, delegator_keys)
    return wire, secrets


def _with_wraps(
    wire: Mapping[str, Any], secrets: ExchangeSecrets, new_keys: Iterable[PublicKeyRecord]
) -> dict[str, Any]:
    updated = dict(wire)
    exchange_data_id = str(wire["id"])
    keys = [record for record in new_keys if record.is_active]
    for field_name, secret in secrets.wrapped():
        wraps = dict(wire.get(field_name) or {})
        for record in keys:
            if record.id not in wraps:
                wraps[record.id] = wrap_secret(secret, exchange_data_id, field_name, record)
        updated[field_name] = wraps
    return updated


def add_wraps(
    wire: Mapping[str, Any],
    secrets: ExchangeSecrets,
    new_keys: Iterable[PublicKeyRecord],
    delegator_keys: Iterable[DataOwnerKeyPair],
) -> dict[str, Any]:
    """The same ExchangeData with wraps for `new_keys` added (of each secret of `secrets`: a search key the
    record lacks is added for every one of them) and a new delegator signature (the old ones do not cover the
    new maps), without a delegate signature. Only the delegator holds the signing keys this needs."""
    updated = _with_wraps(wire, secrets, new_keys)
    updated.pop(DELEGATE_SIGNATURE, None)
    updated[DELEGATOR_SIGNATURE] = sign_exchange_data(updated, delegator_keys)
    return updated


def add_wraps_as_delegate(
    wire: Mapping[str, Any],
    secrets: ExchangeSecrets,
    new_keys: Iterable[PublicKeyRecord],
    delegate_keys: Iterable[DataOwnerKeyPair],
) -> dict[str, Any]:
    """The same ExchangeData with wraps for `new_keys` (a delegator's new key) added by its delegate, which
    signs the result under `delegateSignature`; the delegator's signature is left as it was (it no longer
    covers the maps: the delegator signs again once it opens the record with its new key)."""
    updated = _with_wraps(wire, secrets, new_keys)
    updated[DELEGATE_SIGNATURE] = sign_exchange_data(updated, delegate_keys, DELEGATE_SIGNATURE)
    return updated


def _verify_party(
    wire: Mapping[str, Any], pins: Mapping[str, Mapping[str, PublicKeyRecord]], party: str, signature_field: str
) -> str:
    """The id of `party`'s pinned key whose signature under `signature_field` verifies; DecryptionError when none
    does."""
    what = f"exchange data {wire.get('id')}"
    owner = wire.get(party)
    pinned = pins.get(owner) if isinstance(owner, str) else None
    if not pinned:
        raise DecryptionError(f"{what}: no pinned key for its {party} {owner!r}")
    signatures = wire.get(signature_field)
    if not isinstance(signatures, Mapping):
        raise DecryptionError(f"{what}: no {signature_field}")
    candidates = [str(kid) for kid in signatures if kid in pinned]
    if not candidates:
        raise DecryptionError(f"{what}: signed only by keys of {owner} that are not pinned: {sorted(signatures)}")
    content = signed_content(wire, signature_field)
    for kid in candidates:
        signature = unframe(signatures[kid], f"{what}: signature {kid}", length=SIGNATURE_SIZE)
        try:
            pinned[kid].signing_public_key().verify(signature, content)
        except InvalidSignature:
            continue
        return kid
    raise DecryptionError(f"{what}: the signature does not verify under the pinned key(s) {candidates} of {owner}")


def verify_exchange_data(wire: Mapping[str, Any], pins: Mapping[str, Mapping[str, PublicKeyRecord]]) -> str:
    """The id of the pinned key whose signature verifies: the delegator's, else (on a record that carries
    `delegateSignature`) the delegate's. DecryptionError when none does (no signature by a pinned key, or a
    signature that does not verify: a substituted key or altered content), naming why the delegator's failed."""
    try:
        return _verify_party(wire, pins, "delegator", DELEGATOR_SIGNATURE)
    except DecryptionError as by_delegator:
        if not wire.get(DELEGATE_SIGNATURE):
            raise
        try:
            return _verify_party(wire, pins, "delegate", DELEGATE_SIGNATURE)
        except DecryptionError as by_delegate:
            reason = by_delegate.message.removeprefix(f"exchange data {wire.get('id')}: ")
            raise DecryptionError(f"{by_delegator.message}; by its delegate: {reason}") from None


def open_exchange_data(
    wire: Mapping[str, Any],
    own_keys: Iterable[DataOwnerKeyPair],
    pins: Mapping[str, Mapping[str, PublicKeyRecord]],
) -> ExchangeSecrets:
    """K_ex and S_ac of an ExchangeData, and the delegator's search key when it carries one: the delegator's
    signature is verified first (`pins`: data owner id -> key id -> pinned public record), then the wraps for
    one of `own_keys` are opened."""
    verify_exchange_data(wire, pins)
    exchange_data_id = str(wire.get("id"))
    exchange_keys, access_secrets = wire.get("exchangeKey"), wire.get("accessControlSecret")
    if not isinstance(exchange_keys, Mapping) or not isinstance(access_secrets, Mapping):
        raise DecryptionError(f"exchange data {exchange_data_id}: exchangeKey or accessControlSecret missing")
    search_keys = wire.get(SEARCH_KEY) or {}
    keys = list(own_keys)
    for own in keys:
        if own.id in exchange_keys and own.id in access_secrets:
            search_key = None
            if isinstance(search_keys, Mapping) and own.id in search_keys:
                search_key = unwrap_secret(search_keys[own.id], exchange_data_id, SEARCH_KEY, own)
            return ExchangeSecrets(
                unwrap_secret(exchange_keys[own.id], exchange_data_id, "exchangeKey", own),
                unwrap_secret(access_secrets[own.id], exchange_data_id, "accessControlSecret", own),
                search_key,
            )
    raise DecryptionError(
        f"exchange data {exchange_data_id}: no wrap for any of this data owner's keys {[k.id for k in keys]}"
    )
