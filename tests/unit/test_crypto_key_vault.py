"""crypto/key_vault.py: the key vault blob (frozen, opened as the spec says, refused when anything about it is
wrong) and the vault passphrase the SDK accepts."""

from __future__ import annotations

import base64
import struct

import orjson
import pytest
from argon2.low_level import Type, hash_secret_raw
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from medstream.crypto import Argon2Parameters, DataOwnerKeyPair, KeyStore, open_key_vault, seal_key_vault
from medstream.crypto.key_vault import MIN_GUESSES_LOG10, check_passphrase
from medstream.errors import DecryptionError, MedstreamError, ValidationError
from medstream.model.key_vault import MAX_KEY_VAULT_CHARS, KeyVaultWrite
from tests.unit.crypto_fixtures import HCP_KEYS, PATIENT_KEYS, context

FAST = Argon2Parameters(time_cost=1, memory_cost=64, parallelism=1)  # the tests' cost; the default is t=3 64 MiB p=4
PASSPHRASE = "correct horse battery staple"
# Frozen: the key store of "hcp-a" (HCP_KEYS, search key 0x55 * 32, PATIENT_KEYS pinned for "pat-b", verified)
# sealed for the user "user-a" with Argon2id(t=1, m=64 KiB, p=1, salt 0*16) and AES-256-GCM (nonce 0*12).
FROZEN_VAULT = (
    "AQAAAAAAAAAAAAAAAAAAAAAAAAABAAAAQAAAAAEAAAAAAAAAAAAAAAA931A5V1ePMxnvjAAaOVGZxS7nPGEnV2LxJMaVjKqq8Ok25pBbYSBl"
    "luC60M598FpHuPJQYP449HTTWPVDw3v2+DvwQpJdzuy+YR0TboWMvFSBLfQWnOcaD5uAF+HnXANPAisz7QKKUOg+A70eM3cwF65O2SZ+pAsg"
    "byXXJdXb0XSFMfRO2J72hSZfq/FQeLdE5mH4+tXLPiCgzW52/87KAK2/sU7dDOKIvdGnuJD+CfRVpCgNp+HMJ3yEPP0WQ4nyzfAM4HeKUg9x"
    "dD1uySCRCrcX3zc2ygFR63k1NhCeC56N+CTDC1kVm7LsJapf8SXi614AwCwVUwwbd0yWvXA+xsUeNxaexCZlVazFnUVyR4KjYtkf1ac0h+Yz"
    "DjCf2TrSFbmivr8NeZSC4kwG9bJxBDTD+9pdtzsE6Icb0ziBm21/yGzJAKexq+ERWl743q2PouHULF7xQ2XTW2TTqVQr6/0FHq/Fvo2xcVi7"
    "RgnoHLkAA6DDqgqS34QU0HFmIA/k8TTG8IV464BVpRIEWuBbUck0IQrtZEXKEje621uOqW1lQyMf8ijUumUM7egAeX13k1y4iDwcHWBkTE+v"
    "UudQaH7vTq2PQAgDQ8o7YvDvf+cwHo/Wm0RjI5UP9hibklHloaxJ5NgMz4JFlS6t66+aLiND0yjEeg70+IFJU/QeQSTdEgp0uAXkIpCZO7+9"
    "f+wxfl9vXsuO2CEH8/os9SYZmpAvq68OianILSiVBTwDJnWfYu293By2om1yAPuLPqDnC/5pVsBgx/p+rBKGnlhLn/xP0o5duGPoU7Y52fGZ"
    "GKrXg8fncKNd5o6Sk+abfmeSeTamzytP+/fhb/rkKhZovs5jmuDJWZ4YwOUkRHzKhG9QeZ3h61NyzXFsBA=="
)


def store() -> KeyStore:
    key_store = KeyStore("hcp-a", [HCP_KEYS], search_key=bytes([0x55]) * 32)
    key_store.pin("pat-b", PATIENT_KEYS.public, verified=True)
    return key_store


def test_the_vault_blob_is_frozen() -> None:
    blob = seal_key_vault(store(), PASSPHRASE, "user-a", parameters=FAST, salt=bytes(16), nonce=bytes(12))
    assert blob == FROZEN_VAULT


def test_the_frozen_blob_opens_as_the_format_says() -> None:
    """Read with the spec's steps, not the module's: header, Argon2id of the passphrase, AES-256-GCM with the
    header and the user's context as associated data, the key store document inside."""
    raw = base64.b64decode(FROZEN_VAULT)
    header, nonce, sealed = raw[:29], raw[29:41], raw[41:]
    assert header[0] == 0x01 and header[1:17] == bytes(16)
    assert struct.unpack(">III", header[17:29]) == (1, 64, 1)
    key = hash_secret_raw(PASSPHRASE.encode(), header[1:17], 1, 64, 1, 32, Type.ID)
    document = orjson.loads(AESGCM(key).decrypt(nonce, sealed, header + context("key-vault", "user-a")))
    assert document["format"] == "medstream-key-store" and document["dataOwnerId"] == "hcp-a"
    assert document["keys"][0]["id"] == HCP_KEYS.id
    assert base64.b64decode(document["keys"][0]["encryptionPrivateKey"]) == HCP_KEYS.private_bytes()[0]
    assert document["searchKey"] == base64.b64encode(bytes([0x55]) * 32).decode()
    assert document["pins"]["pat-b"][PATIENT_KEYS.id]["verified"] is True


def test_a_vault_gives_back_the_whole_key_store() -> None:
    original = store()
    original.key_pairs.append(DataOwnerKeyPair.generate(created=2).with_status("RETIRED"))
    opened = open_key_vault(seal_key_vault(original, PASSPHRASE, "user-a", parameters=FAST), PASSPHRASE, "user-a")
    assert opened.data_owner_id == "hcp-a"
    assert [(k.id, k.status, k.private_bytes()) for k in opened.key_pairs] == [
        (k.id, k.status, k.private_bytes()) for k in original.key_pairs
    ]
    assert opened.search_key == original.search_key and opened.pins == original.pins
    again = seal_key_vault(original, PASSPHRASE, "user-a", parameters=FAST)
    assert again != seal_key_vault(original, PASSPHRASE, "user-a", parameters=FAST), "a new salt and nonce each time"


def test_the_costs_travel_in_the_blob() -> None:
    strong = Argon2Parameters(time_cost=2, memory_cost=256, parallelism=2)
    raw = base64.b64decode(seal_key_vault(store(), PASSPHRASE, "user-a", parameters=strong))
    assert struct.unpack(">III", raw[17:29]) == (2, 256, 2)
    assert open_key_vault(base64.b64encode(raw).decode(), PASSPHRASE, "user-a").data_owner_id == "hcp-a"


def test_a_wrong_passphrase_is_refused_with_a_clear_error() -> None:
    with pytest.raises(DecryptionError, match="wrong passphrase, or the vault was altered or is another user's"):
        open_key_vault(FROZEN_VAULT, "correct horse battery stapler", "user-a")


def test_a_blob_moved_to_another_user_does_not_open() -> None:
    with pytest.raises(DecryptionError, match="key vault of user user-b: wrong passphrase"):
        open_key_vault(FROZEN_VAULT, PASSPHRASE, "user-b")


def test_every_flipped_byte_is_refused_cleanly() -> None:
    raw = base64.b64decode(FROZEN_VAULT)
    for position in range(len(raw)):
        flipped = bytearray(raw)
        flipped[position] ^= 0x01
        with pytest.raises(MedstreamError) as refused:
            open_key_vault(base64.b64encode(bytes(flipped)).decode(), PASSPHRASE, "user-a")
        assert isinstance(refused.value, DecryptionError | ValidationError), (position, refused.value)


def test_costs_out_of_bounds_are_refused_before_any_hashing() -> None:
    raw = bytearray(base64.b64decode(FROZEN_VAULT))
    for costs, name in (((1, 2**23, 1), "memoryCost"), ((65, 64, 1), "timeCost"), ((1, 64, 0), "parallelism")):
        raw[17:29] = struct.pack(">III", *costs)
        with pytest.raises(ValidationError, match=name):
            open_key_vault(base64.b64encode(bytes(raw)).decode(), PASSPHRASE, "user-a")
    raw[17:29] = struct.pack(">III", 1, 8, 2)  # Argon2 needs 8 KiB per lane
    with pytest.raises(ValidationError, match="below 8 KiB per lane"):
        open_key_vault(base64.b64encode(bytes(raw)).decode(), PASSPHRASE, "user-a")


def test_a_blob_that_is_not_a_vault_is_refused() -> None:
    for blob in ("", "not base64!", base64.b64encode(b"\x02" + bytes(80)).decode(), FROZEN_VAULT[:40]):
        with pytest.raises(DecryptionError):
            open_key_vault(blob, PASSPHRASE, "user-a")


def test_the_blob_is_what_the_server_accepts() -> None:
    blob = seal_key_vault(store(), PASSPHRASE, "user-a", parameters=FAST)
    assert KeyVaultWrite(blob=blob).blob == blob
    assert len(blob) < MAX_KEY_VAULT_CHARS // 1000


def test_the_login_password_is_refused_as_a_vault_passphrase() -> None:
    password = "pw-1f0c9e4b7a2d48e6b3c5a9d0e7f21864"
    with pytest.raises(ValidationError, match="your login password, which the server sees at every login"):
        check_passphrase(password, login="jane", password=password)


def test_a_weak_passphrase_is_refused_with_advice_and_a_strong_one_accepted() -> None:
    for weak in ("password1234", "Tr0ub4dor&3", "aaaaaaaaaaaaaaaaaaaaaaaa", "jane.doe.1985"):
        with pytest.raises(ValidationError, match=rf"too weak: .*at least 10\^{MIN_GUESSES_LOG10}"):
            check_passphrase(weak, login="jane.doe", password="pw-1f0c9e4b7a2d48e6b3c5a9d0e7f21864")
    for strong in (PASSPHRASE, "violet tugboat quarry lantern", "x" * 20 + " opal kestrel drumbeat quince" * 4):
        check_passphrase(strong, login="jane.doe", password="pw-1f0c9e4b7a2d48e6b3c5a9d0e7f21864")


def test_a_passphrase_made_of_the_login_password_is_weak() -> None:
    password = "pw-1f0c9e4b7a2d48e6b3c5a9d0e7f21864"
    check_passphrase(password + "!", login="jane", password="another-password-entirely")  # strong on its own
    with pytest.raises(ValidationError, match="too weak"):
        check_passphrase(password + "!", login="jane", password=password)
