"""Scalar types several models share, with the bounds the wire and the database need."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from medstream.model.base import MAX_ENCRYPTED_SELF_LENGTH

_BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"

# Binary data (a picture, a file) as standard padded base64 text, the way JSON carries it.
Base64Text = Annotated[str, Field(pattern=_BASE64)]

# An entity's `encryptedSelf`: base64 too, and as long as all of its encrypted fields together need.
EncryptedSelfText = Annotated[str, Field(pattern=_BASE64, max_length=MAX_ENCRYPTED_SELF_LENGTH)]

# An integer as entities carry it: signed 64-bit (a Kotlin Long in iCure), so that every stored document is JSON
# that any client parses to the same number, and fits a BIGINT column when the field is indexed.
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
