"""Secure delegations: the entries of an entity's `securityMetadata.secureDelegations`, and their map keys.

    ACK            = SHA-256(S_ac || entityType)[:16]
    delegation key = hex(SHA-256(ACK))                 (for a delegation made with exchange data)
    server key     = hex(SHA-256(ctx("server-delegation", delegator or "", delegate)))   (no key material)

The server learns who may read an entity from the `delegate`s of its secure delegations; the delegation key
does not tell it which exchange data, nor which entity type, it came from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, Literal

from medstream.crypto.suite import ctx

Permission = Literal["READ", "WRITE"]


def access_control_key(access_control_secret: bytes, entity_type: str) -> bytes:
    """ACK: what a delegation key is the hash of (16 bytes)."""
    return hashlib.sha256(access_control_secret + entity_type.encode()).digest()[:16]


def delegation_key(access_control_secret: bytes, entity_type: str) -> str:
    """The map key of a secure delegation made with exchange data, for entities of `entity_type`."""
    return hashlib.sha256(access_control_key(access_control_secret, entity_type)).hexdigest()


def server_delegation_key(delegator: str | None, delegate: str) -> str:
    """The map key of a delegation the server makes itself (a data owner's own record, a user's link)."""
    return hashlib.sha256(ctx("server-delegation", delegator or "", delegate)).hexdigest()


def secure_delegation(
    delegator: str | None,
    delegate: str | None,
    exchange_data_id: str | None,
    encryption_keys: Iterable[str],
    permissions: Permission,
    parent_delegations: Iterable[str] = (),
) -> dict[str, Any]:
    """A SecureDelegation wire dict. `secretIds` and `owningEntityIds` stay empty, and a null delegator or
    delegate is left for anonymous data owners."""
    if permissions not in ("READ", "WRITE"):
        raise ValueError(f"permissions are READ or WRITE, got {permissions!r}")
    return {
        "delegator": delegator,
        "delegate": delegate,
        "secretIds": [],
        "encryptionKeys": list(encryption_keys),
        "owningEntityIds": [],
        "parentDelegations": list(parent_delegations),
        "exchangeDataId": exchange_data_id,
        "permissions": permissions,
    }
