"""Blind indexes: the equality-searchable tokens an entity carries for fields that travel encrypted.

An entity's `blindIndex` maps a blind-indexed field to the tokens the SDK computed for its values with an index
key the server never has (docs/security.md, "Blind-index tokens"). The server stores the tokens as the entity's
terms and compares them, opaque, with the tokens of a blind-index filter: it never learns the values.

Which fields of each kind are blind-indexed, and how (BLIND_INDEXED), is part of the encryption configuration
the server announces at `GET /rest/v1/crypto/configuration`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

# A token: 16 bytes as standard padded base64 (22 characters, the last one carrying 2 bits, then "==").
TOKEN_PATTERN = r"^[A-Za-z0-9+/]{21}[AQgw]==$"
_TOKEN = re.compile(TOKEN_PATTERN)

# Bounds on one entity's blind index, and on one filter's tokens: a name of 20 words of 20 letters gives
# 20 x 19 tokens (each word and its prefixes of 3 letters or more).
MAX_BLIND_INDEX_FIELDS = 8
MAX_TOKENS_PER_FIELD = 1000


@dataclass(frozen=True, slots=True)
class BlindIndexedField:
    """How one blind-index field is made: `equality` gives one token per value, `words` one per normalised word
    of each value and per prefix of 3 letters or more of each word; `sources` are the entity's fields (wire
    names) whose values it indexes."""

    index: Literal["equality", "words"]
    sources: tuple[str, ...]


BLIND_INDEXED: Mapping[str, Mapping[str, BlindIndexedField]] = {
    "Patient": {
        "ssin": BlindIndexedField("equality", ("ssin",)),
        "identifiers": BlindIndexedField("equality", ("identifiers",)),
        "names": BlindIndexedField("words", ("firstName", "lastName", "maidenName", "spouseName", "names")),
    },
    "DataSample": {"identifiers": BlindIndexedField("equality", ("identifiers",))},
    "HealthcareElement": {"identifiers": BlindIndexedField("equality", ("identifiers",))},
}


def blind_index_field_for(entity_type: str, source: str) -> str | None:
    """The blind-index field that indexes the entity field `source` (a wire name) of `entity_type`, if any."""
    for name, field in BLIND_INDEXED.get(entity_type, {}).items():
        if source in field.sources:
            return name
    return None


def check_blind_index_field(entity_type: str, field: str) -> str:
    """`field` if `entity_type` has a blind-index field of that name; ValueError naming the known ones."""
    known = BLIND_INDEXED.get(entity_type, {})
    if field not in known:
        names = ", ".join(known) if known else "none"
        raise ValueError(f"{entity_type} has no blind-index field {field!r} (its blind-index fields: {names})")
    return field


def check_tokens(where: str, tokens: list[str] | frozenset[str]) -> None:
    """ValueError when there are more than MAX_TOKENS_PER_FIELD tokens, or one is not a token's shape."""
    if len(tokens) > MAX_TOKENS_PER_FIELD:
        raise ValueError(f"{where} holds {len(tokens)} tokens, more than {MAX_TOKENS_PER_FIELD}")
    for token in tokens:
        if not _TOKEN.match(token):
            shown = token if len(token) <= 40 else token[:40] + "..."
            raise ValueError(
                f"{where}: {shown!r} is not a blind-index token (16 bytes as padded base64, 24 characters)"
            )


def check_blind_index(entity_type: str, blind_index: dict[str, list[str]]) -> None:
    """ValueError for a blind index `entity_type` cannot carry: too many fields, a field the kind does not
    blind-index, too many tokens in a field, or a token of the wrong shape."""
    if len(blind_index) > MAX_BLIND_INDEX_FIELDS:
        raise ValueError(f"blindIndex has {len(blind_index)} fields, more than {MAX_BLIND_INDEX_FIELDS}")
    for field, tokens in blind_index.items():
        check_blind_index_field(entity_type, field)
        check_tokens(f"blindIndex.{field}", tokens)
