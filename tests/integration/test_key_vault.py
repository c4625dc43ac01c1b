"""The key vault on SQLite and PostgreSQL: a data owner keeps its key store on the server sealed under a vault
passphrase, and a device without the key store gets the keys back with the passphrase alone; a wrong passphrase
changes nothing; only the user itself reaches its vault (no other user, no admin); the database holds no key
in clear; revisions, bounds and a user's deletion."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from medstream.crypto import Argon2Parameters
from medstream.errors import (
    ConflictError,
    DecryptionError,
    ForbiddenError,
    MissingKeysError,
    NotFoundError,
    ValidationError,
)
from medstream.model import Content, DataSample, HealthcareProfessional, Patient, User
from medstream.model.key_vault import MAX_KEY_VAULT_CHARS
from medstream.sdk import MedTechApi
from tests.conftest import RunningServer, serve
from tests.integration.canary import byte_forms
from tests.integration.stored_rows import read_rows

CHEAP = Argon2Parameters(time_cost=1, memory_cost=1024, parallelism=1)
PASSPHRASE = "violet tugboat quarry lantern"
VAULT = "/rest/v1/keyvault"


@pytest_asyncio.fixture(scope="module", params=["sqlite", "postgresql"])
async def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    """A server that requires encryption: what these tests write reaches it encrypted, or is refused."""
    async with serve(request.param, tmp_path_factory.mktemp(request.param), require_encryption=True) as running:
        yield running


async def _user(admin_api: MedTechApi) -> tuple[str, str, str]:
    """A new professional's user: (user id, login, password)."""
    hcp = await admin_api.healthcare_professional_api.create_or_modify_healthcare_professional(
        HealthcareProfessional(last_name="Vaulted")
    )
    login, password = f"hcp-{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
    user = await admin_api.user_api.create_or_modify_user(
        User(login=login, healthcare_party_id=hcp.id, password=password)
    )
    assert user.id is not None
    return user.id, login, password


async def _login(
    server: RunningServer, login: str, password: str, path: Path, vault_passphrase: str | None = None
) -> MedTechApi:
    builder = MedTechApi.builder().with_url(server.url).with_username(login).with_password(password)
    builder.with_key_store(path)
    if vault_passphrase is not None:
        builder.with_key_vault(vault_passphrase)
    return await builder.build()


async def test_a_device_without_the_key_store_restores_the_keys_from_the_vault_and_reads_what_the_first_wrote(
    server: RunningServer, admin_api: MedTechApi, tmp_path: Path
) -> None:
    _user_id, login, password = await _user(admin_api)
    async with await _login(server, login, password, tmp_path / "first.json") as first:
        patient = await first.patient_api.create_or_modify_patient(Patient(last_name="Vaultpatient"))
        assert patient.id is not None
        sample = await first.data_sample_api.create_or_modify_data_sample_for(
            patient.id, DataSample(content={"en": Content(string_value="read on the second device")})
        )
        rev = await first.crypto.upload_key_vault(PASSPHRASE, argon2=CHEAP)
        keys = first.crypto.state.store
    assert rev.startswith("1-")

    with pytest.raises(MissingKeysError, match=r"with_key_vault\(passphrase\)"):
        await _login(server, login, password, tmp_path / "without.json")
    second_path = tmp_path / "second.json"
    async with await _login(server, login, password, second_path, PASSPHRASE) as second:
        assert sample.id is not None
        read = await second.data_sample_api.get_data_sample(sample.id)
        assert read.content["en"].string_value == "read on the second device"
        assert (await second.patient_api.get_patient(patient.id)).last_name == "Vaultpatient"
        restored = second.crypto.state.store
        assert [k.private_bytes() for k in restored.key_pairs] == [k.private_bytes() for k in keys.key_pairs]
        assert restored.search_key == keys.search_key
    assert second_path.exists(), "the restored keys are saved in the new device's key store"
    async with await _login(server, login, password, second_path) as again:  # no vault needed any more
        assert (await again.data_sample_api.get_data_sample(sample.id)).content["en"].string_value


async def test_a_wrong_passphrase_fails_and_changes_nothing(
    server: RunningServer, admin_api: MedTechApi, tmp_path: Path
) -> None:
    _user_id, login, password = await _user(admin_api)
    async with await _login(server, login, password, tmp_path / "first.json") as first:
        await first.crypto.upload_key_vault(PASSPHRASE, argon2=CHEAP)
        stored = await first.transport.request("GET", VAULT)
    path = tmp_path / "second.json"
    with pytest.raises(DecryptionError, match="wrong passphrase"):
        await _login(server, login, password, path, "violet tugboat quarry lanterns")
    assert not path.exists(), "no key store was written"
    async with await _login(server, login, password, tmp_path / "first.json") as first:
        assert await first.transport.request("GET", VAULT) == stored


async def test_the_login_password_or_a_weak_passphrase_is_refused_before_anything_is_sent(
    server: RunningServer, admin_api: MedTechApi, tmp_path: Path
) -> None:
    _user_id, login, password = await _user(admin_api)
    async with await _login(server, login, password, tmp_path / "keys.json") as api:
        with pytest.raises(ValidationError, match="is your login password"):
            await api.crypto.upload_key_vault(password, argon2=CHEAP)
        with pytest.raises(ValidationError, match="too weak"):
            await api.crypto.upload_key_vault("password1234", argon2=CHEAP)
        with pytest.raises(NotFoundError):
            await api.transport.request("GET", VAULT)


async def test_only_the_user_itself_reaches_its_vault(
    server: RunningServer, admin_api: MedTechApi, tmp_path: Path
) -> None:
    owner_id, login, password = await _user(admin_api)
    async with await _login(server, login, password, tmp_path / "owner.json") as owner:
        await owner.crypto.upload_key_vault(PASSPHRASE, argon2=CHEAP)
        stored = await owner.transport.request("GET", VAULT)
    assert stored["userId"] == owner_id

    other_id, other_login, other_password = await _user(admin_api)
    async with await _login(server, other_login, other_password, tmp_path / "other.json") as other:
        with pytest.raises(NotFoundError, match="you have no key vault"):
            await other.transport.request("GET", VAULT)  # its own: there is no path to another's
        # The owner's blob stored as the other's own vault (as a server that swapped rows would answer it):
        # bound to the owner's user id, it does not open for the other, even with the owner's passphrase.
        await other.transport.request("PUT", VAULT, {"blob": stored["blob"]})
    with pytest.raises(DecryptionError, match=f"key vault of user {other_id}: wrong passphrase"):
        await _login(server, other_login, other_password, tmp_path / "other-new.json", PASSPHRASE)

    for method, body in (("GET", None), ("PUT", {"blob": stored["blob"]}), ("DELETE", None)):
        with pytest.raises(ForbiddenError, match="acts as no data owner"):
            await admin_api.transport.request(method, VAULT, body)
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get(VAULT)).status_code == 401
    async with await _login(server, login, password, tmp_path / "owner.json") as owner:
        assert await owner.transport.request("GET", VAULT) == stored, "untouched by the others"


async def test_the_database_holds_the_blob_and_no_key_in_any_form(
    server: RunningServer, admin_api: MedTechApi, tmp_path: Path
) -> None:
    user_id, login, password = await _user(admin_api)
    async with await _login(server, login, password, tmp_path / "keys.json") as api:
        await api.crypto.upload_key_vault(PASSPHRASE, argon2=CHEAP)
        stored = await api.transport.request("GET", VAULT)
        store = api.crypto.state.store
        secrets = {"search key": store.search_key}
        for keys in store.key_pairs:
            secrets[f"{keys.id} encryption"], secrets[f"{keys.id} signing"] = keys.private_bytes()
    (row,) = await read_rows(server, "key_vaults", "user_id", user_id)
    assert row["blob"] == stored["blob"] and row["rev"] == stored["rev"], "the row read is the vault"
    text = " ".join(str(value) for value in row.values()).encode()
    found = [
        f"{name}: {form}"
        for name, secret in secrets.items()
        for form, written in byte_forms(secret or b"").items()
        if written in text
    ]
    assert len(secrets) == 3 and all(secrets.values()) and found == []


async def test_a_replacement_needs_the_current_rev_and_a_conflict_changes_nothing(
    server: RunningServer, admin_api: MedTechApi, tmp_path: Path
) -> None:
    _user_id, login, password = await _user(admin_api)
    async with await _login(server, login, password, tmp_path / "keys.json") as api:
        request = api.transport.request
        results: list[object] = await asyncio.gather(
            request("PUT", VAULT, {"blob": "AAAA"}), request("PUT", VAULT, {"blob": "BBBB"}), return_exceptions=True
        )
        assert sum(isinstance(r, ConflictError) for r in results) == 1, results  # racing first vaults: one wins
        (won,) = [r for r in results if isinstance(r, dict)]
        assert (await request("GET", VAULT)) == won
        with pytest.raises(ConflictError, match="send its rev"):
            await request("PUT", VAULT, {"blob": "CCCC"})
        replaced = await request("PUT", VAULT, {"blob": "CCCC", "rev": won["rev"]})
        assert replaced["rev"].startswith("2-") and replaced["created"] == won["created"]
        with pytest.raises(ConflictError, match=f"no key vault at rev {won['rev']}"):
            await request("PUT", VAULT, {"blob": "DDDD", "rev": won["rev"]})
        assert (await request("GET", VAULT)) == replaced
        rev = await api.crypto.upload_key_vault(PASSPHRASE, argon2=CHEAP)  # the SDK replaces what it finds
        assert rev.startswith("3-")
        assert await api.crypto.delete_key_vault() is True
        assert await api.crypto.delete_key_vault() is False
        with pytest.raises(NotFoundError):
            await request("GET", VAULT)
        with pytest.raises(ConflictError, match="no key vault at rev"):
            await request("PUT", VAULT, {"blob": "EEEE", "rev": rev})


async def test_a_bad_or_oversized_vault_is_a_400_naming_the_field(
    server: RunningServer, admin_api: MedTechApi, tmp_path: Path
) -> None:
    _user_id, login, password = await _user(admin_api)
    async with await _login(server, login, password, tmp_path / "keys.json") as api:
        request = api.transport.request
        for body, where in (
            ({"blob": "not base64!"}, "body.blob"),
            ({"blob": "A" * (MAX_KEY_VAULT_CHARS + 4)}, "body.blob"),
            ({"blob": "AAAA", "rev": "stale"}, "body.rev"),
            ({"blob": "AAAA", "extra": 1}, "body.extra"),
            ({}, "body.blob"),
        ):
            with pytest.raises(ValidationError) as refused:
                await request("PUT", VAULT, body)
            assert [detail["path"] for detail in refused.value.details] == [where], body
        with pytest.raises(NotFoundError):
            await request("GET", VAULT)


async def test_deleting_a_user_drops_its_vault(server: RunningServer, admin_api: MedTechApi, tmp_path: Path) -> None:
    user_id, login, password = await _user(admin_api)
    async with await _login(server, login, password, tmp_path / "keys.json") as api:
        await api.crypto.upload_key_vault(PASSPHRASE, argon2=CHEAP)
    assert len(await read_rows(server, "key_vaults", "user_id", user_id)) == 1
    await admin_api.user_api.delete_user(user_id)
    assert await read_rows(server, "key_vaults", "user_id", user_id) == []
