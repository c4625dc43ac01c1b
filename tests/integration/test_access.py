"""Who may read what (docs/architecture.md, "The access rule") and who may write users.

A data owner reads an entity only once it is shared with them; everything else answers as if the entity did not
exist. Admins read everything; a patient user reads their own record. Only admins create users or change roles,
and no answer ever carries a password or its hash.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from medstream.delegations import server_delegation
from medstream.errors import ConflictError, DecryptionError, ForbiddenError, NotFoundError
from medstream.model import ENTITY_KINDS, EntityKind, Patient, SecurityMetadata, User
from medstream.model.encrypted_fields import ENCRYPTED_FIELDS
from medstream.sdk import MedTechApi
from tests.conftest import ProfessionalFactory, RunningServer
from tests.integration.kinds import KindOps, ops_for, relabel

NON_USER_KINDS = [pytest.param(kind, id=kind.name) for kind in ENTITY_KINDS if kind.name != "User"]
# Exchange data is read by its two parties only: it is never shared.
SHARABLE_KINDS = [
    pytest.param(kind, id=kind.name) for kind in ENTITY_KINDS if kind.name not in ("User", "ExchangeData")
]


@pytest.mark.parametrize("kind", NON_USER_KINDS)
async def test_another_professional_cannot_read_list_modify_delete_or_share_what_was_not_shared(
    kind: EntityKind, new_professional: ProfessionalFactory, admin_api: MedTechApi
) -> None:
    owner = await new_professional("Owner", "Doctor")
    ops = await ops_for(kind, owner, admin_api)
    created = await ops.create()
    assert created.id is not None
    stranger = await new_professional("Stranger", "Doctor")
    theirs = KindOps(kind, stranger.api, patient_id=ops.patient_id, data_owner_id=stranger.id)

    with pytest.raises(NotFoundError):
        await theirs.get(created.id)
    assert await theirs.get_many([created.id]) == []
    assert created.id not in await theirs.listed_ids()
    with pytest.raises(NotFoundError):
        await theirs.write(relabel(created, "stranger"))  # with the current rev
    with pytest.raises(NotFoundError):
        await theirs.write(theirs.new(entity_id=created.id))
    with pytest.raises(NotFoundError):
        await theirs.write_many([theirs.new(), relabel(created, "stranger")])
    with pytest.raises(NotFoundError):
        await theirs.delete(created.id)
    with pytest.raises(NotFoundError):
        await theirs.delete_many([created.id])
    with pytest.raises(NotFoundError):
        await theirs.sub.give_access_to(created, stranger.id)

    assert await ops.get(created.id) == created, "nothing the stranger tried changed it"


@pytest.mark.parametrize("kind", SHARABLE_KINDS)
async def test_once_shared_another_professional_reads_lists_and_modifies_it(
    kind: EntityKind, new_professional: ProfessionalFactory, admin_api: MedTechApi
) -> None:
    owner = await new_professional("Owner", "Doctor")
    ops = await ops_for(kind, owner, admin_api)
    created = await ops.create()
    assert created.id is not None
    colleague = await new_professional("Colleague", "Doctor")
    theirs = KindOps(kind, colleague.api, patient_id=ops.patient_id, data_owner_id=colleague.id)
    if ops.patient_id is not None:
        await owner.api.patient_api.give_access_to(ops.patient_id, colleague.id)  # a data sample links to it

    shared = await ops.sub.give_access_to(created, colleague.id)

    assert await theirs.get(created.id) == shared
    assert await theirs.get_many([created.id]) == [shared]
    assert created.id in await theirs.listed_ids()
    modified = await theirs.write(relabel(shared, "by-colleague"))
    assert await ops.get(created.id) == modified, "the owner sees the colleague's change"


@pytest.mark.parametrize("kind", [pytest.param(kind, id=kind.name) for kind in ENTITY_KINDS])
async def test_an_admin_reads_and_lists_everything(
    kind: EntityKind, new_professional: ProfessionalFactory, admin_api: MedTechApi
) -> None:
    doctor = await new_professional()
    ops = await ops_for(kind, doctor, admin_api)
    if kind.name == "User":
        ops = KindOps(kind, admin_api)
        created = await ops.write(User(login=f"u-{uuid.uuid4().hex[:10]}", healthcare_party_id=doctor.id))
    else:
        created = await ops.create()
    assert created.id is not None
    admin_ops = KindOps(kind, admin_api)

    if ENCRYPTED_FIELDS[kind.name]:
        # An admin acts as no data owner and holds no key: it reads the entity as stored, its content encrypted.
        stored = await admin_ops.get(created.id)
        assert stored.encrypted_self is not None and created.encrypted_self is None
        assert (stored.rev, stored.security_metadata) == (created.rev, created.security_metadata)
        fresh = kind.model()
        assert all(getattr(stored, name) == getattr(fresh, name) for name in _encrypted(kind)), "none in clear"
        created = stored
    assert await admin_ops.get(created.id) == created
    assert await admin_ops.get_many([created.id]) == [created]
    assert created.id in await admin_ops.listed_ids()


def _encrypted(kind: EntityKind) -> list[str]:
    """The Python names of a kind's encrypted fields."""
    by_alias = {field.alias or name: name for name, field in kind.model.model_fields.items()}
    return [by_alias[wire] for wire in ENCRYPTED_FIELDS[kind.name]]


async def test_a_patient_user_reads_their_own_patient_record_and_nothing_else(
    server: RunningServer, new_professional: ProfessionalFactory, admin_api: MedTechApi
) -> None:
    doctor = await new_professional()
    patient = await doctor.api.patient_api.create_or_modify_patient(Patient(first_name="John", last_name="Snow"))
    other_patient = await doctor.api.patient_api.create_or_modify_patient(Patient(first_name="Arya", last_name="S"))
    assert patient.id is not None and other_patient.id is not None
    login, password = f"patient-{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
    await admin_api.user_api.create_or_modify_user(User(login=login, patient_id=patient.id, password=password))

    async with await server.api(login, password) as patient_api:
        # The patient's first login publishes its keys; the doctor then shares the record's key with it.
        with pytest.raises(DecryptionError, match=patient.id):
            await patient_api.patient_api.get_patient(patient.id)
        patient = await doctor.api.patient_api.give_access_to(patient, patient.id)
        assert await patient_api.patient_api.get_patient(patient.id) == patient
        assert await patient_api.patient_api.list_page() == [patient]
        owner = await patient_api.get_data_owner()
        assert owner.type == "Patient" and owner.data_owner.id == patient.id
        with pytest.raises(NotFoundError):
            await patient_api.patient_api.get_patient(other_patient.id)


async def test_only_an_admin_creates_deletes_or_shares_users(
    new_professional: ProfessionalFactory, admin_api: MedTechApi
) -> None:
    doctor = await new_professional()
    login = f"made-by-doctor-{uuid.uuid4().hex[:8]}"
    me = await doctor.api.user_api.get_logged_user()
    assert me.id is not None

    with pytest.raises(ForbiddenError):
        await doctor.api.user_api.create_or_modify_user(User(login=login, password="a-long-password"))
    with pytest.raises(ForbiddenError):
        await doctor.api.user_api.delete_user(me.id)
    with pytest.raises(ForbiddenError):
        await doctor.api.user_api.give_access_to(me, doctor.id)

    assert await doctor.api.user_api.get_user(me.id) == me
    users = await admin_api.user_api.list_page(limit=10_000)
    assert login not in {u.login for u in users}


async def test_a_user_changes_their_own_name_and_password_but_not_their_roles_or_data_owner(
    server: RunningServer, new_professional: ProfessionalFactory
) -> None:
    doctor = await new_professional()
    other = await new_professional()
    me = await doctor.api.user_api.get_logged_user()

    renamed = await doctor.api.user_api.create_or_modify_user(me.model_copy(update={"name": "Dr. Renamed"}))

    assert renamed.name == "Dr. Renamed" and renamed.rev != me.rev
    for change in ({"roles": {"ADMIN"}}, {"healthcare_party_id": other.id}, {"login": f"x-{uuid.uuid4().hex}"}):
        with pytest.raises(ForbiddenError):
            await doctor.api.user_api.create_or_modify_user(renamed.model_copy(update=change))
    assert await doctor.api.user_api.get_logged_user() == renamed
    other_user = await other.api.user_api.get_logged_user()
    with pytest.raises((ForbiddenError, NotFoundError)):
        await doctor.api.user_api.create_or_modify_user(other_user.model_copy(update={"name": "Hijacked"}))
    assert await other.api.user_api.get_logged_user() == other_user

    new_password = f"new-{uuid.uuid4().hex}"
    await doctor.api.user_api.create_or_modify_user(renamed.model_copy(update={"password": new_password}))
    async with await server.api(doctor.login, new_password) as again:
        assert (await again.user_api.get_logged_user()).name == "Dr. Renamed"


async def test_no_answer_carries_a_password_or_its_hash(server: RunningServer, admin_api: MedTechApi) -> None:
    password = f"secret-{uuid.uuid4().hex}"
    user = await admin_api.user_api.create_or_modify_user(
        User(login=f"u-{uuid.uuid4().hex[:10]}", name="Secretive", password=password)
    )
    token = await admin_api.transport.access_token()
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
        answers = [
            await client.get(f"/rest/v1/users/{user.id}"),
            await client.post("/rest/v1/users/by-ids", json={"ids": [user.id]}),
            await client.get("/rest/v1/users", params={"limit": 10_000}),
            await client.post("/rest/v1/users", json={**user.to_json_dict(), "name": "Renamed"}),
            await client.get("/rest/v1/users/current"),
            await client.delete(f"/rest/v1/users/{user.id}"),
        ]
    for response in answers:
        assert response.status_code == 200, response.text
        raw = response.text.lower()
        assert "password" not in raw and "argon2" not in raw and password not in raw, response.request.url
    assert user.id in answers[0].text, "the scanned answer is the user"


async def test_a_duplicate_login_is_a_conflict_and_changes_nothing(admin_api: MedTechApi) -> None:
    login = f"dup-{uuid.uuid4().hex[:10]}"
    first = await admin_api.user_api.create_or_modify_user(User(login=login, name="First", password="first-password"))
    second = await admin_api.user_api.create_or_modify_user(User(login=f"{login}-2", name="Second"))

    with pytest.raises(ConflictError, match="login"):
        await admin_api.user_api.create_or_modify_user(User(login=login, name="Copy"))
    with pytest.raises(ConflictError, match="login"):
        await admin_api.user_api.create_or_modify_user(second.model_copy(update={"login": login}))
    with pytest.raises(ConflictError):
        await admin_api.user_api.create_or_modify_users(
            [User(login=f"{login}-3"), User(login=f"{login}-3", name="Same login in one batch")]
        )

    assert await admin_api.user_api.get_users([str(first.id), str(second.id)]) == [first, second]
    logins = {u.login for u in await admin_api.user_api.list_page(limit=10_000)}
    assert f"{login}-3" not in logins


async def test_server_fields_sent_by_a_client_are_ignored_and_a_forged_delegation_is_refused(
    new_professional: ProfessionalFactory,
) -> None:
    doctor = await new_professional()
    other = await new_professional()
    server_fields = {"author": "someone-else", "created": 1, "deletion_date": 2}
    key, delegation = server_delegation(other.id, other.id)  # made as if by the other professional
    forged = SecurityMetadata(secure_delegations={key: delegation})

    with pytest.raises(ForbiddenError, match=key):
        await doctor.api.patient_api.create_or_modify_patient(Patient(first_name="Private", security_metadata=forged))
    created = await doctor.api.patient_api.create_or_modify_patient(Patient(first_name="Private", **server_fields))
    assert created.id is not None
    assert created.security_metadata is not None
    added = {**created.security_metadata.secure_delegations, key: delegation}
    with pytest.raises(ForbiddenError, match=key):
        await doctor.api.patient_api.create_or_modify_patient(
            created.model_copy(update={"security_metadata": SecurityMetadata(secure_delegations=added)})
        )
    modified = await doctor.api.patient_api.create_or_modify_patient(created.model_copy(update=server_fields))

    for stored in (created, modified):
        assert other.id not in stored.readers
        assert stored.author != "someone-else" and stored.created != 1 and stored.deletion_date is None
    with pytest.raises(NotFoundError):
        await other.api.patient_api.get_patient(created.id)


async def test_a_deleted_users_login_can_be_taken_again(admin_api: MedTechApi, server: RunningServer) -> None:
    login = f"reused-{uuid.uuid4().hex[:8]}"
    first = await admin_api.user_api.create_or_modify_user(User(login=login, password="first-password"))
    await admin_api.user_api.delete_user(str(first.id))
    second = await admin_api.user_api.create_or_modify_user(User(login=login, password="second-password"))
    assert second.id != first.id
    api = await server.api(login, "second-password")
    assert (await api.user_api.get_logged_user()).id == second.id
    await api.close()
    tombstone = await admin_api.user_api.get_user(str(first.id))
    assert tombstone.login == login and tombstone.deletion_date is not None


@pytest.mark.parametrize("kind", NON_USER_KINDS)
async def test_creating_with_the_id_of_an_entity_one_cannot_read_answers_as_any_use_of_it_and_changes_nothing(
    kind: EntityKind, new_professional: ProfessionalFactory, server: RunningServer
) -> None:
    """The answer is the 404 a read, a modification or a deletion of that id gets: a 409 "already exists" told
    the caller that an entity it may not read is there."""
    owner = await new_professional("Owner", "Doctor")
    ops = await ops_for(kind, owner, owner.api)
    created = await ops.create()
    assert created.id is not None
    stranger = await new_professional("Stranger", "Doctor")
    theirs = KindOps(kind, stranger.api, patient_id=ops.patient_id, data_owner_id=stranger.id)
    path = f"/rest/v1/{kind.collection}"
    headers = {"Authorization": f"Bearer {stranger.api.transport._token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
        as_new = await client.post(path, json=theirs.new(entity_id=created.id).to_json_dict())
        with_rev = await client.post(path, json=relabel(created, "stranger").to_json_dict())
        read = await client.get(f"{path}/{created.id}")
    assert as_new.status_code == with_rev.status_code == read.status_code == 404, as_new.text
    bodies = [answer.json() for answer in (as_new, with_rev, read)]
    for body in bodies:
        del body["requestId"]  # each answer names its own request; apart from that they are the same
    assert bodies[0] == bodies[1] == bodies[2]
    assert await ops.get(created.id) == created
