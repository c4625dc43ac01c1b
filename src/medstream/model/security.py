"""The end-to-end encryption metadata the server stores as the clients give it, and the access rule's source.

An entity's `securityMetadata.secureDelegations` says who may read it: its readers are the non-null `delegate`s
of its secure delegations. A delegation a client makes carries the entity's key wrapped for its delegate
(`encryptionKeys`); one the server makes carries no key material and has the key `server_delegation_key`.
A data owner's public key records (`CryptoKey`) are what clients wrap keys for and verify signatures with.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from enum import StrEnum
from typing import Annotated, Self

import orjson
from pydantic import ConfigDict, Field, model_validator

from medstream.model.base import MedstreamModel
from medstream.model.scalars import Base64Text, Int64

# The suites a key record or a blob may name (byte 0 of every blob); docs/protocol.md describes suite 1.
SUITES: tuple[int, ...] = (1,)
# Raw public key lengths of suite 1: X25519 and Ed25519 public keys are 32 bytes each.
_SUITE_1_KEY_BYTES = 32

# A delegation key: the lowercase hex SHA-256 of the access control key, or of the server delegation's context.
DelegationKey = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
# A data owner id as a delegation names it (the same ids entities have).
DataOwnerId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")]
# A public key's id: the first 32 hex digits of a SHA-256 the client computes.
CryptoKeyId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]


class AccessLevel(StrEnum):
    """What a delegation lets its delegate do: read the entity, or also modify and delete it."""

    READ = "READ"
    WRITE = "WRITE"


class SecureDelegation(MedstreamModel):
    """One data owner's access to an entity, with iCure's field names. `delegator` and `delegate` may be null and
    the id lists empty: room for anonymous data owners and secret foreign keys."""

    model_config = ConfigDict(frozen=True)

    delegator: DataOwnerId | None = None
    delegate: DataOwnerId | None = None
    secret_ids: tuple[str, ...] = ()
    encryption_keys: tuple[Base64Text, ...] = ()
    owning_entity_ids: tuple[str, ...] = ()
    parent_delegations: tuple[DelegationKey, ...] = ()
    exchange_data_id: str | None = None
    permissions: AccessLevel = AccessLevel.WRITE


class SecurityMetadata(MedstreamModel):
    """An entity's secure delegations, by delegation key. Shared between entities and never mutated: a change
    builds a new one."""

    model_config = ConfigDict(frozen=True)

    secure_delegations: dict[DelegationKey, SecureDelegation] = Field(default_factory=dict)

    @functools.cached_property
    def readers(self) -> frozenset[str]:
        """The data owners the entity is shared with: the non-null delegates (the access rule)."""
        return frozenset(d.delegate for d in self.secure_delegations.values() if d.delegate is not None)

    @functools.cached_property
    def writers(self) -> frozenset[str]:
        """The data owners that may modify or delete the entity: delegates of a WRITE delegation."""
        return frozenset(
            d.delegate
            for d in self.secure_delegations.values()
            if d.delegate is not None and d.permissions is AccessLevel.WRITE
        )


def document_readers(document: str | bytes) -> frozenset[str]:
    """The readers of an entity from its JSON, as `Entity.readers` gives them from its model, without building
    the model: the non-null delegates of `securityMetadata.secureDelegations`."""
    metadata = orjson.loads(document).get("securityMetadata") or {}
    delegations = metadata.get("secureDelegations") or {}
    return frozenset(d["delegate"] for d in delegations.values() if d.get("delegate") is not None)


def context(label: str, *parts: str) -> bytes:
    """The context string that binds a hash or ciphertext to where it belongs (docs/protocol.md)."""
    return b"medstream/v1/" + label.encode() + b"\x00" + b"\x00".join(p.encode() for p in parts)


@functools.lru_cache(maxsize=65_536)
def server_delegation_key(delegator: str | None, delegate: str) -> str:
    """The key of a delegation the server makes (no key material): the same for the same pair everywhere."""
    return hashlib.sha256(context("server-delegation", delegator or "", delegate)).hexdigest()


def is_server_delegation(key: str, delegation: SecureDelegation) -> bool:
    """Whether `delegation`, stored under `key`, is one the server made."""
    return delegation.delegate is not None and key == server_delegation_key(delegation.delegator, delegation.delegate)


class Delegation(MedstreamModel):
    """A legacy delegation, as iCure's clients still write them in `delegations`, `cryptedForeignKeys` and
    `encryptionKeys`: an owner, the data owner it was made for, a key encrypted for them. Stored as given; it
    gives no access (an entity's readers come from its secure delegations only)."""

    model_config = ConfigDict(frozen=True)

    owner: DataOwnerId | None = None
    delegated_to: DataOwnerId | None = None
    key: str | None = None
    tags: tuple[str, ...] = ()


class KeyStatus(StrEnum):
    """A published key is ACTIVE (clients wrap for it) until its owner retires it; it is never removed."""

    ACTIVE = "ACTIVE"
    RETIRED = "RETIRED"


def _raw_length(text: str) -> int:
    try:
        return len(base64.b64decode(text, validate=True))
    except binascii.Error:  # the Base64Text pattern already refuses this
        return -1


class CryptoKey(MedstreamModel):
    """A data owner's public key record: an X25519 key to wrap for and an Ed25519 key to verify with."""

    model_config = ConfigDict(frozen=True)

    id: CryptoKeyId
    suite: int = Field(ge=0, le=255)
    encryption_key: Base64Text
    signing_key: Base64Text
    created: Int64
    status: KeyStatus = KeyStatus.ACTIVE

    @model_validator(mode="after")
    def _check_suite(self) -> Self:
        if self.suite not in SUITES:
            raise ValueError(f"unknown suite {self.suite} (known: {', '.join(map(str, SUITES))})")
        for name, wire in (("encryption_key", "encryptionKey"), ("signing_key", "signingKey")):
            length = _raw_length(getattr(self, name))
            if length != _SUITE_1_KEY_BYTES:
                raise ValueError(f"{wire} must be {_SUITE_1_KEY_BYTES} bytes for suite 1, not {length}")
        return self
