"""The key vault: a data owner's whole key store sealed under a vault passphrase, for the server to keep for its
user (bytes in, text out), and the passphrase the SDK accepts for it.

    blob   = b64(header || nonce(12) || AES-256-GCM(k, key store document, aad))
    header = 0x01 (suite) || salt(16) || timeCost || memoryCost (KiB) || parallelism   (each 4 bytes, big-endian)
    k      = Argon2id(passphrase as UTF-8, salt, timeCost, memoryCost, parallelism), 32 bytes
    aad    = header || ctx("key-vault", userId)

The key store document is the key store file's, private part in clear (`key_store_document`, compact JSON):
private keys, search key and pins. The header is in the associated data, so no byte of the blob can change
without it failing to open, and the user id binds it to the one user whose vault it is. Whoever holds the blob
can try passphrases offline, each guess costing one Argon2id: the passphrase must be strong (`check_passphrase`).
"""

from __future__ import annotations

import hmac
import math
import os
import struct

import orjson

from medstream.crypto.aead import open_sealed, seal
from medstream.crypto.key_store_format import Argon2Parameters, KeyStore, decode_key_store, key_store_document
from medstream.crypto.suite import NONCE_SIZE, SUITE_1, TAG_SIZE, ctx, frame, unframe
from medstream.errors import DecryptionError, ValidationError

SALT_SIZE = 16
_COSTS = struct.Struct(">III")  # timeCost, memoryCost, parallelism
HEADER_SIZE = 1 + SALT_SIZE + _COSTS.size
# The least number of guesses zxcvbn must estimate for a vault passphrase: past its top score (4, from 10^10).
# At the default Argon2id costs (about half a second of a core per guess) that is some 15,000 core-years.
MIN_GUESSES_LOG10 = 12
_ZXCVBN_MAX_LENGTH = 72  # zxcvbn refuses longer text; a longer passphrase is judged by its first 72 characters


def _header(parameters: Argon2Parameters, salt: bytes) -> bytes:
    costs = _COSTS.pack(parameters.time_cost, parameters.memory_cost, parameters.parallelism)
    return bytes((SUITE_1,)) + salt + costs


def seal_key_vault(
    store: KeyStore,
    passphrase: str,
    user_id: str,
    *,
    parameters: Argon2Parameters | None = None,
    salt: bytes | None = None,
    nonce: bytes | None = None,
) -> str:
    """The vault blob of `store` for the user `user_id`; salt and nonce are random unless given (known-answer
    tests)."""
    parameters = parameters or Argon2Parameters()
    salt = salt if salt is not None else os.urandom(SALT_SIZE)
    if len(salt) != SALT_SIZE:
        raise ValueError(f"a key vault's salt has {SALT_SIZE} bytes, got {len(salt)}")
    header = _header(parameters, salt)
    document = orjson.dumps(key_store_document(store), option=orjson.OPT_SORT_KEYS)
    key = parameters.derive(passphrase, salt)
    return frame(header[1:] + seal(key, document, header + ctx("key-vault", user_id), nonce=nonce))


def open_key_vault(blob: str, passphrase: str, user_id: str) -> KeyStore:
    """The key store a vault blob holds. DecryptionError for a wrong passphrase, a changed byte or another user's
    blob (one message for the three: the tag cannot tell them apart); ValidationError for costs out of bounds,
    refused before any hashing."""
    what = f"key vault of user {user_id}"
    payload = unframe(blob, what, min_length=HEADER_SIZE - 1 + NONCE_SIZE + TAG_SIZE)
    header = bytes((SUITE_1,)) + payload[: HEADER_SIZE - 1]
    salt = header[1 : 1 + SALT_SIZE]
    time_cost, memory_cost, parallelism = _COSTS.unpack(header[1 + SALT_SIZE :])
    costs = {"timeCost": time_cost, "memoryCost": memory_cost, "parallelism": parallelism}
    key = Argon2Parameters.bounded(costs, what).derive(passphrase, salt)
    try:
        document = open_sealed(key, payload[HEADER_SIZE - 1 :], header + ctx("key-vault", user_id), what)
    except DecryptionError:
        raise DecryptionError(
            f"{what}: wrong passphrase, or the vault was altered or is another user's; nothing was changed"
        ) from None
    return decode_key_store(document)


def check_passphrase(passphrase: str, *, login: str, password: str) -> None:
    """Refuse (ValidationError) a vault passphrase that is the login password, which the server sees at every
    login, or that zxcvbn guesses in fewer than 10^MIN_GUESSES_LOG10 tries (the login and password count as
    known words)."""
    if hmac.compare_digest(passphrase.encode(), password.encode()):
        raise ValidationError(
            "the vault passphrase is your login password, which the server sees at every login: it could open the "
            "vault. Choose another passphrase"
        )
    from zxcvbn import zxcvbn  # it builds its dictionaries on import (about 0.1 s): only when a vault is sealed

    estimate = zxcvbn(passphrase[:_ZXCVBN_MAX_LENGTH], user_inputs=[login, password])
    if estimate["guesses_log10"] < MIN_GUESSES_LOG10:
        feedback = estimate["feedback"]
        advice = " ".join(filter(None, [feedback["warning"], *feedback["suggestions"]]))
        raise ValidationError(
            f"the vault passphrase is too weak: about 10^{math.floor(estimate['guesses_log10'])} guesses find it, "
            f"and whoever holds the server's database may try guesses offline; at least 10^{MIN_GUESSES_LOG10} "
            f"are required (four or five random words do). {advice}".rstrip()
        )
