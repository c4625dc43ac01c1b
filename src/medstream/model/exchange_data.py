"""ExchangeData: the keys one data owner (the delegator) shares with another (the delegate), wrapped for the
public keys of both and signed by the delegator. The server stores it as given; its readers are the two."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from medstream.model.common import Entity, EntityId
from medstream.model.scalars import Base64Text


class ExchangeData(Entity):
    """iCure's field names. `exchange_key` and `access_control_secret` map a public key id to that secret wrapped
    for the key; `search_key`, the delegator's search key (blind-index tokens), likewise, on records that carry
    it; `delegator_signature` maps the delegator's signing key id to its signature, and `delegate_signature` the
    delegate's, on a record whose delegate added wraps for a delegator's new key (docs/security.md)."""

    entity_type: ClassVar[str] = "ExchangeData"

    # Both are required by every write (the store refuses one without them); optional here like every field.
    delegator: EntityId | None = None
    delegate: EntityId | None = None
    exchange_key: dict[str, Base64Text] = Field(default_factory=dict)
    access_control_secret: dict[str, Base64Text] = Field(default_factory=dict)
    search_key: dict[str, Base64Text] | None = None  # left out of records made without one
    delegator_signature: dict[str, Base64Text] = Field(default_factory=dict)
    delegate_signature: dict[str, Base64Text] | None = None  # left out of records only their delegator signed
    # iCure's clients (cardinal) also share a signature key (wrapped like `exchange_key`) and sign the record with
    # it; both stored as given, absent from records made without them.
    shared_signature_key: dict[str, Base64Text] | None = None
    shared_signature: Base64Text | None = None
