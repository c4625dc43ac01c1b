"""crypto/blind_index.py: normalisation and blind-index tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from medstream.crypto import name_tokens, normalise, token
from medstream.crypto.blind_index import IndexedField, entity_blind_index, parse_blind_indexed, search_tokens
from medstream.errors import ValidationError

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


# --- an entity's blind index, and the tokens of a search ---------------------------------------------------

PATIENT_FIELDS = {
    "ssin": IndexedField("equality", ("ssin",)),
    "identifiers": IndexedField("equality", ("identifiers",)),
    "names": IndexedField("words", ("firstName", "lastName", "maidenName", "spouseName", "names")),
}


def _hmac_token(field: str, text: str) -> str:
    """The spec's token, written out: b64(HMAC-SHA256(k, field || 0x00 || normalised value)[:16])."""
    digest = hmac.new(INDEX_KEY, field.encode() + b"\x00" + text.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest[:16]).decode()


def test_a_patients_blind_index_holds_the_tokens_of_every_source_field() -> None:
    wire = {
        "id": "pat-1",
        "firstName": "Hélène",
        "lastName": "Dupré",
        "names": [{"lastName": "Martin", "firstNames": ["Anne-Marie"], "text": "Lena"}],
        "ssin": "85073003328",
        "identifiers": [{"system": "urn:mrn", "value": "A-1"}, {"value": "B-2"}],
        "note": "not indexed",
    }
    index = entity_blind_index(INDEX_KEY, PATIENT_FIELDS, wire)
    assert index["ssin"] == [_hmac_token("ssin", "85073003328")]
    assert index["identifiers"] == sorted(
        [_hmac_token("identifiers", "urn:mrn\x00a-1"), _hmac_token("identifiers", "\x00b-2")]
    )
    words = ["helene", "dupre", "martin", "anne", "marie", "lena"]
    prefixes = ["hel", "hele", "helen", "dup", "dupr", "mar", "mart", "marti", "ann", "mari", "len"]
    assert index["names"] == sorted({_hmac_token("names", text) for text in words + prefixes})
    assert token(INDEX_KEY, "names", "not") not in index["names"]
    # Fields without a value are left out; a kind without blind-index fields has none.
    assert entity_blind_index(INDEX_KEY, PATIENT_FIELDS, {"id": "pat-2", "lastName": "Li"}) == {
        "names": [_hmac_token("names", "li")]
    }
    assert entity_blind_index(INDEX_KEY, {}, wire) == {}


# Frozen: the blindIndex of a patient under INDEX_KEY: its ssin; its identifier (system, 0x00, value); the words of
# its names, "zoe" and "li" (no prefix: neither is longer than 3 letters).
FROZEN_BLIND_INDEX = {
    "ssin": ["ZtiazzE9dVuiSWTsws9JxQ=="],
    "identifiers": ["m7pKhW6MDvURfxQyClIDng=="],
    "names": ["SDUlqTteSGD80MxPtybzgA==", "Xfme/NRpDh/SHxH6Pq/VwA=="],
}


def test_a_patients_blind_index_is_frozen_and_follows_the_formula() -> None:
    wire = {
        "id": "pat-1",
        "firstName": "Zoé",
        "lastName": "Li",
        "ssin": "85073003328",
        "identifiers": [{"system": "urn:mrn", "value": "A-1"}],
    }
    assert entity_blind_index(INDEX_KEY, PATIENT_FIELDS, wire) == FROZEN_BLIND_INDEX
    assert {
        "ssin": [_hmac_token("ssin", "85073003328")],
        "identifiers": [_hmac_token("identifiers", "urn:mrn\x00a-1")],
        "names": sorted([_hmac_token("names", "zoe"), _hmac_token("names", "li")]),
    } == FROZEN_BLIND_INDEX


def test_a_search_makes_the_tokens_under_every_key_in_groups_to_match_together() -> None:
    other = bytes(32)
    names, ssin = PATIENT_FIELDS["names"], PATIENT_FIELDS["ssin"]
    # A name search: one group per word, each holding that word's token under every key.
    assert search_tokens([INDEX_KEY, other], "names", names, ["Hélène  DUP"]) == [
        sorted({token(INDEX_KEY, "names", "helene"), token(other, "names", "helene")}),
        sorted({token(INDEX_KEY, "names", "dup"), token(other, "names", "dup")}),
    ]
    # An equality search: one group, any of the values under any key.
    assert search_tokens([INDEX_KEY, other, INDEX_KEY], "ssin", ssin, ["1", "2"]) == [
        sorted(token(key, "ssin", value) for key in (INDEX_KEY, other) for value in ("1", "2"))
    ]
    identifiers = search_tokens(
        [INDEX_KEY], "identifiers", PATIENT_FIELDS["identifiers"], [{"system": "urn:mrn", "value": "A-1"}]
    )
    assert identifiers == [[token(INDEX_KEY, "identifiers", "urn:mrn\x00A-1")]]
    with pytest.raises(ValidationError, match="names needs a value"):
        search_tokens([INDEX_KEY], "names", names, [" - "])


def test_the_configuration_is_read_and_an_unknown_index_left_out() -> None:
    configuration = {
        "Patient": {
            "ssin": {"index": "equality", "fields": ["ssin"]},
            "future": {"index": "trigram", "fields": ["note"]},
        },
        "User": "not a map",
    }
    assert parse_blind_indexed(configuration) == {"Patient": {"ssin": IndexedField("equality", ("ssin",))}}
    assert parse_blind_indexed(None) == {}
