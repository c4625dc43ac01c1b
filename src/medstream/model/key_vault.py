"""The key vault on the wire: the blob a user keeps on the server (`/rest/v1/keyvault`), sealed by its SDK under a
vault passphrase (crypto/key_vault.py). The server stores and answers it as it is, and cannot open it."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from medstream.model.base import MedstreamModel
from medstream.model.scalars import Int64

# 1 MiB of base64 text: a key store of some 2,500 pinned counterparties besides its own keys.
MAX_KEY_VAULT_CHARS = 1_048_576

KeyVaultBlob = Annotated[
    str,
    Field(
        min_length=4,
        max_length=MAX_KEY_VAULT_CHARS,
        pattern=r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
        description="The sealed key store, standard padded base64, suite byte first (docs/security.md, "
        "'The key vault'); at most 1 MiB of text",
    ),
]


class KeyVaultWrite(MedstreamModel):
    """A vault to store: a first one without `rev`, a replacement with the stored one's `rev`."""

    rev: str | None = Field(
        None,
        pattern=r"^[0-9]{1,18}-[0-9a-f]{32}$",
        description="The stored vault's revision, as the server made it; none for a first vault",
    )
    blob: KeyVaultBlob


class KeyVault(MedstreamModel):
    """The caller's vault as stored."""

    user_id: str = Field(description="The user whose vault it is (bound into the blob's associated data)")
    rev: str = Field(description="Its revision: send it back to replace the vault")
    blob: KeyVaultBlob
    created: Int64 = Field(description="When the user stored its first vault, epoch ms")
    modified: Int64 = Field(description="When it was last stored, epoch ms")
