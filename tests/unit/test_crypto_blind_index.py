"""crypto/blind_index.py: normalisation and blind-index tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac

from medstream.crypto import name_tokens, normalise, token

INDEX_KEY = bytes([0x44]) * 32
# Frozen: b64(HMAC-SHA256(k_idx, "lastName" || 0x00 || "dupre")[:16]).
DUPRE = "oO1z/iZ6dS9Kv+78M8Uo/Q=="


def test_normalise_drops_accents_case_and_extra_whitespace() -> None:
    assert normalise("  Hélène\t DUPRÉ ") == "helene dupre"
    assert normalise("Straße") == "strasse"  # casefold
    assert normalise("ﬁle") == "file"  # NFKD compatibility


def test_a_token_is_frozen_and_follows_the_formula() -> None:
    assert token(INDEX_KEY, "lastName", "Dupré") == DUPRE
    expected = hmac.new(INDEX_KEY, b"lastName\x00dupre", hashlib.sha256).digest()[:16]
    assert base64.b64decode(DUPRE) == expected
    assert token(INDEX_KEY, "lastName", " DUPRE ") == DUPRE
    assert token(INDEX_KEY, "firstName", "Dupré") != DUPRE  # the field is part of it
    assert token(bytes(32), "lastName", "Dupré") != DUPRE  # so is the key


def test_name_tokens_match_words_and_prefixes_of_three_letters_or_more() -> None:
    tokens = name_tokens(INDEX_KEY, "name", "Hélène Dupré")
    for query in ("helene", "DUP", "Hél", "dupre", "dupr"):
        assert token(INDEX_KEY, "name", query) in tokens, query
    for query in ("he", "du", "elene", "helene dupre"):
        assert token(INDEX_KEY, "name", query) not in tokens, query
    assert len(tokens) == len({"hel", "hele", "helen", "helene", "dup", "dupr", "dupre"})
    assert token(INDEX_KEY, "name", "pierre") in name_tokens(INDEX_KEY, "name", "Jean-Pierre")
