"""A data owner's keys at login, on SQLite and PostgreSQL: made and published on the first login, found again
on the next, refused with a way to recover when the store lacks the published keys, restored from a recovery
code, sealed under a passphrase."""

from __future__ import annotations

import asyncio
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from medstream.crypto import Argon2Parameters, parse_public_record
from medstream.errors import DecryptionError, MissingKeysError, NotFoundError
from medstream.model import Content, DataSample, HealthcareProfessional, Patient, User
from medstream.sdk import MedTechApi
from tests.conftest import RunningServer, serve


@pytest_asyncio.fixture(scope="module", params=["sqlite", "postgresql"])
async def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningServer]:
    """A server that requires encryption (`MEDSTREAM_REQUIRE_ENCRYPTION` on): every medical field these tests
    write reaches it encrypted by the SDK, or the write is refused."""
    async with serve(request.param, tmp_path_factory.mktemp(request.param), require_encryption=True) as running:
        yield running


CHEAP = Argon2Parameters(time_cost=1, memory_cost=1024, parallelism=1)


async def _user(admin_api: MedTechApi) -> tuple[str, str, str]:
    hcp = await admin_api.healthcare_professional_api.create_or_modify_healthcare_professional(
        HealthcareProfessional(last_name="Keyed")
    )
    login, password = f"hcp-{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
    await admin_api.user_api.create_or_modify_user(User(login=login, healthcare_party_id=hcp.id, password=password))
    assert hcp.id is not None
    return hcp.id, login, password


async def _login(server: RunningServer, login: str, password: str, path: Path, **options: object) -> MedTechApi:
    builder = MedTechApi.builder().with_url(server.url).with_username(login).with_password(password)
    builder.with_key_store(path, **options)  # type: ignore[arg-type]
    return await builder.build()


async def test_the_first_login_makes_and_publishes_a_key_pair_and_the_next_finds_it(
    server: RunningServer, admin_api: MedTechApi, tmp_path: Path
) -> None:
    hcp_id, login, password = await _user(admin_api)
    path = tmp_path / "keys" / "store.json"
    async with await _login(server, login, password, path) as api:
        owner = (await api.get_data_owner()).data_owner
        assert isinstance(owner, HealthcareProfessional) and len(owner.crypto_keys) == 1
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert owner.crypto_keys[0].id in path.read_text()
        first = owner.crypto_keys[0].id
        patient = await api.patient_api.create_or_modify_patient(Patient(last_name="Kept"))
    async with await _login(server, login, password, path) as again:
        owner = (await again.get_data_owner()).data_owner
        assert [key.id for key in owner.crypto_keys] == [first], "no second key pair"
        assert patient.id is not None
        assert (await again.patient_api.get_patient(patient.id)).last_name == "Kept"
        record = parse_public_record(owner.crypto_keys[0].to_json_dict())
        assert await again.crypto.fingerprint(hcp_id) == record.fingerprint


async def test_logins_that_start_at_once_on_one_machine_share_the_key_pair_the_first_one_made(
    server: RunningServer, admin_api: MedTechApi, tmp_path: Path
) -> None:
    # The workers of one app, first started together: one key store file, one key pair made and published.
    _hcp_id, login, password = await _user(admin_api)
    path = tmp_path / "store.json"
    apis = await asyncio.gather(*(_login(server, login, password, path) for _ in range(4)))
    try:
        owner = (await apis[0].get_data_owner()).data_owner
        assert isinstance(owner, HealthcareProfessional)
        (published,) = owner.crypto_keys
        assert published.id in path.read_text(), "the key pair published is the one the store holds"
        assert {api.crypto.state.store.key_pairs[0].id for api in apis} == {published.id}
        patient = await apis[0].patient_api.create_or_modify_patient(Patient(last_name="Shared"))
        assert patient.id is not None
        assert (await apis[3].patient_api.get_patient(patient.id)).last_name == "Shared"
    finally:
        for api in apis:
            await api.close()


async def test_a_first_login_from_another_device_at_the_same_moment_is_told_its_keys_are_elsewhere(
    server: RunningServer, admin_api: MedTechApi, tmp_path: Path
) -> None:
    # Two devices, two key store files: the keys of the login that published first are the data owner's; the
    # other device lacks them, and hears so as at any later login (not a conflict on the data owner's record).
    _hcp_id, login, password = await _user(admin_api)
    paths = [tmp_path / "device-a" / "store.json", tmp_path / "device-b" / "store.json"]
    outcomes = await asyncio.gather(*(_login(server, login, password, p) for p in paths), return_exceptions=True)
    opened = [o for o in outcomes if isinstance(o, MedTechApi)]
    refused = [o for o in outcomes if not isinstance(o, MedTechApi)]
    assert len(opened) == 1 and len(refused) == 1, outcomes
    async with opened[0] as api:
        owner = (await api.get_data_owner()).data_owner
        assert isinstance(owner, HealthcareProfessional)
        (published,) = owner.crypto_keys
        assert api.crypto.key_store_path in paths and published.id in api.crypto.key_store_path.read_text()
    assert isinstance(refused[0], MissingKeysError), refused[0]
    other = next(p for p in paths if p != api.crypto.key_store_path)
    assert published.id in str(refused[0]) and str(other) in str(refused[0])


async def test_a_store_without_the_published_keys_is_refused_with_the_way_to_recover_and_a_code_restores_them(
    server: RunningServer, admin_api: MedTechApi, tmp_path: Path
) -> None:
    _hcp_id, login, password = await _user(admin_api)
    path = tmp_path / "store.json"
    async with await _login(server, login, password, path) as api:
        code, blob = api.crypto.create_recovery_code()
        sample_patient = await api.patient_api.create_or_modify_patient(Patient(last_name="Recovered"))
        assert sample_patient.id is not None
        sample = await api.data_sample_api.create_or_modify_data_sample_for(
            sample_patient.id, DataSample(content={"en": Content(string_value="kept through recovery")})
        )
    path.unlink()
    with pytest.raises(MissingKeysError, match="recovery code") as missing:
        await _login(server, login, password, path)
    assert str(path) in str(missing.value)
    assert not path.exists(), "no new key pair was made"

    builder = MedTechApi.builder().with_url(server.url).with_username(login).with_password(password)
    async with await builder.with_key_store(path).with_recovery(code, blob).build() as restored:
        assert sample.id is not None
        read = await restored.data_sample_api.get_data_sample(sample.id)
        assert read.content["en"].string_value == "kept through recovery"
    assert path.exists()


async def test_a_passphrase_seals_the_private_keys_and_a_wrong_one_is_refused(
    server: RunningServer, admin_api: MedTechApi, tmp_path: Path
) -> None:
    _hcp_id, login, password = await _user(admin_api)
    path = tmp_path / "sealed.json"
    async with await _login(server, login, password, path, passphrase="correct horse", argon2=CHEAP) as api:
        owner = (await api.get_data_owner()).data_owner
    text = path.read_text()
    assert '"sealed"' in text and "encryptionPrivateKey" not in text
    with pytest.raises(DecryptionError, match="wrong passphrase"):
        await _login(server, login, password, path, passphrase="battery staple", argon2=CHEAP)
    async with await _login(server, login, password, path, passphrase="correct horse", argon2=CHEAP) as again:
        assert (await again.get_data_owner()).data_owner.crypto_keys == owner.crypto_keys  # type: ignore[union-attr]


async def test_any_authenticated_user_reads_a_data_owners_public_keys_and_nothing_else_of_it(
    server: RunningServer, admin_api: MedTechApi, tmp_path: Path
) -> None:
    hcp_id, login, password = await _user(admin_api)
    async with await _login(server, login, password, tmp_path / "owner.json") as owner:
        published = (await owner.get_data_owner()).data_owner.crypto_keys
    _other_id, other_login, other_password = await _user(admin_api)
    async with await _login(server, other_login, other_password, tmp_path / "other.json") as other:
        answer = await other.transport.request("GET", f"/rest/v1/data-owners/{hcp_id}/keys")
        assert answer == {
            "dataOwnerId": hcp_id,
            "type": "HealthcareProfessional",
            "cryptoKeys": [key.to_json_dict() for key in published],
        }
        assert [record.id for record in await other.crypto.published_keys(hcp_id)] == [published[0].id]
        with pytest.raises(NotFoundError, match="no-such-owner"):
            await other.transport.request("GET", "/rest/v1/data-owners/no-such-owner/keys")
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get(f"/rest/v1/data-owners/{hcp_id}/keys")).status_code == 401
