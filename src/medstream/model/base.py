"""The base every Medstream model derives from: camelCase on the wire, snake_case in Python, strict input."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

# Bound on any single string of any model; request bodies are bounded separately by the server.
MAX_STRING_LENGTH = 262_144
# Bound on `encryptedSelf`, the one string that carries all of an entity's encrypted fields, each of which holds
# up to MAX_STRING_LENGTH in clear: 64 MiB, past the request body's default bound (8 MiB), which comes first.
MAX_ENCRYPTED_SELF_LENGTH = 64 * 1024 * 1024


class MedstreamModel(BaseModel):
    """Pydantic v2 base: aliases in camelCase, names accepted too, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        extra="forbid",
        str_max_length=MAX_STRING_LENGTH,
        ser_json_inf_nan="null",
    )

    def to_json_dict(self) -> dict[str, Any]:
        """The wire form: camelCase keys, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_json(self) -> bytes:
        """`to_json_dict()` as JSON, written by pydantic's serializer straight from the model (building the
        dict first and dumping it took 1.5-2x as long: every write stores its entity's JSON, every event sends it)."""
        return self.__pydantic_serializer__.to_json(self, by_alias=True, exclude_none=True)

    @classmethod
    def from_json_dict(cls, data: Any) -> Self:
        return cls.model_validate(data)
