"""createOrModify's conflict rules and soft delete, for every entity kind (docs/protocol.md).

No `rev` for an id that exists, a stale `rev`, or a `rev` on a tombstone is a ConflictError that changes
nothing; a batch is all or nothing; deleting a tombstone again returns it and writes nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from medstream.errors import ConflictError, NotFoundError
from medstream.model import EntityKind
from medstream.sdk import MedTechApi
from tests.conftest import ProfessionalFactory, RunningServer
from tests.integration.kinds import KIND_PARAMS, events_of, ops_for, relabel

pytestmark = pytest.mark.parametrize("kind", KIND_PARAMS)
T = TypeVar("T")


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


async def _outcomes(*calls: Awaitable[T]) -> tuple[list[T], list[BaseException]]:
    """Run `calls` concurrently: what succeeded, and what failed."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    return [r for r in results if not isinstance(r, BaseException)], [
        r for r in results if isinstance(r, BaseException)
    ]


async def test_concurrent_writers_with_the_same_rev_lose_nothing_exactly_one_wins(
    kind: EntityKind, new_professional: ProfessionalFactory, admin_api: MedTechApi, server: RunningServer
) -> None:
    ops = await ops_for(kind, await new_professional(), admin_api)
    created = await ops.create()
    assert created.id is not None

    won, lost = await _outcomes(*(ops.write(relabel(created, f"writer-{i}")) for i in range(8)))

    assert len(won) == 1, f"{len(won)} writers modified rev {created.rev}: all but one change were lost"
    assert all(isinstance(e, ConflictError) for e in lost), lost
    assert await ops.get(created.id) == won[0]
    assert [event for event, _ in await events_of(server.database_url, created.id)] == ["CREATE", "UPDATE"]


async def test_concurrent_batches_over_the_same_entities_never_fail_with_a_server_error(
    kind: EntityKind, new_professional: ProfessionalFactory, admin_api: MedTechApi
) -> None:
    ops = await ops_for(kind, await new_professional(), admin_api)
    first, second = await ops.write_many([ops.new(), ops.new()])
    new_ids = [f"race-{uuid.uuid4()}" for _ in range(2)]

    won, lost = await _outcomes(
        *(
            ops.write_many([relabel(e, f"batch-{i}") for e in ([first, second] if i % 2 else [second, first])])
            for i in range(6)
        ),
        *(ops.write_many([ops.new(entity_id=i) for i in (new_ids if n % 2 else new_ids[::-1])]) for n in range(4)),
    )

    assert all(isinstance(e, ConflictError) for e in lost), lost  # not deadlocks answered with 500
    assert len(won) == 2, "one modifying batch and one creating batch win"


async def test_concurrent_deletes_write_one_tombstone(
    kind: EntityKind, new_professional: ProfessionalFactory, admin_api: MedTechApi, server: RunningServer
) -> None:
    ops = await ops_for(kind, await new_professional(), admin_api)
    created = await ops.create()
    assert created.id is not None

    tombstones, failed = await _outcomes(*(ops.delete(str(created.id)) for _ in range(6)))

    assert failed == []
    assert len({t.rev for t in tombstones}) == 1, "every delete returns the one tombstone"
    assert [event for event, _ in await events_of(server.database_url, created.id)] == ["CREATE", "DELETE"]
