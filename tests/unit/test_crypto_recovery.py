"""crypto/recovery.py: recovery codes, ids and blobs."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from medstream.crypto import (
    decode_private_part,
    encode_private_part,
    new_recovery_key,
    open_recovery_blob,
    parse_recovery_code,
    recovery_code,
    recovery_id,
    seal_recovery_blob,
)
from medstream.crypto.key_store_format import decode_private
from medstream.errors import DecryptionError, ValidationError
from tests.unit.crypto_fixtures import HCP_KEYS, PRIVATE_PART, SEARCH_KEY, context

KEY = bytes(range(200, 232))
# Frozen: base32(key || SHA-256(ctx("recovery-check") + key)[:3]) in groups of 4; the id; a blob (nonce 0*12).
CODE = "ZDE4-VS6M-ZXHM-7UGR-2LJ5-JVOW-27MN-TWW3-3TO5-5X7A-4HRO-HZHF-43T5-DRHW"
ID = "491f85e24a82bb2706fdd4e8ce0f42a6e910725c1a8259c26ed489c4b9f75fae"
BLOB = "AQAAAAAAAAAAAAAAAGILt/IgQ/Sxq/YT+QYDKTCAT+4d3cDYV5rKWQ=="


def test_the_code_id_and_blob_are_frozen_and_follow_the_spec() -> None:
    assert recovery_code(KEY) == CODE
    assert base64.b32decode(CODE.replace("-", ""))[:32] == KEY
    assert recovery_id(KEY) == ID == hashlib.sha256(context("recovery-id") + KEY).hexdigest()
    assert seal_recovery_blob(KEY, b'{"keys":[]}', nonce=bytes(12)) == BLOB
    blob_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=context("recovery-key")).derive(KEY)
    raw = base64.b64decode(BLOB)
    assert raw[0] == 1
    assert AESGCM(blob_key).decrypt(raw[1:13], raw[13:], context("recovery", ID)) == b'{"keys":[]}'


# Frozen: the blob of the key store's private part with its search key (PRIVATE_PART), under KEY (nonce 0*12).
BLOB_OF_PRIVATE_PART = (
    "AQAAAAAAAAAAAAAAAGILt/IgQ/Sxq9BM+Bto0bu6TK7yXG23P5+aWbl0uJaGpaYkqZelEKUNr4QYDKXfw4FQ1o7a4b+JBd/WeDjELlYpMvStBgdNC5"
    "XwEX95WIOhWu9Nrlgez4SZgMsJb8KzBvT8/SdBh4walxezR/9Ijn5nsnBhpSkVFgLrQQHK7SPxCMvISSmScZzYFVBH/2oBlxasM2KI4FOD5nhZA/M"
    "p3Q+vbJiJ1GxpqDW1m3TPv2eC3Ej4WRqCaDLPFGhOYZAEmxA3mera0TMc06EMTh0OWJfo0iKzaS9DUqcJr9bI7hM04yJp2LhI32YU3arxwClCsAt+w"
    "BHDwNbTk6sjnGTzjZqMVOnKvOPlp6HHMASoSx64LHD29Bwn9qrXhM13Y7ndQrNHu67v+LSgDjNkpcnNuFk0VNHYEVR6B+oLokQ="
)


def test_the_blob_of_a_private_part_with_its_search_key_is_frozen_and_follows_the_spec() -> None:
    assert seal_recovery_blob(KEY, encode_private_part([HCP_KEYS], SEARCH_KEY), nonce=bytes(12)) == BLOB_OF_PRIVATE_PART
    blob_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=context("recovery-key")).derive(KEY)
    raw = base64.b64decode(BLOB_OF_PRIVATE_PART)
    assert AESGCM(blob_key).decrypt(raw[1:13], raw[13:], context("recovery", ID)) == PRIVATE_PART
    key_pairs, search_key = decode_private(open_recovery_blob(parse_recovery_code(CODE), BLOB_OF_PRIVATE_PART))
    assert [k.private_bytes() for k in key_pairs] == [HCP_KEYS.private_bytes()] and search_key == SEARCH_KEY


def test_a_code_reads_back_whatever_its_spacing_dashes_and_case() -> None:
    for typed in (CODE, CODE.lower(), CODE.replace("-", " "), CODE.replace("-", ""), f"  {CODE.replace('-', ' - ')} "):
        assert parse_recovery_code(typed) == KEY


def test_a_mistyped_code_fails_clearly() -> None:
    typo = CODE[:5] + ("A" if CODE[5] != "A" else "B") + CODE[6:]
    with pytest.raises(ValidationError, match="mistyped"):
        parse_recovery_code(typo)
    with pytest.raises(ValidationError, match="'0'"):
        parse_recovery_code(CODE.replace("Z", "0"))
    with pytest.raises(ValidationError, match="55 characters, expected 56"):
        parse_recovery_code(CODE[:-1])


def test_the_blob_returns_the_private_part_for_its_code_only() -> None:
    key = new_recovery_key()
    blob = seal_recovery_blob(key, encode_private_part([HCP_KEYS]))
    restored = decode_private_part(open_recovery_blob(parse_recovery_code(recovery_code(key)), blob))
    assert [k.private_bytes() for k in restored] == [HCP_KEYS.private_bytes()]
    with pytest.raises(DecryptionError, match="authentication failed"):
        open_recovery_blob(new_recovery_key(), blob)
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    with pytest.raises(DecryptionError):
        open_recovery_blob(key, base64.b64encode(raw).decode())


def test_the_blob_carries_the_search_key_with_the_private_keys() -> None:
    key = new_recovery_key()
    search_key = bytes([0x55]) * 32
    blob = seal_recovery_blob(key, encode_private_part([HCP_KEYS], search_key))
    key_pairs, restored = decode_private(open_recovery_blob(key, blob))
    assert restored == search_key and [k.id for k in key_pairs] == [HCP_KEYS.id]
    assert decode_private(encode_private_part([HCP_KEYS]))[1] is None
