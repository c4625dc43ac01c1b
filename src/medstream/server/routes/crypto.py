"""GET /rest/v1/crypto/configuration: what a client needs to encrypt for this server (public: it is no secret).

The suites the server knows, whether it refuses encrypted fields in clear (`MEDSTREAM_REQUIRE_ENCRYPTION`),
and which top-level fields of each kind travel in `encryptedSelf` (model/encrypted_fields.py).
"""

from __future__ import annotations

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from medstream.model.encrypted_fields import ENCRYPTED_FIELDS
from medstream.model.security import SUITES
from medstream.server.rest import Call, Collection, Operation


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


async def configuration(call: Call) -> Response:
    body = {
        "suites": list(SUITES),
        "requireEncryption": call.state.settings.require_encryption,
        "encryptedFields": {kind: list(fields) for kind, fields in ENCRYPTED_FIELDS.items()},
    }
    return Response(orjson.dumps(body), media_type="application/json")


crypto = Collection(
    "/rest/v1/crypto",
    "crypto",
    [
        Operation(
            "GET",
            "/configuration",
            configuration,
            "The end-to-end encryption configuration: suites, whether encryption is required, encrypted fields",
            "get_crypto_configuration",
            CryptoConfiguration,
            (),
            authenticated=False,
        )
    ],
    mount=False,
)
