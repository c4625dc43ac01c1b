"""The key vault over REST (`/rest/v1/keyvault`): the data owner's key store sealed under a vault passphrase
(crypto/key_vault.py) and kept by the server for the logged-in user, so that a new device gets the keys with the
passphrase alone. Argon2id runs off the event loop."""

from __future__ import annotations

import asyncio
import contextlib

from medstream.crypto.key_store_format import Argon2Parameters, KeyStore
from medstream.crypto.key_vault import check_passphrase, open_key_vault, seal_key_vault
from medstream.errors import NotFoundError, ValidationError
from medstream.model.key_vault import MAX_KEY_VAULT_CHARS
from medstream.sdk.transport import Transport

_PATH = "/rest/v1/keyvault"


async def _user_id(transport: Transport) -> str:
    """The logged-in user's id: the vault is bound to it."""
    return str((await transport.request("GET", "/rest/v1/users/current"))["id"])


async def upload_key_vault(
    transport: Transport, store: KeyStore, passphrase: str, parameters: Argon2Parameters | None = None
) -> str:
    """Seal `store` under `passphrase` and store it as the user's vault, replacing the one it has; its new rev.
    ValidationError for a passphrase `check_passphrase` refuses (nothing is sent), ConflictError when another
    device replaced the vault meanwhile."""
    login, password = transport.credentials
    check_passphrase(passphrase, login=login, password=password)
    user_id = await _user_id(transport)
    blob = await asyncio.to_thread(seal_key_vault, store, passphrase, user_id, parameters=parameters)
    if len(blob) > MAX_KEY_VAULT_CHARS:
        pins = sum(len(keys) for keys in store.pins.values())
        raise ValidationError(
            f"the key store ({len(store.key_pairs)} key pairs, {pins} pinned keys) makes a vault of {len(blob)} "
            f"characters, more than the {MAX_KEY_VAULT_CHARS} a vault may hold"
        )
    body = {"blob": blob}
    with contextlib.suppress(NotFoundError):  # none: a first vault
        body["rev"] = str((await transport.request("GET", _PATH))["rev"])
    stored = await transport.request("PUT", _PATH, body)
    return str(stored["rev"])


async def read_key_vault(transport: Transport, passphrase: str) -> KeyStore | None:
    """The key store in the user's vault; None when it has none. DecryptionError for a wrong passphrase or a
    vault that was altered or is another user's."""
    user_id = await _user_id(transport)
    try:
        vault = await transport.request("GET", _PATH)
    except NotFoundError:
        return None
    return await asyncio.to_thread(open_key_vault, str(vault["blob"]), passphrase, user_id)


async def delete_key_vault(transport: Transport) -> bool:
    """Delete the user's vault; whether it had one."""
    try:
        await transport.request("DELETE", _PATH)
    except NotFoundError:
        return False
    return True
