"""Blind-index tokens: equality (and name prefix) search over encrypted values, with a key the server lacks.

    token(k_idx, field, value) = b64(HMAC-SHA256(k_idx, field || 0x00 || normalise(value))[:16])
    normalise = Unicode NFKD, combining marks dropped, casefold, whitespace collapsed

A name gives one token per word and one per prefix of 3 letters or more of each word, so that "Hélène Dupré"
is found by "helene" and by "DUP".

An entity's `blindIndex` (`entity_blind_index`) holds, for each blind-index field of its kind (the server's
configuration `blindIndexed`, read with `parse_blind_indexed`), the tokens of the values of the field's source
fields: one per value for an `equality` field (an identifier's value is its system, 0x00, then its value), the
words and prefixes of every name for a `words` field. A search (`search_tokens`) makes the tokens of what is
searched under each search key the searcher knows, so that one filter finds the entities indexed under any.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives import hashes, hmac

from medstream.crypto.suite import b64encode
from medstream.errors import ValidationError

_TOKEN_SIZE = 16
_MIN_PREFIX = 3
_WORD_SEPARATORS = re.compile(r"[\W_]+")


def normalise(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


def token(index_key: bytes, field: str, value: str) -> str:
    """The token of `value` in `field`: equal after normalisation, equal token."""
    mac = hmac.HMAC(index_key, hashes.SHA256())
    mac.update(field.encode() + b"\x00" + normalise(value).encode())
    return b64encode(mac.finalize()[:_TOKEN_SIZE])


def name_words(value: str) -> list[str]:
    """The normalised words of a name (split on spaces, hyphens and other punctuation)."""
    return [word for word in _WORD_SEPARATORS.split(normalise(value)) if word]


def name_tokens(index_key: bytes, field: str, value: str) -> set[str]:
    """The tokens stored for a name: each word, and each prefix of 3 letters or more of each word."""
    terms: set[str] = set()
    for word in name_words(value):
        terms.add(word)
        terms.update(word[:end] for end in range(_MIN_PREFIX, len(word)))
    return {token(index_key, field, term) for term in terms}


@dataclass(frozen=True)
class IndexedField:
    """How one blind-index field is made (the configuration's `blindIndexed[kind][field]`): `equality` gives one
    token per value, `words` the tokens of every word and prefix; `sources` are the entity's fields (wire names)
    whose values it indexes."""

    index: Literal["equality", "words"]
    sources: tuple[str, ...]


def parse_blind_indexed(configuration: Any) -> dict[str, dict[str, IndexedField]]:
    """The configuration's `blindIndexed` (kind -> field -> {"index", "fields"}) as IndexedFields; a field of an
    unknown index is left out (this SDK cannot make its tokens)."""
    if not isinstance(configuration, Mapping):
        return {}
    kinds: dict[str, dict[str, IndexedField]] = {}
    for kind, fields in configuration.items():
        if not isinstance(fields, Mapping):
            continue
        for name, description in fields.items():
            index = description.get("index") if isinstance(description, Mapping) else None
            sources = description.get("fields") if isinstance(description, Mapping) else None
            if index in ("equality", "words") and isinstance(sources, list):
                field = IndexedField(index, tuple(str(source) for source in sources))
                kinds.setdefault(str(kind), {})[str(name)] = field
    return kinds


def identifier_value(identifier: Mapping[str, Any]) -> str:
    """An identifier's indexed value: its system, a 0x00 character, then its value (a missing part is empty)."""
    return f"{identifier.get('system') or ''}\x00{identifier.get('value') or ''}"


def _values(value: Any) -> Iterable[str]:
    """The texts a source field's value holds: a text itself; of a list, each item's; of an identifier, its
    indexed value; of a person name, its last name, first names and text."""
    if isinstance(value, str):
        if value:
            yield value
    elif isinstance(value, list):
        for item in value:
            yield from _values(item)
    elif isinstance(value, Mapping):
        if "system" in value or "value" in value:
            yield identifier_value(value)
        else:
            yield from _values([value.get("lastName"), *(value.get("firstNames") or []), value.get("text")])


def field_tokens(index_key: bytes, name: str, field: IndexedField, wire: Mapping[str, Any]) -> list[str]:
    """The sorted tokens of the blind-index field `name` for the entity `wire` (clear values, wire names)."""
    tokens: set[str] = set()
    for source in field.sources:
        for value in _values(wire.get(source)):
            if field.index == "equality":
                tokens.add(token(index_key, name, value))
            else:
                tokens.update(name_tokens(index_key, name, value))
    return sorted(tokens)


def entity_blind_index(
    index_key: bytes, fields: Mapping[str, IndexedField], wire: Mapping[str, Any]
) -> dict[str, list[str]]:
    """The `blindIndex` of an entity from its clear values: by blind-index field of its kind, the tokens of the
    fields it indexes; a field without a value is left out."""
    index = {name: field_tokens(index_key, name, field, wire) for name, field in fields.items()}
    return {name: tokens for name, tokens in index.items() if tokens}


def search_tokens(
    index_keys: Iterable[bytes], name: str, field: IndexedField, values: Iterable[Any]
) -> list[list[str]]:
    """The tokens that find `values` (texts, identifiers or person names as wire dicts) in the blind-index field
    `name`, under each of `index_keys`, as groups an entity must all match, each by one of its tokens: for an
    `equality` field one group, any of the values; for a `words` field one group per word of the values (a word
    or a prefix of 3 letters or more of one of the entity's words). ValidationError when there is nothing to
    search for."""
    keys = list(dict.fromkeys(index_keys))
    texts = [text for value in values for text in _values(value)]
    if field.index == "equality":
        terms = [[text for text in texts if normalise(text)]]
    else:
        terms = [[word] for text in texts for word in name_words(text)]
    groups = [sorted({token(key, name, term) for key in keys for term in group}) for group in terms]
    groups = [group for group in groups if group]
    if not groups:
        raise ValidationError(f"a blind-index search on {name} needs a value with a letter or digit to search for")
    return groups
