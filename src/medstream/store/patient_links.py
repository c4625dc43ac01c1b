"""The patients that data samples and healthcare elements link to: a write may link only to a patient its
writer can read and that is not deleted."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from medstream.access import Actor
from medstream.errors import ConflictError, NotFoundError, ValidationError
from medstream.model.common import Entity
from medstream.model.entities import EntityKind
from medstream.store.backend import Backend

# Kinds whose `patient_id` links to a patient the writer must be able to read; True when the link is required.
PATIENT_LINKS = {"DataSample": True, "HealthcareElement": False}


def linked_patients(kind: EntityKind, entities: Sequence[Entity]) -> list[str]:
    """The patients `entities` link to, sorted; ValidationError if one of a kind that must link does not."""
    required = PATIENT_LINKS.get(kind.name)
    if required is None:
        return []
    patient_ids = {getattr(e, "patient_id", None) for e in entities}
    # An iCure client links to the patient by its secret ids instead (`secretForeignKeys`), which the server
    # cannot resolve: such an entity has no patient link to check (docs/icure.md).
    unlinked = any(
        getattr(e, "patient_id", None) is None and not getattr(e, "secret_foreign_keys", None) for e in entities
    )
    if unlinked and required:
        raise ValidationError(f"a {kind.name} needs a patientId: create it with POST /patients/{{id}}/data-samples")
    return sorted(p for p in patient_ids if p is not None)


def raise_for_links(wanted: list[str], found: dict[str, tuple[int | None, bool]]) -> None:
    """NotFoundError for the first of `wanted` that the writer cannot read (or that does not exist), ConflictError
    if it was deleted; `found` holds (deleted, readable) per existing patient."""
    for patient_id in wanted:
        deleted, readable = found.get(patient_id, (None, False))
        if not readable:
            raise NotFoundError(f"no Patient with id {patient_id}")
        if deleted is not None:
            raise ConflictError(f"patient {patient_id} was deleted")


def check_links(conn: Connection, kind: EntityKind, entities: Sequence[Entity], actor: Actor, backend: Backend) -> None:
    """A data sample (or a healthcare element that names one) must link to a patient the writer can read."""
    wanted = linked_patients(kind, entities)
    if wanted:
        raise_for_links(wanted, _patients_for(conn, wanted, actor, backend))


def _patients_for(
    conn: Connection, ids: list[str], actor: Actor, backend: Backend
) -> dict[str, tuple[int | None, bool]]:
    """Per existing patient among `ids`: when it was deleted (None if not), and whether `actor` may read it,
    from its readers rows (kept with its document in every write) rather than by parsing the document."""
    if not ids:
        return {}
    owner = None if actor.is_admin else actor.data_owner_id
    if owner is None and not actor.is_admin:
        return {}
    rows = backend.patient_access(conn, ids, owner)
    return {patient_id: (deleted, actor.is_admin or bool(readable)) for patient_id, deleted, readable in rows}
