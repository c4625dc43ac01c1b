"""createOrModify's conflict rules and soft delete, for every entity kind (DESIGN section 2).

No `rev` for an id that exists, a stale `rev`, or a `rev` on a tombstone is a ConflictError that changes
nothing; a batch is all or nothing; deleting a tombstone again returns it and writes nothing.
"""

from __future__ import annotations

import uuid

import pytest

from medstream.errors import ConflictError, NotFoundError
from medstream.model import EntityKind
from medstream.sdk import MedTechApi
from tests.conftest import ProfessionalFactory, RunningServer
from tests.integration.kinds import KIND_PARAMS, events_of, ops_for, relabel

pytestmark = pytest.mark.parametrize("kind", KIND_PARAMS)


async def test_no_rev_for_an_existing_id_or_a_stale_rev_is_a_conflict_that_changes_nothing(
    kind: EntityKind, new_professional: ProfessionalFactory, admin_api: MedTechApi, server: RunningServer
) -> None:
    ops = await ops_for(kind, await new_professional(), admin_api)
    created = await ops.create()
    assert created.id is not None
    current = await ops.write(relabel(created, "current"))

    with pytest.raises(ConflictError, match="already exists"):
        await ops.write(relabel(ops.new(entity_id=created.id), "no-rev"))
    with pytest.raises(ConflictError, match="stale rev"):
        await ops.write(relabel(created, "stale"))  # created.rev is one write behind
    with pytest.raises(ConflictError):
        await ops.write(relabel(current.model_copy(update={"rev": f"9-{uuid.uuid4().hex}"}), "made-up-rev"))

    assert await ops.get(created.id) == current
    assert [event for event, _ in await events_of(server.database_url, created.id)] == ["CREATE", "UPDATE"]


async def test_a_tombstone_cannot_be_modified_and_deleting_it_again_writes_nothing(
    kind: EntityKind, new_professional: ProfessionalFactory, admin_api: MedTechApi, server: RunningServer
) -> None:
    ops = await ops_for(kind, await new_professional(), admin_api)
    created = await ops.create()
    assert created.id is not None
    tombstone = await ops.delete(created.id)

    with pytest.raises(ConflictError, match="deleted"):
        await ops.write(relabel(tombstone, "revive"))  # the tombstone's own, current rev
    with pytest.raises(ConflictError):
        await ops.write(relabel(created, "revive"))  # the rev from before the delete
    with pytest.raises(ConflictError):
        await ops.write(ops.new(entity_id=created.id))  # a new entity on a deleted id

    assert await ops.delete(created.id) == tombstone
    assert await ops.delete_many([created.id]) == [tombstone]
    assert await ops.get(created.id) == tombstone
    assert await events_of(server.database_url, created.id) == [
        ("CREATE", str(created.rev)),
        ("DELETE", str(tombstone.rev)),
    ]


async def test_a_batch_with_one_conflicting_entity_stores_none_of_them(
    kind: EntityKind, new_professional: ProfessionalFactory, admin_api: MedTechApi, server: RunningServer
) -> None:
    ops = await ops_for(kind, await new_professional(), admin_api)
    stale, fresh = await ops.write_many([ops.new(), ops.new()])
    assert stale.id is not None and fresh.id is not None
    current = await ops.write(relabel(stale, "current"))
    new_id = f"batch-{uuid.uuid4()}"

    with pytest.raises(ConflictError):
        await ops.write_many(
            [ops.new(entity_id=new_id), relabel(fresh, "in-batch"), relabel(stale, "stale")]  # the last conflicts
        )
    with pytest.raises(ConflictError):
        await ops.write_many([ops.new(entity_id=new_id), ops.new(entity_id=fresh.id)])  # the last exists

    with pytest.raises(NotFoundError):
        await ops.get(new_id)
    assert await events_of(server.database_url, new_id) == []
    assert await ops.get_many([stale.id, fresh.id]) == [current, fresh]

    with pytest.raises(NotFoundError):
        await ops.delete_many([fresh.id, f"missing-{uuid.uuid4()}"])
    assert await ops.get(fresh.id) == fresh, "a failed delete_many deletes none"
