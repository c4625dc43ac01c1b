"""crypto/key_store_format.py and sdk/key_store.py: the key store document, its passphrase, and its file."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
from pathlib import Path

import orjson
import pytest
from argon2.low_level import Type, hash_secret_raw
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from medstream.crypto import (
    Argon2Parameters,
    DataOwnerKeyPair,
    KeyStore,
    decode_key_store,
    encode_key_store,
    encode_private_part,
)
from medstream.crypto.key_store_format import is_sealed
from medstream.errors import DecryptionError, UnavailableError, ValidationError
from medstream.sdk.key_store import default_key_store_path, key_store_lock, load_key_store, save_key_store
from tests.unit.crypto_fixtures import HCP_KEYS, PATIENT_KEYS, PRIVATE_PART, SEARCH_KEY, context

FAST = Argon2Parameters(time_cost=1, memory_cost=64, parallelism=1)  # the tests' cost; the default is t=3 64 MiB p=4
# Frozen: the private part sealed with Argon2id(t=1, m=64 KiB, p=1, salt 0*16) and AES-256-GCM (nonce 0*12),
# aad = ctx("key-store", "hcp-a").
FROZEN_SEALED = (
    "AAAAAAAAAAAAAAAAzYJsivKamU4fewyc5ALUPdLyEbnLt8Lr4MBRoTK7ecCgB0yrXaz8p9f57uYNZZNFGwEc6KoOvzjEoL+C31vNxJTH4HyxaZHgfK"
    "IOiM+c0d26FCrkRI3y4GsC81ai0gzMnCFN6b54LEhM1lVDhfUQ8J1LFYE5ST2osqgKo3LZfcFkVFrE/eHA2IrhvY81oXqFdxHZCsmvDuMvJksehZAB"
    "Je50rPTCrqk7vrIjbHUtmhiZ+hznk6xJ3y9xHcAckxz7Qh3Va9EpVC0eAbi2AP+Buz2k9II7dACwvGDGmKWMBFYkAHFiII57SvHPipByx7oFBgxFUM"
    "mENUttWnIlgQNLwzI="
)


def store() -> KeyStore:
    retired = DataOwnerKeyPair.generate(created=1).with_status("RETIRED")
    key_store = KeyStore("hcp-a", [HCP_KEYS, retired])
    key_store.pin("pat-b", PATIENT_KEYS.public, verified=True)
    return key_store


def same(a: KeyStore, b: KeyStore) -> bool:
    return (
        a.data_owner_id == b.data_owner_id
        and [(k.public, k.private_bytes()) for k in a.key_pairs] == [(k.public, k.private_bytes()) for k in b.key_pairs]
        and a.pins == b.pins
    )


def test_an_unsealed_store_round_trips_with_every_key_and_status() -> None:
    original = store()
    again = decode_key_store(encode_key_store(original))
    assert same(again, original)
    assert [k.status for k in again.key_pairs] == ["ACTIVE", "RETIRED"]
    assert again.active_key_pairs()[0].id == HCP_KEYS.id
    assert again.pins["pat-b"][PATIENT_KEYS.id].verified is True


def test_a_sealed_store_is_frozen_and_opens_with_its_passphrase() -> None:
    key_store = KeyStore("hcp-a", [HCP_KEYS])
    key_store.pin("pat-b", PATIENT_KEYS.public, verified=True)
    data = encode_key_store(key_store, "correct horse", parameters=FAST, salt=bytes(16), nonce=bytes(12))
    document = orjson.loads(data)
    assert document["sealed"] == {
        "kdf": "argon2id",
        "salt": "AAAAAAAAAAAAAAAAAAAAAA==",
        "timeCost": 1,
        "memoryCost": 64,
        "parallelism": 1,
        "data": FROZEN_SEALED,
    }
    assert "keys" not in document and HCP_KEYS.private_bytes()[0].hex() not in data.decode()
    assert same(decode_key_store(data, "correct horse"), key_store)


# Frozen: the private part with its search key (PRIVATE_PART) sealed as FROZEN_SEALED is.
FROZEN_SEALED_WITH_SEARCH_KEY = (
    "AAAAAAAAAAAAAAAAzYJsivKamU4fewyc5ALUPdLyEbnLt8Lr4MBRoTK7ecCgB0yrXaz8p9f57uYNZZNFGwEc6KoOvzjEoL+C31vNxJTH4HyxaZHgfK"
    "IOiM+c0d26FCrkRI3y4GsC81ai0gzMnCFN6b54LEhM1lVDhfUQ8J1LFYE5ST2osqgKo3LZfcFkVFrE/eHA2IrhvY81oXqFdxHZCsmvDuMvJksehZAB"
    "Je50rPTCrqk7vrIjbHUtmhiZ+hznk6xJ3y9xHcAckxz7Qh3Va9EpVC0eAbi2AP+Buz2k9II7dACwvGDGmKWMBFYkAHFiII57SvHPipByx7oFV3jjDS"
    "T2aD+keb7O3tX01bEeP6NiEdJdRWsKfC/peATcQPXzX5GqZK5hsxeP/g8+pfkud+Bz3Il+EmfQtMFao6YQHuyGRyTIRbizFA=="
)


def test_a_sealed_private_part_with_its_search_key_is_frozen_and_follows_the_spec() -> None:
    assert encode_private_part([HCP_KEYS], SEARCH_KEY) == PRIVATE_PART
    key_store = KeyStore("hcp-a", [HCP_KEYS], search_key=SEARCH_KEY)
    data = encode_key_store(key_store, "correct horse", parameters=FAST, salt=bytes(16), nonce=bytes(12))
    assert orjson.loads(data)["sealed"]["data"] == FROZEN_SEALED_WITH_SEARCH_KEY
    # Opened with Argon2id and AES-GCM as the spec writes them, not with the code under test.
    key = hash_secret_raw(b"correct horse", bytes(16), 1, 64, 1, 32, Type.ID)
    raw = base64.b64decode(FROZEN_SEALED_WITH_SEARCH_KEY)
    assert AESGCM(key).decrypt(raw[:12], raw[12:], context("key-store", "hcp-a")) == PRIVATE_PART
    assert decode_key_store(data, "correct horse").search_key == SEARCH_KEY


def test_the_default_argon2id_parameters_are_stored_in_the_file() -> None:
    assert Argon2Parameters() == Argon2Parameters(time_cost=3, memory_cost=65536, parallelism=4)


def test_a_wrong_or_missing_passphrase_is_a_clear_error() -> None:
    data = encode_key_store(store(), "correct horse", parameters=FAST)
    with pytest.raises(DecryptionError, match="wrong passphrase"):
        decode_key_store(data, "correct hose")
    with pytest.raises(DecryptionError, match="sealed under a passphrase, and none was given"):
        decode_key_store(data)


def test_a_sealed_store_moved_to_another_data_owner_does_not_open() -> None:
    document = orjson.loads(encode_key_store(store(), "pw", parameters=FAST))
    document["dataOwnerId"] = "hcp-z"
    with pytest.raises(DecryptionError, match="wrong passphrase, or the file was altered"):
        decode_key_store(orjson.dumps(document), "pw")


def test_a_file_asking_argon2id_for_absurd_costs_is_refused_before_hashing() -> None:
    document = orjson.loads(encode_key_store(store(), "pw", parameters=FAST))
    document["sealed"]["memoryCost"] = 2**40
    with pytest.raises(ValidationError, match="memoryCost"):
        decode_key_store(orjson.dumps(document), "pw")
    document["sealed"].update(memoryCost=15, parallelism=2)  # Argon2 itself refuses less than 8 KiB per lane
    with pytest.raises(ValidationError, match="below 8 KiB per lane"):
        decode_key_store(orjson.dumps(document), "pw")


def test_a_document_that_is_not_a_key_store_is_refused() -> None:
    for data in (b"not json", b"[]", b'{"format": "other"}', b'{"format": "medstream-key-store", "version": 9}'):
        with pytest.raises(ValidationError):
            decode_key_store(data)
    document = orjson.loads(encode_key_store(store()))
    document["pins"]["pat-b"][PATIENT_KEYS.id]["id"] = HCP_KEYS.id  # a pin whose id is not its keys'
    with pytest.raises(ValidationError):
        decode_key_store(orjson.dumps(document))


def test_pinning_again_keeps_a_verified_key_verified() -> None:
    key_store = store()
    key_store.pin("pat-b", PATIENT_KEYS.public)
    assert key_store.pins["pat-b"][PATIENT_KEYS.id].verified is True
    assert key_store.pinned_records()["hcp-a"][HCP_KEYS.id] == HCP_KEYS.public


def test_the_file_is_written_0600_atomically_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "example.org" / "hcp-a.json"
    original = store()
    save_key_store(path, original, "pw", parameters=FAST)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["hcp-a.json"]  # no temporary file left
    assert same(load_key_store(path, "pw"), original)
    save_key_store(path, KeyStore("hcp-a", [HCP_KEYS]))  # replaced whole
    assert [k.id for k in load_key_store(path).key_pairs] == [HCP_KEYS.id]


def test_a_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hcp-a.json"
    save_key_store(path, store())
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError, match="mode 0644"):
        load_key_store(path)
    os.chmod(path, 0o620)
    with pytest.raises(PermissionError, match="open to its group or others"):
        load_key_store(path)


def test_the_default_path_is_under_the_data_home_per_server_host() -> None:
    assert default_key_store_path("https://medstream.example.org/", "hcp-a", {"XDG_DATA_HOME": "/d"}) == Path(
        "/d/medstream/keys/medstream.example.org/hcp-a.json"
    )
    assert default_key_store_path("http://localhost:8080", "p1", {"HOME": "/home/u"}) == Path(
        "/home/u/.local/share/medstream/keys/localhost_8080/p1.json"
    )
    with pytest.raises(ValueError, match="data owner id"):
        default_key_store_path("http://localhost", "../escape", {"HOME": "/home/u"})


def test_a_key_entry_that_does_not_match_its_id_is_refused_and_sealing_is_told() -> None:
    document = orjson.loads(encode_key_store(store()))
    document["keys"][0]["id"] = PATIENT_KEYS.id
    with pytest.raises(ValidationError, match="does not match its private keys"):
        decode_key_store(orjson.dumps(document))
    assert is_sealed(encode_key_store(store(), "pw", parameters=FAST))
    assert not is_sealed(encode_key_store(store())) and not is_sealed(b"not json")


def test_the_search_key_is_kept_with_the_private_keys_sealed_or_not() -> None:
    key_store = KeyStore("hcp-a", [HCP_KEYS], search_key=bytes([0x55]) * 32)
    plain = encode_key_store(key_store)
    assert orjson.loads(plain)["searchKey"] == "VVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVVU="
    assert decode_key_store(plain).search_key == key_store.search_key
    sealed = encode_key_store(key_store, "correct horse", parameters=FAST)
    assert "searchKey" not in orjson.loads(sealed) and "VVVVVVVV" not in sealed.decode()
    assert decode_key_store(sealed, "correct horse").search_key == key_store.search_key
    # A store made before search keys has none; it gets one once, and keeps it.
    old = decode_key_store(encode_key_store(KeyStore("hcp-a", [HCP_KEYS])))
    assert old.search_key is None and old.ensure_search_key() is True
    made = old.search_key
    assert made is not None and len(made) == 32 and old.ensure_search_key() is False and old.search_key == made
    short = orjson.loads(plain)
    short["searchKey"] = "AAAA"
    with pytest.raises(ValidationError, match="searchKey is 3 bytes"):
        decode_key_store(orjson.dumps(short))


async def test_the_key_store_lock_is_held_by_one_login_at_a_time_and_a_wait_has_an_end(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "hcp.json"  # its directory is made, as for the store
    order: list[str] = []

    async def login(name: str, hold: float) -> None:
        async with key_store_lock(path):
            order.append(f"{name} in")
            await asyncio.sleep(hold)
            order.append(f"{name} out")

    await asyncio.gather(login("first", 0.2), login("second", 0))
    assert order in (["first in", "first out", "second in", "second out"],
                     ["second in", "second out", "first in", "first out"])  # fmt: skip
    async with key_store_lock(path):
        with pytest.raises(UnavailableError, match=r"held by another process .* for over 0.2 s"):
            async with key_store_lock(path, within=0.2):
                pass
    async with key_store_lock(path, within=0.2):  # released: taken at once
        assert stat.S_IMODE((path.parent / ".hcp.json.lock").stat().st_mode) == 0o600
