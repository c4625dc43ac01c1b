"""Medstream's encrypted fields in iCure's names, for iCure's clients on a server that requires encryption.

Such a server refuses in clear the fields of `model/encrypted_fields.py` on `/rest/v2` as on `/rest/v1`.
`ICURE_ENCRYPTED_FIELDS` names them as iCure's shapes do, by iCure entity, so that a cardinal client adds them to
its `EncryptedFieldsConfiguration` (`GET /rest/v1/crypto/configuration` publishes them as
`icureEncryptedFields`); `refuse_clear_fields` is the v2 refusal, which names them and the option that fixes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from medstream.errors import ValidationError
from medstream.icure import shapes as ic
from medstream.model.common import Entity
from medstream.model.encrypted_fields import ENCRYPTED_FIELDS, clear_encrypted_fields

# Medstream entity type -> (iCure entity, its shape, the attribute of cardinal's EncryptedFieldsConfiguration).
_ICURE_ENTITIES: Mapping[str, tuple[str, type[ic.IcureModel], str]] = {
    "Patient": ("Patient", ic.Patient, "patient"),
    "Contact": ("Contact", ic.Contact, "contact"),
    "DataSample": ("Service", ic.Service, "service"),
    "HealthcareElement": ("HealthElement", ic.HealthElement, "health_element"),
}

# Medstream wire name -> iCure wire name, where they differ (docs/icure.md, "How the entities map").
_RENAMED: Mapping[str, Mapping[str, str]] = {
    "Patient": {"identifiers": "identifier"},
    "Contact": {"description": "descr", "identifiers": "identifier"},
    "DataSample": {"identifiers": "identifier", "canvasesIds": "formIds"},
    "HealthcareElement": {"description": "descr"},
}

# Left out of the lists: Medstream fields iCure's shapes do not have (an iCure client never sends them), and a
# service's content, which cardinal always encrypts and refuses to see in its configuration.
_LEFT_OUT: Mapping[str, frozenset[str]] = {"Patient": frozenset({"externalId"}), "DataSample": frozenset({"content"})}


def _icure_name(entity_type: str, wire: str) -> str:
    return _RENAMED.get(entity_type, {}).get(wire, wire)


def _icure_fields() -> dict[str, tuple[str, ...]]:
    fields: dict[str, tuple[str, ...]] = {}
    for entity_type, (icure_entity, shape, _) in _ICURE_ENTITIES.items():
        aliases = {field.alias or name for name, field in shape.model_fields.items()}
        names = tuple(
            _icure_name(entity_type, wire)
            for wire in ENCRYPTED_FIELDS[entity_type]
            if wire not in _LEFT_OUT.get(entity_type, frozenset())
        )
        unknown = [name for name in names if name not in aliases]
        if unknown:  # at import: the table cannot name a field iCure's shape does not have
            raise KeyError(f"{icure_entity} has no field {', '.join(unknown)}")
        fields[icure_entity] = names
    return fields


# iCure entity -> the top-level fields (iCure's wire names) a server that requires encryption refuses in clear.
ICURE_ENCRYPTED_FIELDS: Mapping[str, tuple[str, ...]] = _icure_fields()


def refuse_clear_fields(entities: Sequence[Entity]) -> None:
    """ValidationError naming, in iCure's names, every field of `entities` this server requires encrypted that
    is sent in clear, and the option of cardinal's that encrypts it."""
    problems, options = [], {}
    for entity in entities:
        clear = clear_encrypted_fields(entity)
        if not clear:
            continue
        icure_entity, _, option = _ICURE_ENTITIES[entity.entity_type]
        names = [_icure_name(entity.entity_type, wire) for wire in clear]
        problems.append(f"{icure_entity} {entity.id}: {', '.join(names)}")
        options[option] = icure_entity
    if problems:
        how = ", ".join(f"{option}=[...default, *icureEncryptedFields['{e}']]" for option, e in options.items())
        raise ValidationError(
            f"this server requires encryption and these fields came in clear: {'; '.join(problems)}. Encrypt them: "
            f"SdkOptions(encrypted_fields=EncryptedFieldsConfiguration({how})), the lists from "
            "GET /rest/v1/crypto/configuration"
        )
