"""The text a fuzzy name filter searches: one normalised string per patient or professional.

The store keeps it in the `search_name` column and the matcher computes it from the entity; both call
`search_name`, so a name filter means the same thing in a query and in an event.
"""

from __future__ import annotations

from medstream.model.common import Entity, PersonName
from medstream.model.healthcare_professional import HealthcareProfessional
from medstream.model.patient import Patient
from medstream.model.text import normalize_for_search

# The fields `search_name` reads, by entity type (wire names).
SEARCH_NAME_FIELDS: dict[str, frozenset[str]] = {
    "Patient": frozenset({"firstName", "lastName", "maidenName", "spouseName", "names"}),
    "HealthcareProfessional": frozenset({"name", "firstName", "lastName", "names"}),
}


def _person_name_parts(names: list[PersonName]) -> list[str | None]:
    parts: list[str | None] = []
    for name in names:
        parts.extend([name.last_name, *name.first_names, name.text])
    return parts


def search_name(entity: Entity) -> str | None:
    """Patients: first, last, maiden and spouse names and every PersonName part; professionals: name, first
    and last names and every PersonName part; joined and normalised. None for other kinds."""
    parts: list[str | None]
    if isinstance(entity, Patient):
        parts = [entity.first_name, entity.last_name, entity.maiden_name, entity.spouse_name]
    elif isinstance(entity, HealthcareProfessional):
        parts = [entity.name, entity.first_name, entity.last_name]
    else:
        return None
    parts.extend(_person_name_parts(entity.names))
    return normalize_for_search(" ".join(part for part in parts if part))
