"""Create, read, modify, batch, delete and share every entity kind through the SDK against a real server.

One test per operation family and kind; each starts from a fresh professional (users are written by the admin).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from medstream.errors import NotFoundError
from medstream.model import DataSample, EntityKind, HealthcareElement
from medstream.sdk import MedTechApi
from tests.conftest import ProfessionalFactory
from tests.integration.kinds import KIND_PARAMS, KindOps, ops_for, relabel

pytestmark = pytest.mark.parametrize("kind", KIND_PARAMS)

# What the server sets on a write, whatever the client sent.
SERVER_OWNED = {"id", "rev", "created", "modified", "author", "responsible", "securityMetadata", "patientId"}
# What the SDK derives from the entity's own values as it writes it: the blind-index tokens of its encrypted
# searchable fields (names, SSIN, identifiers).
SDK_DERIVED = {"blindIndex"}


def _without(data: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in keys}


async def test_create_stores_the_entity_with_server_metadata_and_get_returns_it(
    kind: EntityKind, new_professional: ProfessionalFactory, admin_api: MedTechApi
) -> None:
    doctor = await new_professional()
    ops = await ops_for(kind, doctor, admin_api)
    me = await ops.api.user_api.get_logged_user()
    sent = ops.new()

    stored = await ops.write(sent)

    assert stored.id is not None and stored.rev is not None and stored.rev.startswith("1-")
    assert stored.created is not None and stored.created == stored.modified
    assert stored.author == me.id
    assert stored.deletion_date is None
    assert _without(stored.to_json_dict(), SERVER_OWNED | SDK_DERIVED) == _without(sent.to_json_dict(), SERVER_OWNED)
    if kind.name == "Patient":
        assert stored.blind_index.get("names"), "the SDK indexes a patient's names"
    if kind.name == "User":
        assert stored.responsible is None  # the admin acts as no data owner
    else:
        assert stored.responsible == doctor.id
        assert doctor.id in stored.readers
    if kind.is_data_owner:
        assert stored.id in stored.readers, "a data owner can read its own record"
    if isinstance(stored, DataSample | HealthcareElement):
        assert stored.patient_id == ops.patient_id
    assert await ops.get(stored.id) == stored

    client_id = f"client-{uuid.uuid4()}"
    with_client_id = await ops.write(ops.new(entity_id=client_id))
    assert with_client_id.id == client_id
    assert await ops.get(client_id) == with_client_id

    missing = f"missing-{uuid.uuid4()}"
    assert await ops.get_many([client_id, missing, stored.id]) == [with_client_id, stored], "in the order asked"
    with pytest.raises(NotFoundError):
        await ops.get(missing)


async def test_modify_with_the_current_rev_and_batch_create_or_modify(
    kind: EntityKind, new_professional: ProfessionalFactory, admin_api: MedTechApi
) -> None:
    ops = await ops_for(kind, await new_professional(), admin_api)
    created = await ops.create()
    assert created.id is not None and created.rev is not None

    modified = await ops.write(relabel(created, "modified"))

    assert modified.id == created.id
    assert modified.rev is not None and modified.rev.startswith("2-")
    assert {label.code for label in modified.labels} == {label.code for label in created.labels} | {"modified"}
    assert modified.created == created.created and modified.author == created.author
    assert modified.modified is not None and created.modified is not None and modified.modified >= created.modified
    assert await ops.get(created.id) == modified

    batch = await ops.write_many([ops.new(), ops.new()])
    assert len({e.id for e in batch}) == 2 and all(e.rev and e.rev.startswith("1-") for e in batch)
    ids = [created.id, *(str(e.id) for e in batch)]

    written = await ops.write_many([relabel(e, "batch") for e in [modified, *batch]] + [ops.new()])

    assert [e.id for e in written[:3]] == ids
    assert [str(e.rev)[:2] for e in written] == ["3-", "2-", "2-", "1-"]
    assert all(any(label.code == "batch" for label in e.labels) for e in await ops.get_many(ids))


async def test_delete_one_and_many_leave_tombstones_with_deletion_date(
    kind: EntityKind, new_professional: ProfessionalFactory, admin_api: MedTechApi
) -> None:
    ops = await ops_for(kind, await new_professional(), admin_api)
    created = await ops.write_many([ops.new(), ops.new(), ops.new()])
    ids = [str(e.id) for e in created]
    assert set(ids) <= await ops.listed_ids()

    tombstone = await ops.delete(ids[0])
    tombstones = await ops.delete_many(ids[1:])

    assert tombstone.id == ids[0] and [t.id for t in tombstones] == ids[1:]
    for before, after in zip(created, [tombstone, *tombstones], strict=True):
        assert after.deletion_date is not None and after.is_deleted
        assert after.rev is not None and after.rev.startswith("2-")
        assert after.labels == before.labels and after.created == before.created, "a tombstone keeps the content"
    assert await ops.get(ids[0]) == tombstone, "a deleted entity still reads as its tombstone"
    assert await ops.get_many(ids) == [tombstone, *tombstones]
    assert not set(ids) & await ops.listed_ids(), "list_page gives live entities only"


async def test_give_access_to_lets_another_professional_read_and_list_it(
    kind: EntityKind, new_professional: ProfessionalFactory, admin_api: MedTechApi
) -> None:
    if kind.is_exchange_data:
        pytest.skip("exchange data is read by its two parties only: it is never shared")
    ops = await ops_for(kind, await new_professional(), admin_api)
    other = await new_professional("Other", "Doctor")
    other_ops = KindOps(kind, other.api)
    created = await ops.create()
    assert created.id is not None
    with pytest.raises(NotFoundError):
        await other_ops.get(created.id)

    shared = await ops.sub.give_access_to(created, other.id)

    assert other.id in shared.readers and created.readers < shared.readers
    assert shared.rev is not None and shared.rev.startswith("2-"), "sharing is a write"
    assert await other_ops.get(created.id) == shared
    assert await other_ops.get_many([created.id]) == [shared]
    assert created.id in await other_ops.listed_ids()
    assert await ops.sub.give_access_to(str(created.id), other.id) == shared, "sharing twice changes nothing"
