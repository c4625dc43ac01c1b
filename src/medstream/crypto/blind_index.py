"""Blind-index tokens: equality (and name prefix) search over encrypted values, with a key the server lacks.

    token(k_idx, field, value) = b64(HMAC-SHA256(k_idx, field || 0x00 || normalise(value))[:16])
    normalise = Unicode NFKD, combining marks dropped, casefold, whitespace collapsed

A name gives one token per word and one per prefix of 3 letters or more of each word, so that "Hélène Dupré"
is found by "helene" and by "DUP".
"""

from __future__ import annotations

import re
import unicodedata

from cryptography.hazmat.primitives import hashes, hmac

from medstream.crypto.suite import b64encode

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
