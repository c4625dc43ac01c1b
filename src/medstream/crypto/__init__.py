"""End-to-end encryption, sans-I/O: data-owner keys, exchange data, entity keys, `encryptedSelf`, the key store
document, the key vault, recovery codes and blind-index tokens (docs/security.md describes every format)."""

from medstream.crypto.blind_index import name_tokens, normalise, token
from medstream.crypto.delegations import (
    access_control_key,
    delegation_key,
    secure_delegation,
    server_delegation_key,
)
from medstream.crypto.encrypted_self import ENCRYPTED_SELF, decrypt_fields, encrypt_fields, encrypted_self_kid
from medstream.crypto.entity_keys import EntityKey, unwrap_entity_key, wrap_entity_key, wrapped_kid
from medstream.crypto.exchange_data import (
    ExchangeSecrets,
    add_wraps,
    add_wraps_as_delegate,
    create_exchange_data,
    open_exchange_data,
    sign_exchange_data,
    verify_exchange_data,
)
from medstream.crypto.key_store_format import (
    Argon2Parameters,
    KeyStore,
    PinnedKey,
    decode_key_store,
    decode_private_part,
    encode_key_store,
    encode_private_part,
)
from medstream.crypto.key_vault import open_key_vault, seal_key_vault
from medstream.crypto.owner_keys import (
    DataOwnerKeyPair,
    PublicKeyRecord,
    fingerprint,
    key_id,
    parse_crypto_keys,
    parse_public_record,
)
from medstream.crypto.recovery import (
    new_recovery_key,
    open_recovery_blob,
    parse_recovery_code,
    recovery_code,
    recovery_id,
    seal_recovery_blob,
)
from medstream.crypto.suite import SUITE_1, ctx

__all__ = [
    "ENCRYPTED_SELF",
    "SUITE_1",
    "Argon2Parameters",
    "DataOwnerKeyPair",
    "EntityKey",
    "ExchangeSecrets",
    "KeyStore",
    "PinnedKey",
    "PublicKeyRecord",
    "access_control_key",
    "add_wraps",
    "add_wraps_as_delegate",
    "create_exchange_data",
    "ctx",
    "decode_key_store",
    "decode_private_part",
    "decrypt_fields",
    "delegation_key",
    "encode_key_store",
    "encode_private_part",
    "encrypt_fields",
    "encrypted_self_kid",
    "fingerprint",
    "key_id",
    "name_tokens",
    "new_recovery_key",
    "normalise",
    "open_exchange_data",
    "open_key_vault",
    "open_recovery_blob",
    "parse_crypto_keys",
    "parse_public_record",
    "parse_recovery_code",
    "recovery_code",
    "recovery_id",
    "seal_key_vault",
    "seal_recovery_blob",
    "secure_delegation",
    "server_delegation_key",
    "sign_exchange_data",
    "token",
    "unwrap_entity_key",
    "verify_exchange_data",
    "wrap_entity_key",
    "wrapped_kid",
]
