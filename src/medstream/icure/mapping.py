"""iCure's entities to Medstream's and back (docs/icure.md, "How the entities map").

Medstream keeps what it has a field for; an iCure field it has no place for is refused when it is not empty
(`UnsupportedFields`, a 400 naming each), never dropped. Fields iCure's clients encrypt by default
(`ENCRYPTED_BY_DEFAULT`) are refused in clear: they travel in `encryptedSelf`. The crypto fields (`encryptedSelf`,
`securityMetadata`, `secretForeignKeys`, the legacy delegation maps, the public keys) are stored unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from medstream.errors import ValidationError
from medstream.icure import shapes as ic
from medstream.model.common import CodingReference, Delegations, Identifier
from medstream.model.contact import Contact
from medstream.model.data_sample import Content, DataSample, Measure, TimeSeries
from medstream.model.exchange_data import ExchangeData
from medstream.model.healthcare_element import HealthcareElement
from medstream.model.healthcare_professional import HealthcareProfessional
from medstream.model.patient import Patient
from medstream.model.security import Delegation, SecurityMetadata
from medstream.model.user import User

# Medstream has no groups: every user is in one, which iCure's clients that need a group enter (`user/matches`,
# `auth/switch/{groupId}`); it names the server.
GROUP_ID = "medstream"
GROUP_NAME = "Medstream"

# The fields cardinal's default configuration (`EncryptedFieldsConfiguration`) encrypts, by shape, plus a
# service's content, which it always encrypts: the v2 API refuses them in clear. Top-level wire names; a
# nested path of the configuration (`notes[].markdown`) refuses its top-level field.
ENCRYPTED_BY_DEFAULT: Mapping[str, tuple[str, ...]] = {
    "Patient": (
        "note", "notes", "companyName", "languages", "civility", "birthSex", "personalStatus", "nationality",
        "race", "ethnicity", "insurabilities", "partnerships", "patientHealthCareParties",
        "financialInstitutionInformation", "medicalHouseContracts", "patientProfessions",
    ),
    "Contact": ("descr", "notes", "location", "encounterLocation", "participantList"),
    "Service": ("notes", "comment", "content"),
    "HealthElement": ("descr", "note", "notes", "careTeam"),
}  # fmt: skip

# The fields of each shape that Medstream keeps, or owns (`created`, `modified`, `author`, `deletionDate`:
# what a client sends for them is replaced by the stored values).
_KEPT: Mapping[str, frozenset[str]] = {
    "Patient": frozenset(
        {
            "id", "identifier", "rev", "created", "modified", "author", "responsible", "tags", "codes",
            "deletion_date", "first_name", "last_name", "names", "company_name", "languages", "civility", "gender",
            "birth_sex", "merge_to_patient_id", "merged_ids", "alias", "active", "deactivation_reason", "ssin",
            "maiden_name", "spouse_name", "partner_name", "personal_status", "date_of_birth", "date_of_death",
            "place_of_birth", "place_of_death", "deceased", "education", "profession", "note", "administrative_note",
            "nationality", "race", "ethnicity", "patient_professions", "parameters", "secret_foreign_keys",
            "crypted_foreign_keys", "delegations", "encryption_keys", "encrypted_self", "security_metadata",
        }
    ),
    "Service": frozenset(
        {
            "id", "transaction_id", "identifier", "contact_id", "health_elements_ids", "form_ids",
            "secret_foreign_keys", "crypted_foreign_keys", "delegations", "encryption_keys", "index", "content",
            "value_date", "opening_date", "closing_date", "created", "modified", "end_of_life", "author",
            "responsible", "comment", "qualified_links", "codes", "tags", "encrypted_self", "security_metadata",
        }
    ),
    "Contact": frozenset(
        {
            "id", "rev", "created", "modified", "author", "responsible", "tags", "codes", "identifier",
            "end_of_life", "deletion_date", "group_id", "opening_date", "closing_date", "descr", "location",
            "encounter_type", "services", "secret_foreign_keys", "crypted_foreign_keys", "delegations",
            "encryption_keys", "encrypted_self", "security_metadata",
        }
    ),
    "HealthElement": frozenset(
        {
            "id", "identifiers", "rev", "created", "modified", "author", "responsible", "tags", "codes",
            "end_of_life", "deletion_date", "health_element_id", "value_date", "opening_date", "closing_date",
            "descr", "note", "relevant", "secret_foreign_keys", "crypted_foreign_keys", "delegations",
            "encryption_keys", "encrypted_self", "security_metadata",
        }
    ),
}  # fmt: skip


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict | tuple | set) and not value)


def _wire_name(model: type[BaseModel], name: str) -> str:
    return model.model_fields[name].alias or name


def check_fields(shape_name: str, entity: ic.IcureModel, where: str) -> None:
    """ValidationError naming every field of `entity` Medstream does not keep, or that iCure's clients encrypt
    by default, sent with a value (other than the field's default)."""
    model = type(entity)
    kept = _KEPT[shape_name]
    encrypted = set(ENCRYPTED_BY_DEFAULT.get(shape_name, ()))
    unsupported, clear = [], []
    for name, field in model.model_fields.items():
        value = getattr(entity, name)
        if _is_empty(value) or value == field.get_default(call_default_factory=True):
            continue
        wire = _wire_name(model, name)
        if wire in encrypted:
            clear.append(wire)
        elif name not in kept:
            unsupported.append(wire)
    problems = []
    if clear:
        problems.append(
            f"{where}: {', '.join(clear)} travel in encryptedSelf (iCure's default configuration), not in clear"
        )
    if unsupported:
        problems.append(f"{where}: Medstream does not keep {', '.join(unsupported)}")
    if problems:
        raise ValidationError("; ".join(problems))


# -- value types ---------------------------------------------------------------------------------------------


def coding_in(stub: ic.CodeStub, where: str) -> CodingReference:
    if stub.context is not None or stub.context_label is not None:
        raise ValidationError(f"{where}: Medstream does not keep a code's context or contextLabel")
    return CodingReference(id=stub.id, type=stub.type, code=stub.code, version=stub.version)


def codings_in(stubs: Iterable[ic.CodeStub], where: str) -> set[CodingReference]:
    return {coding_in(stub, where) for stub in stubs}


def coding_out(coding: CodingReference) -> ic.CodeStub:
    return ic.CodeStub(id=coding.id, type=coding.type, code=coding.code, version=coding.version)


def codings_out(codings: Iterable[CodingReference]) -> list[ic.CodeStub]:
    return [coding_out(c) for c in codings]


def identifiers_in(identifiers: Sequence[ic.Identifier], where: str) -> list[Identifier]:
    return [
        Identifier(
            id=i.id,
            assigner=i.assigner,
            start=i.start,
            end=i.end,
            system=i.system,
            type=coding_in(i.type, where) if i.type is not None else None,
            use=i.use,
            value=i.value,
        )
        for i in identifiers
    ]


def identifiers_out(identifiers: Sequence[Identifier]) -> list[ic.Identifier]:
    return [
        ic.Identifier(
            id=i.id,
            assigner=i.assigner,
            start=i.start,
            end=i.end,
            system=i.system,
            type=coding_out(i.type) if i.type is not None else None,
            use=i.use,
            value=i.value,
        )
        for i in identifiers
    ]


def metadata_in(metadata: ic.SecurityMetadata | None) -> SecurityMetadata | None:
    """The same fields on both sides; Medstream's model checks the keys and ids (a 400 otherwise)."""
    return None if metadata is None else SecurityMetadata.model_validate(metadata.to_icure())


def metadata_out(metadata: SecurityMetadata | None) -> ic.SecurityMetadata | None:
    return None if metadata is None else ic.SecurityMetadata.model_validate(metadata.to_json_dict())


def delegations_in(delegations: Mapping[str, list[ic.Delegation]]) -> Delegations | None:
    if not delegations:
        return None
    return {owner: [Delegation.model_validate(d.to_icure()) for d in items] for owner, items in delegations.items()}


def delegations_out(delegations: Delegations | None) -> dict[str, list[ic.Delegation]]:
    return {
        owner: [ic.Delegation.model_validate(d.to_json_dict()) for d in items]
        for owner, items in (delegations or {}).items()
    }


def _validated(model: type[BaseModel], data: dict[str, Any]) -> Any:
    return model.model_validate(data)


# -- Patient -------------------------------------------------------------------------------------------------


def patient_in(patient: ic.Patient) -> Patient:
    check_fields("Patient", patient, f"Patient {patient.id}")
    where = f"Patient {patient.id}"
    data: dict[str, Any] = {
        name: getattr(patient, name)
        for name in (
            "first_name", "last_name", "alias", "ssin", "maiden_name", "spouse_name", "partner_name",
            "date_of_birth", "date_of_death", "place_of_birth", "place_of_death", "deceased", "education",
            "profession", "administrative_note", "merge_to_patient_id", "active", "deactivation_reason",
            "gender", "responsible", "parameters",
        )
    }  # fmt: skip
    data.update(
        id=patient.id,
        rev=patient.rev,
        identifiers=identifiers_in(patient.identifier, where),
        labels=codings_in(patient.tags, where),
        codes=codings_in(patient.codes, where),
        names=[n.to_icure() for n in patient.names],
        merged_ids=set(patient.merged_ids),
        secret_foreign_keys=set(patient.secret_foreign_keys) or None,
        crypted_foreign_keys=delegations_in(patient.crypted_foreign_keys),
        delegations=delegations_in(patient.delegations),
        encryption_keys=delegations_in(patient.encryption_keys),
        encrypted_self=patient.encrypted_self,
        security_metadata=metadata_in(patient.security_metadata),
    )
    return _validated(Patient, data)  # type: ignore[no-any-return]


def patient_out(patient: Patient) -> ic.Patient:
    return ic.Patient(
        id=str(patient.id),
        rev=patient.rev,
        created=patient.created,
        modified=patient.modified,
        author=patient.author,
        responsible=patient.responsible,
        deletion_date=patient.deletion_date,
        identifier=identifiers_out(patient.identifiers),
        tags=codings_out(patient.labels),
        codes=codings_out(patient.codes),
        first_name=patient.first_name,
        last_name=patient.last_name,
        names=[ic.PersonName.model_validate(n.to_json_dict()) for n in patient.names],
        company_name=patient.company_name,
        languages=list(patient.languages),
        civility=patient.civility,
        gender=patient.gender,
        birth_sex=patient.birth_sex,
        merge_to_patient_id=patient.merge_to_patient_id,
        merged_ids=sorted(patient.merged_ids),
        alias=patient.alias,
        active=patient.active,
        deactivation_reason=patient.deactivation_reason,
        ssin=patient.ssin,
        maiden_name=patient.maiden_name,
        spouse_name=patient.spouse_name,
        partner_name=patient.partner_name,
        personal_status=patient.personal_status,
        date_of_birth=patient.date_of_birth,
        date_of_death=patient.date_of_death,
        place_of_birth=patient.place_of_birth,
        place_of_death=patient.place_of_death,
        deceased=patient.deceased,
        education=patient.education,
        profession=patient.profession,
        note=patient.note,
        administrative_note=patient.administrative_note,
        nationality=patient.nationality,
        race=patient.race,
        ethnicity=patient.ethnicity,
        patient_professions=codings_out(patient.patient_professions),
        parameters=dict(patient.parameters),
        secret_foreign_keys=sorted(patient.secret_foreign_keys or ()),
        crypted_foreign_keys=delegations_out(patient.crypted_foreign_keys),
        delegations=delegations_out(patient.delegations),
        encryption_keys=delegations_out(patient.encryption_keys),
        encrypted_self=patient.encrypted_self,
        security_metadata=metadata_out(patient.security_metadata),
    )


# -- Service (DataSample) ------------------------------------------------------------------------------------


def service_in(service: ic.Service, contact: ic.Contact) -> DataSample:
    """A service of `contact` as the DataSample that keeps it: its batch is the contact, and it carries the
    contact's patient links and security metadata (its readers are the contact's)."""
    where = f"Contact {contact.id} service {service.id}"
    check_fields("Service", service, where)
    if service.contact_id is not None and service.contact_id != contact.id:
        raise ValidationError(f"{where}: its contactId is {service.contact_id}, not the contact it is in")
    inherited = {
        "secretForeignKeys": (sorted(service.secret_foreign_keys or ()), sorted(contact.secret_foreign_keys)),
        "cryptedForeignKeys": (service.crypted_foreign_keys, contact.crypted_foreign_keys),
        "delegations": (service.delegations, contact.delegations),
        "encryptionKeys": (service.encryption_keys, contact.encryption_keys),
        "securityMetadata": (service.security_metadata, contact.security_metadata),
    }
    for wire, (own, of_contact) in inherited.items():
        if not _is_empty(own) and own != of_contact:
            raise ValidationError(f"{where}: a service takes its contact's {wire}; send them on the contact only")
    data: dict[str, Any] = {
        "id": service.id,
        "transaction_id": service.transaction_id,
        "identifiers": identifiers_in(service.identifier, where),
        "batch_id": contact.id,
        "healthcare_element_ids": set(service.health_elements_ids or ()),
        "canvases_ids": set(service.form_ids or ()),
        "index": service.index,
        "value_date": service.value_date,
        "opening_date": service.opening_date,
        "closing_date": service.closing_date,
        "end_of_life": service.end_of_life,
        "responsible": service.responsible,
        "qualified_links": service.qualified_links,
        "labels": codings_in(service.tags, where),
        "codes": codings_in(service.codes, where),
        "encrypted_self": service.encrypted_self,
        "secret_foreign_keys": set(contact.secret_foreign_keys) or None,
        "crypted_foreign_keys": delegations_in(contact.crypted_foreign_keys),
        "delegations": delegations_in(contact.delegations),
        "encryption_keys": delegations_in(contact.encryption_keys),
        "security_metadata": metadata_in(contact.security_metadata),
    }
    return _validated(DataSample, data)  # type: ignore[no-any-return]


def _measure_out(measure: Measure) -> ic.Measure:
    return ic.Measure(
        value=measure.value,
        ref=measure.ref,
        severity=measure.severity,
        severity_code=measure.severity_code,
        evolution=measure.evolution,
        unit=measure.unit,
        unit_codes=codings_out(measure.unit_codes) or None,
        comment=measure.comment,
        comparator=measure.comparator,
    )


def _time_series_out(series: TimeSeries) -> ic.TimeSeries:
    return ic.TimeSeries.model_validate(series.to_json_dict())


def content_out(content: Content) -> ic.Content:
    """A value written in clear through Medstream's own API. A measure's `min` and `max`, which iCure's Measure
    does not have, are not shown."""
    return ic.Content(
        string_value=content.string_value,
        number_value=content.number_value,
        boolean_value=content.boolean_value,
        instant_value=content.instant_value,
        fuzzy_date_value=content.fuzzy_date_value,
        binary_value=content.binary_value,
        document_id=content.document_id,
        measure_value=_measure_out(content.measure_value) if content.measure_value is not None else None,
        time_series=_time_series_out(content.time_series) if content.time_series is not None else None,
        compound_value=[service_out(s, standalone=False) for s in content.compound_value] or None,
        ratio=[_measure_out(m) for m in content.ratio] or None,
        range=[_measure_out(m) for m in content.range] or None,
    )


# What a write sets itself: a service sent again as it was differs from its DataSample only in these.
_WRITTEN_BY_THE_SERVER = frozenset({"rev", "created", "modified", "author", "deletion_date"})


def service_changed(sample: DataSample, stored: DataSample) -> bool:
    """Whether `sample` (a service as a contact modification sends it) changes the DataSample `stored`: a
    `responsible` left out keeps the stored one, as a write does."""
    if sample.responsible is None:
        sample = sample.model_copy(update={"responsible": stored.responsible})
    return sample.model_dump(exclude=set(_WRITTEN_BY_THE_SERVER)) != stored.model_dump(
        exclude=set(_WRITTEN_BY_THE_SERVER)
    )


def service_out(sample: DataSample, *, standalone: bool = True) -> ic.Service:
    """A DataSample as an iCure service. `standalone` (an event, a read of the service alone): with its
    contact's id, patient links and security metadata, which a client needs to decrypt it; inside its contact
    the contact carries them."""
    links: dict[str, Any] = {}
    if standalone:
        links = {
            "contact_id": sample.batch_id,
            "secret_foreign_keys": sorted(sample.secret_foreign_keys or ()),
            "crypted_foreign_keys": delegations_out(sample.crypted_foreign_keys),
            "delegations": delegations_out(sample.delegations),
            "encryption_keys": delegations_out(sample.encryption_keys),
            "security_metadata": metadata_out(sample.security_metadata),
        }
    return ic.Service(
        id=str(sample.id),
        transaction_id=sample.transaction_id,
        identifier=identifiers_out(sample.identifiers),
        health_elements_ids=sorted(sample.healthcare_element_ids) or None,
        form_ids=sorted(sample.canvases_ids) or None,
        index=sample.index,
        content={language: content_out(c) for language, c in sample.content.items()},
        value_date=sample.value_date,
        opening_date=sample.opening_date,
        closing_date=sample.closing_date,
        created=sample.created,
        modified=sample.modified,
        end_of_life=sample.end_of_life,
        author=sample.author,
        responsible=sample.responsible,
        comment=sample.comment,
        qualified_links=sample.qualified_links,
        codes=codings_out(sample.codes),
        tags=codings_out(sample.labels),
        encrypted_self=sample.encrypted_self,
        **links,
    )


# -- Contact -------------------------------------------------------------------------------------------------


def contact_in(contact: ic.Contact) -> tuple[Contact, list[DataSample]]:
    """A contact as Medstream keeps it: the contact, and one DataSample per service."""
    where = f"Contact {contact.id}"
    check_fields("Contact", contact, where)
    ids = [s.id for s in contact.services]
    if len(set(ids)) != len(ids):
        raise ValidationError(f"{where}: the same service id appears more than once")
    samples = [service_in(service, contact) for service in contact.services]
    data: dict[str, Any] = {
        "id": contact.id,
        "rev": contact.rev,
        "responsible": contact.responsible,
        "labels": codings_in(contact.tags, where),
        "codes": codings_in(contact.codes, where),
        "identifiers": identifiers_in(contact.identifier, where),
        "end_of_life": contact.end_of_life,
        "group_id": contact.group_id,
        "opening_date": contact.opening_date,
        "closing_date": contact.closing_date,
        "encounter_type": coding_in(contact.encounter_type, where) if contact.encounter_type is not None else None,
        "data_sample_ids": ids,
        "secret_foreign_keys": set(contact.secret_foreign_keys) or None,
        "crypted_foreign_keys": delegations_in(contact.crypted_foreign_keys),
        "delegations": delegations_in(contact.delegations),
        "encryption_keys": delegations_in(contact.encryption_keys),
        "encrypted_self": contact.encrypted_self,
        "security_metadata": metadata_in(contact.security_metadata),
    }
    return _validated(Contact, data), samples


def contact_out(contact: Contact, samples: Sequence[DataSample]) -> ic.Contact:
    """A contact with its services, in its order (`samples` are the readable ones among its DataSamples)."""
    by_id = {s.id: s for s in samples}
    services = [service_out(by_id[i], standalone=False) for i in contact.data_sample_ids if i in by_id]
    return ic.Contact(
        id=str(contact.id),
        rev=contact.rev,
        created=contact.created,
        modified=contact.modified,
        author=contact.author,
        responsible=contact.responsible,
        tags=codings_out(contact.labels),
        codes=codings_out(contact.codes),
        identifier=identifiers_out(contact.identifiers),
        end_of_life=contact.end_of_life,
        deletion_date=contact.deletion_date,
        group_id=contact.group_id,
        opening_date=contact.opening_date,
        closing_date=contact.closing_date,
        descr=contact.description,
        location=contact.location,
        encounter_type=coding_out(contact.encounter_type) if contact.encounter_type is not None else None,
        services=services,
        secret_foreign_keys=sorted(contact.secret_foreign_keys or ()),
        crypted_foreign_keys=delegations_out(contact.crypted_foreign_keys),
        delegations=delegations_out(contact.delegations),
        encryption_keys=delegations_out(contact.encryption_keys),
        encrypted_self=contact.encrypted_self,
        security_metadata=metadata_out(contact.security_metadata),
    )


# -- HealthElement (HealthcareElement) -----------------------------------------------------------------------


def health_element_in(element: ic.HealthElement) -> HealthcareElement:
    """A health element as the HealthcareElement that keeps it; it links to its patient by the patient's secret
    ids (`secretForeignKeys`), not by `patientId`."""
    where = f"HealthElement {element.id}"
    check_fields("HealthElement", element, where)
    data: dict[str, Any] = {
        "id": element.id,
        "rev": element.rev,
        "responsible": element.responsible,
        "labels": codings_in(element.tags, where),
        "codes": codings_in(element.codes, where),
        "identifiers": identifiers_in(element.identifiers, where),
        "healthcare_element_id": element.health_element_id,
        "end_of_life": element.end_of_life,
        "value_date": element.value_date,
        "opening_date": element.opening_date,
        "closing_date": element.closing_date,
        "relevant": element.relevant,
        "secret_foreign_keys": set(element.secret_foreign_keys) or None,
        "crypted_foreign_keys": delegations_in(element.crypted_foreign_keys),
        "delegations": delegations_in(element.delegations),
        "encryption_keys": delegations_in(element.encryption_keys),
        "encrypted_self": element.encrypted_self,
        "security_metadata": metadata_in(element.security_metadata),
    }
    return _validated(HealthcareElement, data)  # type: ignore[no-any-return]


def health_element_out(element: HealthcareElement) -> ic.HealthElement:
    """A HealthcareElement as iCure shows it. Its `patientId`, `medicalLocationId` and `status`, which iCure's
    HealthElement does not have, are not shown."""
    return ic.HealthElement(
        id=str(element.id),
        identifiers=identifiers_out(element.identifiers),
        rev=element.rev,
        created=element.created,
        modified=element.modified,
        author=element.author,
        responsible=element.responsible,
        tags=codings_out(element.labels),
        codes=codings_out(element.codes),
        end_of_life=element.end_of_life,
        deletion_date=element.deletion_date,
        health_element_id=element.healthcare_element_id,
        value_date=element.value_date,
        opening_date=element.opening_date,
        closing_date=element.closing_date,
        descr=element.description,
        note=element.note,
        relevant=element.relevant,
        secret_foreign_keys=sorted(element.secret_foreign_keys or ()),
        crypted_foreign_keys=delegations_out(element.crypted_foreign_keys),
        delegations=delegations_out(element.delegations),
        encryption_keys=delegations_out(element.encryption_keys),
        encrypted_self=element.encrypted_self,
        security_metadata=metadata_out(element.security_metadata),
    )


# -- data owners, users, exchange data -----------------------------------------------------------------------


def healthcare_party_out(hcp: HealthcareProfessional) -> ic.HealthcareParty:
    """A professional as iCure shows it. Its addresses, properties and picture are not shown on v2 (iCure's
    shapes of them differ); its Medstream `cryptoKeys` neither (v1 serves them)."""
    return ic.HealthcareParty(
        id=str(hcp.id),
        rev=hcp.rev,
        created=hcp.created,
        modified=hcp.modified,
        deletion_date=hcp.deletion_date,
        tags=codings_out(hcp.labels),
        codes=codings_out(hcp.codes),
        name=hcp.name,
        last_name=hcp.last_name,
        first_name=hcp.first_name,
        names=[ic.PersonName.model_validate(n.to_json_dict()) for n in hcp.names],
        gender=hcp.gender,
        civility=hcp.civility,
        speciality=hcp.speciality,
        parent_id=hcp.parent_id,
        languages=list(hcp.languages),
        speciality_codes=codings_out(hcp.speciality_codes),
        notes=hcp.notes,
        **_keys_out(hcp),
    )


def _keys_out(hcp: HealthcareProfessional) -> dict[str, Any]:
    return {
        "hc_party_keys": hcp.hc_party_keys or {},
        "aes_exchange_keys": hcp.aes_exchange_keys or {},
        "transfer_keys": hcp.transfer_keys or {},
        "private_key_shamir_partitions": hcp.private_key_shamir_partitions or {},
        "public_key": hcp.public_key,
        "public_keys_for_oaep_with_sha256": sorted(hcp.public_keys_for_oaep_with_sha256 or ()),
    }


def stub_out(hcp: HealthcareProfessional) -> ic.CryptoActorStub:
    return ic.CryptoActorStub(id=str(hcp.id), rev=str(hcp.rev), parent_id=hcp.parent_id, **_keys_out(hcp))


def stub_in(stub: ic.CryptoActorStub, hcp: HealthcareProfessional) -> HealthcareProfessional:
    """The professional with the stub's keys, to be written with the stub's `rev` (a stale one is a 409)."""
    where = f"CryptoActorStub {stub.id}"
    if stub.parent_id != hcp.parent_id:
        raise ValidationError(f"{where}: parentId is {hcp.parent_id!r} and is not changed through the stub")
    if stub.crypto_actor_properties:
        raise ValidationError(f"{where}: Medstream does not keep cryptoActorProperties")
    return hcp.model_copy(
        update={
            "rev": stub.rev,
            "hc_party_keys": stub.hc_party_keys or None,
            "aes_exchange_keys": stub.aes_exchange_keys or None,
            "transfer_keys": stub.transfer_keys or None,
            "private_key_shamir_partitions": stub.private_key_shamir_partitions or None,
            "public_key": stub.public_key,
            "public_keys_for_oaep_with_sha256": set(stub.public_keys_for_oaep_with_sha256) or None,
        }
    )


def user_out(user: User) -> ic.User:
    return ic.User(
        id=str(user.id),
        rev=user.rev,
        deletion_date=user.deletion_date,
        created=user.created,
        name=user.name,
        roles=sorted(user.roles),
        status="DISABLED" if user.disabled else "ACTIVE",
        login=user.login,
        healthcare_party_id=user.healthcare_party_id,
        patient_id=user.patient_id,
        device_id=user.device_id,
        auto_delegations={tag.value: sorted(ids) for tag, ids in user.sharing_data_with.items()},
        email=user.email,
        mobile_phone=user.mobile_phone,
    )


def user_group_out(user: User) -> ic.UserGroup:
    """The one group every Medstream user is in, as iCure lists a login's groups."""
    return ic.UserGroup(
        group_id=GROUP_ID,
        group_name=GROUP_NAME,
        user_id=str(user.id),
        login=user.login,
        name=user.name,
        email=user.email,
        phone=user.mobile_phone,
        patient_id=user.patient_id,
        healthcare_party_id=user.healthcare_party_id,
        device_id=user.device_id,
    )


def exchange_data_in(record: ic.ExchangeData) -> ExchangeData:
    if record.deletion_date is not None:
        raise ValidationError(f"ExchangeData {record.id}: Medstream sets deletionDate itself")
    data = record.to_icure()
    return ExchangeData.model_validate(data)


def is_icure_exchange_data(record: ExchangeData) -> bool:
    """Whether an iCure client made `record` (with the shared signature iCure's records have): records made by
    Medstream's SDK are of another scheme, which iCure's clients cannot use, and v2 does not show them."""
    return (
        record.delegator is not None
        and record.delegate is not None
        and record.shared_signature is not None
        and record.shared_signature_key is not None
    )


def exchange_data_out(record: ExchangeData) -> ic.ExchangeData:
    """An iCure client's record (`is_icure_exchange_data`)."""
    if not is_icure_exchange_data(record):
        raise ValueError(f"exchange data {record.id} was not made by an iCure client")
    assert record.delegator is not None and record.delegate is not None
    return ic.ExchangeData(
        id=str(record.id),
        rev=record.rev,
        delegator=record.delegator,
        delegate=record.delegate,
        exchange_key=record.exchange_key,
        access_control_secret=record.access_control_secret,
        delegator_signature=record.delegator_signature,
        shared_signature_key=record.shared_signature_key or {},
        shared_signature=str(record.shared_signature),
        deletion_date=record.deletion_date,
    )
