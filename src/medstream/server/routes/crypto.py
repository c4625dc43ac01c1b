"""GET /rest/v1/crypto/configuration: what a client needs to encrypt for this server (public: it is no secret).

The suites the server knows, whether it refuses encrypted fields in clear (`MEDSTREAM_REQUIRE_ENCRYPTION`),
which top-level fields of each kind travel in `encryptedSelf` (model/encrypted_fields.py), which of them
are searchable through blind-index tokens (model/blind_index.py), and the same fields in iCure's names, for
iCure's clients on `/rest/v2` (icure/encryption.py).
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from medstream.icure.encryption import ICURE_ENCRYPTED_FIELDS
from medstream.model.blind_index import BLIND_INDEXED
from medstream.model.encrypted_fields import ENCRYPTED_FIELDS
from medstream.model.security import SUITES
from medstream.server.rest import Call, Collection, Operation


class BlindIndexedFieldDescription(BaseModel):
    """How the SDK makes the tokens of one blind-index field."""

    index: str = Field(
        description='"equality": one token per value; "words": one per normalised word and per prefix of 3 '
        "letters or more of each word"
    )
    fields: list[str] = Field(description="The entity's fields (wire names) whose values the tokens index")


class CryptoConfiguration(BaseModel):
    """The server's end-to-end encryption configuration."""

    model_config = ConfigDict(populate_by_name=True)

    suites: list[int] = Field(description="The crypto suites the server accepts (byte 0 of every blob)")
    require_encryption: bool = Field(
        alias="requireEncryption",
        description="Whether a write carrying an encrypted field in clear, or a filter reading one, is refused",
    )
    encrypted_fields: dict[str, list[str]] = Field(
        alias="encryptedFields", description="By entity kind, the top-level fields that travel in encryptedSelf"
    )
    blind_indexed: dict[str, dict[str, BlindIndexedFieldDescription]] = Field(
        alias="blindIndexed",
        description="By entity kind, the fields of its blindIndex and how their tokens are made (equality search "
        "over encrypted fields)",
    )
    icure_encrypted_fields: dict[str, list[str]] = Field(
        alias="icureEncryptedFields",
        description="By iCure entity (Patient, Contact, Service), the same fields in iCure's names: what an iCure "
        "client (cardinal-sdk) adds to its EncryptedFieldsConfiguration (patient, contact, service) for /rest/v2",
    )


def configuration_body(require_encryption: bool) -> dict[str, Any]:
    """The configuration's JSON body (`CryptoConfiguration`), for a server that does or does not require
    encryption."""
    return {
        "suites": list(SUITES),
        "requireEncryption": require_encryption,
        "encryptedFields": {kind: list(fields) for kind, fields in ENCRYPTED_FIELDS.items()},
        "blindIndexed": {
            kind: {name: {"index": field.index, "fields": list(field.sources)} for name, field in fields.items()}
            for kind, fields in BLIND_INDEXED.items()
        },
        "icureEncryptedFields": {entity: list(fields) for entity, fields in ICURE_ENCRYPTED_FIELDS.items()},
    }


async def configuration(call: Call) -> Response:
    body = configuration_body(call.state.settings.require_encryption)
    return Response(orjson.dumps(body), media_type="application/json")


crypto = Collection(
    "/rest/v1/crypto",
    "crypto",
    [
        Operation(
            "GET",
            "/configuration",
            configuration,
            "The end-to-end encryption configuration: suites, whether encryption is required, encrypted fields, "
            "blind-indexed fields",
            "get_crypto_configuration",
            CryptoConfiguration,
            (),
            authenticated=False,
        )
    ],
    mount=False,
)
