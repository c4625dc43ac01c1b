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

A reader trusts K_ex and S_ac only after a signature verifies under a signing key of the delegator that the
reader has pinned. Only the delegator can sign, so only the delegator can add wraps for a new key of either
party (`add_wraps`): a delegate with a new key keeps reading through a key it already had a wrap for, and asks
the delegator (any device holding one of the delegator's keys) to add the new one; a delegate's own exchange
data (where it is the delegator, its own included) it extends itself.
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


def signed_content(wire: Mapping[str, Any]) -> bytes:
    """What the delegator signs: the context, then the canonical JSON (orjson, sorted keys) of the five fields,
    and of `searchKey` when the record has one."""
    content = {name: wire.get(name) for name in ("id", "delegator", "delegate", *WRAPPED_FIELDS)}
    if wire.get(SEARCH_KEY):
        content[SEARCH_KEY] = wire[SEARCH_KEY]
    return ctx("exchange-data-signature") + orjson.dumps(content, option=orjson.OPT_SORT_KEYS)


def sign_exchange_data(wire: Mapping[str, Any], delegator_keys: Iterable[DataOwnerKeyPair]) -> dict[str, str]:
    """The `delegatorSignature` map of `wire`: one signature per key pair of the delegator given."""
    content = signed_content(wire)
    signatures = {keys.id: frame(keys.signing_private.sign(content)) for keys in delegator_keys}
    if not signatures:
        raise ValidationError("exchange data: the delegator's key pair is needed to sign it")
    return signatures


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


def add_wraps(
    wire: Mapping[str, Any],
    secrets: ExchangeSecrets,
    new_keys: Iterable[PublicKeyRecord],
    delegator_keys: Iterable[DataOwnerKeyPair],
) -> dict[str, Any]:
    """The same ExchangeData with wraps for `new_keys` added (of each secret of `secrets`: a search key the
    record lacks is added for every one of them) and a new delegator signature (the old ones do not cover the
    new maps). Only the delegator holds the signing keys this needs."""
    updated = dict(wire)
    exchange_data_id = str(wire["id"])
    for field_name, secret in secrets.wrapped():
        wraps = dict(wire.get(field_name) or {})
        for record in new_keys:
            if record.is_active and record.id not in wraps:
                wraps[record.id] = wrap_secret(secret, exchange_data_id, field_name, record)
        updated[field_name] = wraps
    updated["delegatorSignature"] = sign_exchange_data(updated, delegator_keys)
    return updated


def verify_exchange_data(wire: Mapping[str, Any], pins: Mapping[str, Mapping[str, PublicKeyRecord]]) -> str:
    """The id of the delegator's pinned key whose signature verifies; DecryptionError when none does (no
    signature by a pinned key, or a signature that does not verify: a substituted key or altered content)."""
    exchange_data_id, delegator = wire.get("id"), wire.get("delegator")
    what = f"exchange data {exchange_data_id}"
    pinned = pins.get(delegator) if isinstance(delegator, str) else None
    if not pinned:
        raise DecryptionError(f"{what}: no pinned key for its delegator {delegator!r}")
    signatures = wire.get("delegatorSignature")
    if not isinstance(signatures, Mapping):
        raise DecryptionError(f"{what}: no delegatorSignature")
    candidates = [str(kid) for kid in signatures if kid in pinned]
    if not candidates:
        raise DecryptionError(f"{what}: signed only by keys of {delegator} that are not pinned: {sorted(signatures)}")
    content = signed_content(wire)
    for kid in candidates:
        signature = unframe(signatures[kid], f"{what}: signature {kid}", length=SIGNATURE_SIZE)
        try:
            pinned[kid].signing_public_key().verify(signature, content)
        except InvalidSignature:
            continue
        return kid
    raise DecryptionError(f"{what}: the signature does not verify under the pinned key(s) {candidates} of {delegator}")


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
