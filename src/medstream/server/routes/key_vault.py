"""GET, PUT and DELETE /rest/v1/keyvault: the caller's own key vault, an opaque blob its SDK sealed under a vault
passphrase (docs/security.md, "The key vault").

Every call acts on the caller's vault and no other: no path names another user's, so neither another user nor an
admin can read, replace or delete it (there is no escrow). A user that acts as no data owner has no keys to keep,
and is refused with 403. A user's vault is dropped when the user is deleted (store/user_changes.py).
"""

from __future__ import annotations

from starlette.responses import Response

from medstream.access import Actor
from medstream.errors import ForbiddenError, NotFoundError
from medstream.model.key_vault import KeyVault, KeyVaultWrite
from medstream.server.rest import Body, Call, Collection, Operation
from medstream.store.key_vaults import StoredKeyVault


def _owner(actor: Actor) -> str:
    """The caller's user id, once it is known to act as a data owner."""
    if actor.data_owner_id is None:
        raise ForbiddenError(
            "this user acts as no data owner: it has no keys to keep in a key vault, and no user reads another's"
        )
    return actor.user_id


def _answer(stored: StoredKeyVault) -> Response:
    vault = KeyVault(
        user_id=stored.user_id, rev=stored.rev, blob=stored.blob, created=stored.created, modified=stored.modified
    )
    return Response(vault.to_json(), media_type="application/json")


async def get_key_vault(call: Call) -> Response:
    stored = await call.state.key_vaults.get(_owner(call.actor))
    if stored is None:
        raise NotFoundError("you have no key vault")
    return _answer(stored)


async def put_key_vault(call: Call) -> Response:
    body: KeyVaultWrite = call.body
    return _answer(await call.state.key_vaults.put(_owner(call.actor), body.blob, body.rev))


async def delete_key_vault(call: Call) -> Response:
    if not await call.state.key_vaults.delete(_owner(call.actor)):
        raise NotFoundError("you have no key vault")
    return Response(status_code=204)


key_vault = Collection(
    "/rest/v1/keyvault",
    "keyvault",
    [
        Operation(
            "GET",
            "",
            get_key_vault,
            "Your key vault: the blob your SDK sealed under your vault passphrase",
            "get_key_vault",
            KeyVault,
            (401, 403, 404, 503),
        ),
        Operation(
            "PUT",
            "",
            put_key_vault,
            "Store your first key vault (no rev), or replace it (its current rev)",
            "put_key_vault",
            KeyVault,
            (400, 401, 403, 409, 413, 503),
            body=Body(KeyVaultWrite),
            description="A missing rev when a vault is stored, or a rev that is not the stored one's, is a 409 and "
            "changes nothing. The blob is at most 1 MiB of base64 text.",
        ),
        Operation(
            "DELETE",
            "",
            delete_key_vault,
            "Delete your key vault",
            "delete_key_vault",
            None,
            (401, 403, 404, 503),
            status=204,
        ),
    ],
    mount=False,
)
