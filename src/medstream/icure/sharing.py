"""iCure's share requests (`bulkSharedMetadataUpdate`) applied to an entity's security metadata, sans I/O.

A share request adds a secure delegation from the logged data owner to another data owner, under the key
`sha256(access control key)` (hex), holding what the delegator encrypted for the delegate; an update request
adds or removes entries of a delegation the logged data owner made. Each request is applied or refused on its
own, with an HTTP-like code, as iCure's backend answers them. The store then applies Medstream's write rules to
the result (`medstream.delegations`): only a delegation's delegator makes or changes it, a data owner who may
only read an entity cannot change its metadata.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from medstream.icure import shapes as ic
from medstream.model.security import AccessLevel, SecureDelegation, SecurityMetadata

_ACCESS_CONTROL_KEY = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class ShareOutcome:
    """The metadata after the requests that were applied (`changed` if any was), and the refused ones."""

    metadata: SecurityMetadata
    changed: bool = False
    rejected: dict[str, ic.RejectedShareOrMetadataUpdateRequest] = field(default_factory=dict)


class _Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def delegation_key(access_control_key: str) -> str:
    """The secure delegation key of an access control key (16 bytes, in hex): its SHA-256, in hex."""
    if not _ACCESS_CONTROL_KEY.match(access_control_key):
        raise _Refused(400, f"access control key {access_control_key[:40]!r}: 32 lowercase hex digits")
    return hashlib.sha256(bytes.fromhex(access_control_key)).hexdigest()


def _permission(requested: str, delegator_writes: bool) -> AccessLevel:
    if requested in ("MAX_READ", "FULL_READ"):
        return AccessLevel.READ
    if requested == "MAX_WRITE":
        return AccessLevel.WRITE if delegator_writes else AccessLevel.READ
    if requested == "FULL_WRITE":
        if not delegator_writes:
            raise _Refused(403, "FULL_WRITE: you may only read this entity, so you cannot give write access")
        return AccessLevel.WRITE
    raise _Refused(400, "ROOT: an entity's root delegation is made with it; share with MAX_WRITE or MAX_READ")


def _share(
    delegations: dict[str, SecureDelegation], request: ic.EntityShareRequest, parents: list[str], me: str
) -> None:
    if request.explicit_delegator is None or request.explicit_delegate is None:
        raise _Refused(400, "anonymous delegations (no explicitDelegator or explicitDelegate) are not served")
    if request.explicit_delegator != me:
        raise _Refused(403, f"a delegation is made by its delegator only: you act as {me}")
    if not request.exchange_data_id or request.encrypted_exchange_data_id:
        raise _Refused(400, "an explicit delegation names its exchangeDataId in clear (no encryptedExchangeDataId)")
    if not request.access_control_keys:
        raise _Refused(400, "accessControlKeys is empty")
    mine = {key for key, d in delegations.items() if d.delegate == me}
    if not mine:
        raise _Refused(403, "you have no delegation on this entity to share it from")
    writes = any(delegations[key].permissions is AccessLevel.WRITE for key in mine)
    permission = _permission(request.requested_permissions, writes)
    keys = [delegation_key(k) for k in request.access_control_keys]
    new = SecureDelegation(
        delegator=me,
        delegate=request.explicit_delegate,
        secret_ids=tuple(sorted(set(request.secret_ids))),
        encryption_keys=tuple(sorted(set(request.encryption_keys))),
        owning_entity_ids=tuple(sorted(set(request.owning_entity_ids))),
        parent_delegations=tuple(sorted(key for key in set(parents) if key in mine)),
        exchange_data_id=request.exchange_data_id,
        permissions=permission,
    )
    for key in keys:
        old = delegations.get(key)
        if old is not None and (old.delegator, old.delegate) != (new.delegator, new.delegate):
            raise _Refused(409, f"secure delegation {key} exists and is from {old.delegator} to {old.delegate}")
        if old is not None:
            new = new.model_copy(
                update={
                    "secret_ids": tuple(sorted({*old.secret_ids, *new.secret_ids})),
                    "encryption_keys": tuple(sorted({*old.encryption_keys, *new.encryption_keys})),
                    "owning_entity_ids": tuple(sorted({*old.owning_entity_ids, *new.owning_entity_ids})),
                    "parent_delegations": old.parent_delegations,
                }
            )
        delegations[key] = new


def _entries(current: tuple[str, ...], changes: Mapping[str, str]) -> tuple[str, ...]:
    kept = {entry for entry in current if changes.get(entry) != "DELETE"}
    return tuple(sorted(kept | {entry for entry, change in changes.items() if change == "CREATE"}))


def _update(delegations: dict[str, SecureDelegation], request: ic.EntitySharedMetadataUpdateRequest, me: str) -> None:
    key = request.metadata_access_control_hash
    old = delegations.get(key)
    if old is None:
        raise _Refused(404, f"no secure delegation {key} on this entity")
    if old.delegator != me:
        raise _Refused(403, f"secure delegation {key} is {old.delegator}'s: only its delegator changes it")
    if not (request.secret_ids or request.encryption_keys or request.owning_entity_ids):
        raise _Refused(400, "the update request changes nothing")
    delegations[key] = old.model_copy(
        update={
            "secret_ids": _entries(old.secret_ids, request.secret_ids),
            "encryption_keys": _entries(old.encryption_keys, request.encryption_keys),
            "owning_entity_ids": _entries(old.owning_entity_ids, request.owning_entity_ids),
        }
    )


def apply_requests(metadata: SecurityMetadata | None, info: ic.EntityRequestInformation, me: str) -> ShareOutcome:
    """`metadata` with the requests of `info` that may be applied by the data owner `me`, in the order sent."""
    delegations = dict((metadata or SecurityMetadata()).secure_delegations)
    outcome = ShareOutcome(metadata=metadata or SecurityMetadata())
    for request_id, request in info.requests.items():
        attempt = dict(delegations)
        try:
            if (request.share is None) == (request.update is None):
                raise _Refused(400, "a request holds either share or update")
            if request.share is not None:
                _share(attempt, request.share, info.potential_parent_delegations, me)
            elif request.update is not None:
                _update(attempt, request.update, me)
        except _Refused as refused:
            outcome.rejected[request_id] = ic.RejectedShareOrMetadataUpdateRequest(
                code=refused.code, reason=refused.reason
            )
            continue
        delegations = attempt
        outcome.changed = True
    if outcome.changed:
        outcome.metadata = SecurityMetadata.model_validate({"secure_delegations": delegations})
    return outcome


def rejected_all(
    entity_id: str, info: ic.EntityRequestInformation, code: int, reason: str, rev: str | None = None
) -> ic.EntityBulkShareResult:
    """Every request of `info` refused alike (the entity cannot be found or written); a 409 may be retried."""
    return ic.EntityBulkShareResult(
        entity_id=entity_id,
        entity_rev=rev,
        rejected_requests={
            request_id: ic.RejectedShareOrMetadataUpdateRequest(code=code, should_retry=code == 409, reason=reason)
            for request_id in info.requests
        },
    )
