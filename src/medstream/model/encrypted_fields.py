"""Which fields of each kind travel encrypted, in `encryptedSelf` (docs/protocol.md, "Encrypted fields"): the
default configuration the server announces at `GET /rest/v1/crypto/configuration`. Top-level wire names.

What stays in clear is what filters, links and the access rule need: ids, dates, labels, codes, links, gender,
date of birth, `securityMetadata`, `cryptoKeys`. The ssin, identifiers and names travel encrypted and are
searched by equality through their blind-index tokens (`blind_index.py`, `blindIndex`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from medstream.errors import ValidationError
from medstream.model.common import Entity
from medstream.model.entities import KIND_BY_NAME

ENCRYPTED_FIELDS: Mapping[str, tuple[str, ...]] = {
    "Patient": (
        "firstName", "lastName", "names", "companyName", "addresses", "note", "administrativeNote", "partnerships",
        "patientHealthCareParties", "patientProfessions", "languages", "nationality", "race", "ethnicity",
        "personalStatus", "maidenName", "spouseName", "partnerName", "placeOfBirth", "placeOfDeath", "dateOfDeath",
        "properties", "parameters", "externalId", "alias", "civility", "ssin", "identifiers",
    ),
    "DataSample": ("content", "comment", "qualifiedLinks", "canvasesIds", "transactionId", "identifiers"),
    "Contact": ("description", "location", "identifiers"),
    "HealthcareElement": ("description", "note", "identifiers"),
    "Notification": ("properties",),
    "HealthcareProfessional": (),
    "MedicalDevice": (),
    "User": (),
    "ExchangeData": (),
}  # fmt: skip


def _python_names(model: type[Entity], wire_names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    by_alias = {field.alias or name: name for name, field in model.model_fields.items()}
    return tuple((wire, by_alias[wire]) for wire in wire_names)


_CONTAINERS = (str, list, dict, set, frozenset, tuple)


def _is_empty(value: Any) -> bool:
    return value is None or (not value and isinstance(value, _CONTAINERS))  # 0 and False are values


def clear_encrypted_fields(entity: Entity) -> list[str]:
    """The wire names of the encrypted fields `entity` carries in clear (set and not empty)."""
    pairs = _PYTHON_NAMES.get(entity.entity_type, ())
    return [wire for wire, name in pairs if not _is_empty(getattr(entity, name))]


def _all_python_names() -> dict[str, tuple[tuple[str, str], ...]]:
    return {name: _python_names(KIND_BY_NAME[name].model, fields) for name, fields in ENCRYPTED_FIELDS.items()}


# KeyError at import for a name no model has: the table cannot name a field that does not exist.
_PYTHON_NAMES = _all_python_names()


def refuse_clear_fields(entities: Sequence[Entity]) -> None:
    """ValidationError naming every encrypted field sent in clear, with the entity's place in the batch."""
    problems = []
    for index, entity in enumerate(entities):
        fields = clear_encrypted_fields(entity)
        if fields:
            where = f"{entity.entity_type} {entity.id}" if entity.id else f"{entity.entity_type} [{index}]"
            problems.append(f"{where}: {', '.join(fields)}")
    if problems:
        raise ValidationError(
            "this server requires encryption: these fields travel in encryptedSelf, not in clear: "
            + "; ".join(problems)
        )
