"""The write rules of secure delegations, crypto keys and exchange data: pure functions that the store applies
to every write (docs/protocol.md, "Write rules"). Each takes what was sent, what is stored and the actor, and
answers the metadata to store or raises the error that refuses the write.

A client makes delegations from its own data owner only; the server adds the key-less delegations an entity
needs for its creator, for a data owner's own record and for a user's data owner; a delegation stays as it is
unless its delegator (or an admin) changes it, and one the server made changes only through an admin or the
access routes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from medstream.access import Actor
from medstream.errors import ConflictError, ForbiddenError, ValidationError
from medstream.model.common import Entity
from medstream.model.entities import EntityKind
from medstream.model.exchange_data import ExchangeData
from medstream.model.security import (
    AccessLevel,
    CryptoKey,
    KeyStatus,
    SecureDelegation,
    SecurityMetadata,
    is_server_delegation,
    server_delegation_key,
)
from medstream.model.user import User

EMPTY = SecurityMetadata()


@functools.lru_cache(maxsize=65_536)
def server_delegation(delegator: str | None, delegate: str) -> tuple[str, SecureDelegation]:
    """A key-less WRITE delegation the server makes, with its key: the same objects for the same pair."""
    delegation = SecureDelegation(delegator=delegator, delegate=delegate, permissions=AccessLevel.WRITE)
    return server_delegation_key(delegator, delegate), delegation


@functools.lru_cache(maxsize=1024)
def server_metadata(delegator: str | None, delegates: frozenset[str]) -> SecurityMetadata:
    """The metadata of an entity no client delegation was sent for. Shared by the entities of a batch (and
    beyond): building it was a sixth of a batch write's time. Never mutated."""
    return SecurityMetadata(secure_delegations=dict(server_delegation(delegator, d) for d in sorted(delegates)))


def _with_server_delegations(
    metadata: SecurityMetadata, delegator: str | None, delegates: Iterable[str]
) -> SecurityMetadata:
    """`metadata` with a server delegation to each of `delegates` it does not already give access to."""
    missing = [d for d in delegates if d not in metadata.readers]
    if not missing:
        return metadata
    delegations = dict(metadata.secure_delegations)
    delegations.update(server_delegation(delegator, d) for d in sorted(missing))
    return SecurityMetadata(secure_delegations=delegations)


def _needed_readers(kind: EntityKind, entity_id: str, entity: Entity, actor: Actor) -> frozenset[str]:
    """Who must read a new entity: its creator's data owner, a data owner itself, a user's data owner; for
    exchange data, its delegator and delegate and no one else."""
    if isinstance(entity, ExchangeData):
        return frozenset(party for party in (entity.delegator, entity.delegate) if party is not None)
    readers: set[str] = set()
    if actor.data_owner_id is not None:
        readers.add(actor.data_owner_id)
    if kind.is_data_owner:
        readers.add(entity_id)
    if isinstance(entity, User) and entity.data_owner_id is not None:
        readers.add(entity.data_owner_id)
    return frozenset(readers)


def _check_own(key: str, delegation: SecureDelegation, actor: Actor) -> None:
    if actor.data_owner_id is None or delegation.delegator != actor.data_owner_id:
        raise ForbiddenError(
            f"securityMetadata.secureDelegations[{key}]: its delegator is {delegation.delegator!r}; a client makes "
            f"delegations from its own data owner ({actor.data_owner_id!r}) only"
        )


def metadata_for_create(kind: EntityKind, entity_id: str, entity: Entity, actor: Actor) -> SecurityMetadata:
    """The security metadata a new entity is stored with: the delegations sent (each from the actor's data
    owner, else ForbiddenError naming it) and the server's for the readers it needs. An exchange data's is
    the server's alone: its readers are its two parties."""
    needed = _needed_readers(kind, entity_id, entity, actor)
    sent = entity.security_metadata
    if sent is None or not sent.secure_delegations or kind.is_exchange_data:
        return server_metadata(actor.data_owner_id, needed)
    for key, delegation in sent.secure_delegations.items():
        _check_own(key, delegation, actor)
    return _with_server_delegations(sent, actor.data_owner_id, needed)


def check_can_write(kind: EntityKind, current: Entity, actor: Actor) -> None:
    """Modifying or deleting an entity needs a WRITE delegation to the actor's data owner (or an admin). Exchange
    data is modified or deleted by its two parties only, admins included: its wraps are theirs to give."""
    if isinstance(current, ExchangeData):
        if actor.data_owner_id is None or actor.data_owner_id not in (current.delegator, current.delegate):
            raise ForbiddenError(
                f"exchange data {current.id} is modified by its delegator {current.delegator} or its delegate "
                f"{current.delegate} only"
            )
        return
    if actor.is_admin:
        return
    metadata = current.security_metadata or EMPTY
    if actor.data_owner_id is None or actor.data_owner_id not in metadata.writers:
        raise ForbiddenError(f"{kind.name} {current.id} is shared with you for reading only (no WRITE delegation)")


def metadata_for_update(kind: EntityKind, entity: Entity, current: Entity, actor: Actor) -> SecurityMetadata:
    """The security metadata a modified entity is stored with. None sent keeps the stored one. Otherwise a
    delegation whose delegator is not the actor must come back unchanged, one the server made stays (only
    an admin changes or removes those), and the actor's own may be added, changed or removed."""
    stored = current.security_metadata or EMPTY
    sent = entity.security_metadata
    unchanged = kind.is_exchange_data or sent is None or sent == stored
    result = stored if unchanged or sent is None else _checked_change(stored, sent, actor)
    if isinstance(entity, User) and entity.data_owner_id is not None:
        result = _with_server_delegations(result, actor.data_owner_id, (entity.data_owner_id,))
    return result


def _checked_change(stored: SecurityMetadata, sent: SecurityMetadata, actor: Actor) -> SecurityMetadata:
    before, after = stored.secure_delegations, sent.secure_delegations
    for key, old in before.items():
        new = after.get(key)
        if new == old or actor.is_admin:
            continue
        what = "removed" if new is None else "changed"
        if is_server_delegation(key, old):
            raise ForbiddenError(
                f"securityMetadata.secureDelegations[{key}] was made by the server and cannot be {what} "
                f"(DELETE .../access/{old.delegate} revokes it)"
            )
        if old.delegator != actor.data_owner_id:
            raise ForbiddenError(
                f"securityMetadata.secureDelegations[{key}] is {old.delegator!r}'s: only its delegator may "
                f"have it {what}"
            )
        if new is not None:
            _check_own(key, new, actor)
    for key, new in after.items():
        if key not in before:
            _check_own(key, new, actor)
    return sent


def with_access(metadata: SecurityMetadata, actor: Actor, data_owner_id: str) -> SecurityMetadata:
    """`metadata` sharing the entity with `data_owner_id` (a server delegation from the actor's data owner);
    the same object when it already does."""
    return _with_server_delegations(metadata, actor.data_owner_id, (data_owner_id,))


def without_access(metadata: SecurityMetadata, actor: Actor, data_owner_id: str) -> SecurityMetadata:
    """`metadata` without the actor's delegations to `data_owner_id` (an admin's: anyone's); the same object
    when there are none."""
    kept = {
        key: d
        for key, d in metadata.secure_delegations.items()
        if not (d.delegate == data_owner_id and (actor.is_admin or d.delegator == actor.data_owner_id))
    }
    if len(kept) == len(metadata.secure_delegations):
        return metadata
    return SecurityMetadata(secure_delegations=kept)


def check_crypto_keys(entity_id: str, sent: list[CryptoKey], stored: list[CryptoKey], actor: Actor) -> None:
    """Only the data owner itself changes its `cryptoKeys`; a published record never changes but for its
    status, from ACTIVE to RETIRED, and is never removed."""
    if sent == stored:
        return
    if actor.data_owner_id != entity_id:
        raise ForbiddenError(f"only the data owner {entity_id} itself changes its cryptoKeys")
    by_id: dict[str, CryptoKey] = {}
    for key in sent:
        if key.id in by_id:
            raise ValidationError(f"cryptoKeys: key {key.id} appears more than once")
        by_id[key.id] = key
    for old in stored:
        new = by_id.get(old.id)
        if new is None:
            raise ValidationError(f"cryptoKeys: key {old.id} is published and cannot be removed (retire it)")
        if new == old:
            continue
        retired = old.model_copy(update={"status": KeyStatus.RETIRED})
        if old.status is not KeyStatus.ACTIVE or new != retired:
            raise ValidationError(
                f"cryptoKeys: key {old.id} is published; only its status changes, from ACTIVE to RETIRED"
            )


_ACTOR_KEY_FIELDS = (
    "public_keys_for_oaep_with_sha256",
    "public_key",
    "hc_party_keys",
    "aes_exchange_keys",
    "transfer_keys",
    "private_key_shamir_partitions",
)


def check_actor_keys(entity_id: str, sent: Entity, stored: Entity | None, actor: Actor) -> None:
    """The key fields iCure's clients publish (`CryptoActorKeys`): only the data owner itself changes them, and
    a published RSA-OAEP key is never removed."""
    changed = [name for name in _ACTOR_KEY_FIELDS if getattr(sent, name, None) != getattr(stored, name, None)]
    if not changed:
        return
    if actor.data_owner_id != entity_id:
        raise ForbiddenError(f"only the data owner {entity_id} itself changes its public keys")
    published: set[str] = getattr(stored, "public_keys_for_oaep_with_sha256", None) or set()
    kept: set[str] = getattr(sent, "public_keys_for_oaep_with_sha256", None) or set()
    removed = sorted(published - kept)
    if removed:
        raise ValidationError(f"publicKeysForOaepWithSha256: a published key cannot be removed ({removed[0][:32]}...)")


def check_exchange_data(sent: ExchangeData, stored: ExchangeData | None, actor: Actor) -> None:
    """A user of its delegator creates exchange data; its delegator and delegate never change."""
    for field in ("delegator", "delegate"):
        if getattr(sent, field) is None:
            raise ValidationError(f"exchange data needs its {field}")
    if stored is None:
        if actor.data_owner_id is None or sent.delegator != actor.data_owner_id:
            raise ForbiddenError(
                f"exchange data with delegator {sent.delegator} is created by a user of that data owner only"
            )
        return
    for field in ("delegator", "delegate"):
        if getattr(sent, field) != getattr(stored, field):
            raise ConflictError(f"exchange data {stored.id}: its {field} is {getattr(stored, field)} and never changes")


def check_sharable(kind: EntityKind) -> None:
    """Exchange data is read by its two parties only: it is never shared nor unshared."""
    if kind.is_exchange_data:
        raise ValidationError("exchange data is read by its delegator and delegate only; it cannot be shared")


def key_records(entity: Entity) -> list[CryptoKey]:
    """A data owner's public key records (none for other kinds)."""
    keys: list[CryptoKey] = getattr(entity, "crypto_keys", [])
    return keys


__all__ = [
    "EMPTY",
    "check_actor_keys",
    "check_can_write",
    "check_crypto_keys",
    "check_exchange_data",
    "check_sharable",
    "key_records",
    "metadata_for_create",
    "metadata_for_update",
    "server_delegation",
    "server_metadata",
    "with_access",
    "without_access",
]
