"""Hypothesis strategies for every Medstream model, filled with realistic nested values.

Reused by the model tests and by the filter tests (which need entities a filter can match: the label and code
types, languages and roles are drawn from small fixed sets so that generated filters hit generated entities).
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from medstream.model import (
    AccessLevel,
    Address,
    AddressType,
    CodingReference,
    Contact,
    Content,
    CryptoKey,
    DataSample,
    DeactivationReason,
    Entity,
    ExchangeData,
    Gender,
    HealthcareElement,
    HealthcareProfessional,
    Identifier,
    KeyStatus,
    Measure,
    MedicalDevice,
    Notification,
    NotificationStatus,
    NotificationType,
    Partnership,
    Patient,
    PatientHealthCareParty,
    PersonalStatus,
    PersonName,
    PersonNameUse,
    Property,
    PropertyType,
    PropertyTypeType,
    SecureDelegation,
    SecurityMetadata,
    SharedDataType,
    Telecom,
    TelecomType,
    TimeSeries,
    TypedValue,
    User,
    kind_of,
)
from medstream.model.security import Delegation

# --- scalars ------------------------------------------------------------------------------------------------

CODE_TYPES = ("LOINC", "SNOMED", "ICD", "CD-ITEM", "IC-TAGS")
CODES = ("8302-2", "29463-7", "38341003", "I10", "E11", "bp", "weight")
LANGUAGES = ("en", "fr", "nl", "de")
ROLES = ("ADMIN", "HCP", "PATIENT", "DEVICE", "BASIC_USER")
EDUCATIONS = ("primary", "secondary", "university")
PROFESSIONS = ("nurse", "teacher", "engineer", "farmer")


def optional(strategy: SearchStrategy[Any]) -> SearchStrategy[Any]:
    return st.none() | strategy


# Free text: any Unicode JSON can carry (no surrogates), short, mixed with realistic words.
free_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=16)
words = st.sampled_from(("Hypertension", "Fièvre", "Grippe", "Suivi", "follow-up", "μg/L", "日本", "")) | free_text
first_names = st.sampled_from(("John", "Jane", "Zoë", "Björn", "María", "Ōta", "Li")) | free_text
last_names = st.sampled_from(("Doe", "Smith", "O'Brien", "Nguyễn", "Müller", "van der Berg")) | free_text

# Entity ids: mostly UUIDs, sometimes client-chosen URL-safe tokens.
entity_ids = st.uuids().map(str) | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,24}", fullmatch=True)
revs = st.integers(1, 1000).flatmap(lambda n: st.uuids().map(lambda u: f"{n}-{u.hex}"))
epoch_ms = st.integers(0, 4_102_444_800_000)  # 1970 .. 2100
small_ints = st.integers(-1_000_000, 1_000_000)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
fuzzy_dates = st.dates().map(lambda d: d.year * 10_000 + d.month * 100 + d.day)
fuzzy_date_times = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda t: int(t.strftime("%Y%m%d%H%M%S"))
)
base64_texts = st.binary(max_size=48).map(lambda b: base64.b64encode(b).decode("ascii"))

# --- value types --------------------------------------------------------------------------------------------

codings = st.builds(
    CodingReference,
    id=optional(st.uuids().map(str)),
    type=optional(st.sampled_from(CODE_TYPES)),
    code=optional(st.sampled_from(CODES)),
    version=optional(st.sampled_from(("1", "2", "2.74"))),
)
coding_sets = st.sets(codings, max_size=3)
string_id_sets = st.sets(entity_ids, max_size=3)
# iCure's links to a patient by its secret ids, and its legacy delegations (stored as given).
secret_id_sets = st.sets(st.uuids().map(str), min_size=1, max_size=2)
legacy_delegations = st.dictionaries(
    entity_ids,
    st.lists(
        st.builds(
            Delegation,
            owner=optional(entity_ids),
            delegated_to=optional(entity_ids),
            key=optional(st.binary(min_size=16, max_size=16).map(bytes.hex)),
            tags=st.just(()),
        ),
        max_size=2,
    ),
    max_size=2,
)

identifiers = st.builds(
    Identifier,
    id=optional(st.uuids().map(str)),
    assigner=optional(words),
    start=optional(st.dates().map(str)),
    end=optional(st.dates().map(str)),
    system=optional(st.sampled_from(("urn:oid:1.2.3", "https://hospital.example/mrn"))),
    type=optional(codings),
    use=optional(st.sampled_from(("official", "usual", "secondary"))),
    value=optional(st.from_regex(r"[A-Z0-9]{1,12}", fullmatch=True)),
)
person_names = st.builds(
    PersonName,
    last_name=optional(last_names),
    first_names=st.lists(first_names, max_size=2),
    start=optional(epoch_ms),
    end=optional(epoch_ms),
    prefix=st.lists(st.sampled_from(("Dr", "Prof", "Mr", "Ms")), max_size=1),
    suffix=st.lists(st.sampled_from(("Jr", "MD", "PhD")), max_size=1),
    text=optional(words),
    use=optional(st.sampled_from(PersonNameUse)),
)
telecoms = st.builds(
    Telecom,
    telecom_type=optional(st.sampled_from(TelecomType)),
    telecom_number=optional(st.from_regex(r"\+?[0-9 ]{6,15}", fullmatch=True) | st.emails()),
    telecom_description=optional(words),
)
addresses = st.builds(
    Address,
    address_type=optional(st.sampled_from(AddressType)),
    description=optional(words),
    street=optional(st.sampled_from(("Rue de la Loi", "Main Street", "Hauptstraße")) | free_text),
    house_number=optional(st.from_regex(r"[0-9]{1,4}[a-z]?", fullmatch=True)),
    postbox_number=optional(st.from_regex(r"[0-9]{1,3}", fullmatch=True)),
    postal_code=optional(st.from_regex(r"[0-9]{4,5}", fullmatch=True)),
    city=optional(st.sampled_from(("Brussels", "Liège", "Genève", "Zürich")) | free_text),
    state=optional(words),
    country=optional(st.sampled_from(("BE", "FR", "CH", "NL"))),
    note=optional(words),
    telecoms=st.lists(telecoms, min_size=1, max_size=2),
)
typed_values = st.one_of(
    st.builds(TypedValue, type=st.just(PropertyTypeType.BOOLEAN), boolean_value=st.booleans()),
    st.builds(TypedValue, type=st.just(PropertyTypeType.INTEGER), integer_value=small_ints),
    st.builds(TypedValue, type=st.just(PropertyTypeType.DOUBLE), double_value=finite_floats),
    st.builds(TypedValue, type=st.just(PropertyTypeType.STRING), string_value=words),
    st.builds(TypedValue, type=st.just(PropertyTypeType.DATE), date_value=fuzzy_dates),
)
properties = st.builds(
    Property,
    id=optional(st.sampled_from(("org.example.preference", "org.example.consent")) | st.uuids().map(str)),
    type=optional(
        st.builds(
            PropertyType,
            identifier=optional(words),
            type=optional(st.sampled_from(PropertyTypeType)),
        )
    ),
    typed_value=optional(typed_values),
    deleted=optional(epoch_ms),
)
delegation_keys = st.binary(min_size=32, max_size=32).map(bytes.hex)
hex_ids = st.binary(min_size=16, max_size=16).map(bytes.hex)
# Blobs as the crypto suite writes them: a suite byte, then bytes (a wrapped key, a ciphertext).
blobs = st.binary(min_size=1, max_size=80).map(lambda b: base64.b64encode(b"\x01" + b).decode("ascii"))
secure_delegations = st.builds(
    SecureDelegation,
    delegator=optional(entity_ids),
    delegate=optional(entity_ids),
    secret_ids=st.lists(st.uuids().map(str), max_size=1).map(tuple),
    encryption_keys=st.lists(blobs, max_size=2).map(tuple),
    owning_entity_ids=st.lists(entity_ids, max_size=1).map(tuple),
    parent_delegations=st.lists(delegation_keys, max_size=1).map(tuple),
    exchange_data_id=optional(st.uuids().map(str)),
    permissions=st.sampled_from(AccessLevel),
)
security_metadatas = st.builds(
    SecurityMetadata, secure_delegations=st.dictionaries(delegation_keys, secure_delegations, max_size=3)
)
raw_keys = st.binary(min_size=32, max_size=32).map(lambda b: base64.b64encode(b).decode("ascii"))
# Built from a dict: hypothesis would otherwise also fill the required fields under their aliases.
crypto_key_lists = st.lists(
    st.fixed_dictionaries(
        {
            "id": hex_ids,
            "suite": st.just(1),
            "encryption_key": raw_keys,
            "signing_key": raw_keys,
            "created": epoch_ms,
            "status": st.sampled_from(KeyStatus),
        }
    ).map(lambda fields: CryptoKey(**fields)),
    max_size=2,
)


# Blind-index tokens from a small pool (as an index key makes them: 16 bytes, base64), so that generated
# filters name tokens generated entities hold; duplicates within a field are kept, as a client may send them.
BLIND_TOKENS = tuple(base64.b64encode(bytes([n]) * 16).decode("ascii") for n in range(6))


def blind_indexes(fields: tuple[str, ...]) -> SearchStrategy[dict[str, list[str]] | None]:
    """A blind index over some of `fields` (the kind's blind-index fields), or none."""
    return optional(
        st.dictionaries(st.sampled_from(fields), st.lists(st.sampled_from(BLIND_TOKENS), max_size=3), max_size=2)
    )


def entity_fields() -> dict[str, SearchStrategy[Any]]:
    """Strategies for the fields every entity has."""
    return {
        "id": optional(entity_ids),
        "rev": optional(revs),
        "created": optional(epoch_ms),
        "modified": optional(epoch_ms),
        "author": optional(entity_ids),
        "responsible": optional(entity_ids),
        "labels": coding_sets,
        "codes": coding_sets,
        "deletion_date": optional(epoch_ms),
        "security_metadata": optional(security_metadatas),
        "encrypted_self": optional(blobs),
    }


# --- DataSample ---------------------------------------------------------------------------------------------

measures = st.builds(
    Measure,
    value=optional(finite_floats),
    min=optional(finite_floats),
    max=optional(finite_floats),
    ref=optional(finite_floats),
    severity=optional(st.integers(0, 5)),
    severity_code=optional(st.sampled_from(("normal", "high", "low", "critical"))),
    evolution=optional(st.integers(-2, 2)),
    unit=optional(st.sampled_from(("mmHg", "kg", "mg/dL", "°C", "bpm"))),
    unit_codes=st.sets(
        st.builds(CodingReference, type=st.just("UCUM"), code=st.sampled_from(("mm[Hg]", "kg", "Cel"))),
        max_size=2,
    ),
    comment=optional(words),
    comparator=optional(st.sampled_from(("<", "<=", ">", ">=", "="))),
)


@st.composite
def time_series(draw: st.DrawFn) -> TimeSeries:
    fields = draw(st.lists(st.sampled_from(("systolic", "diastolic", "pulse", "spo2")), max_size=3, unique=True))
    width = len(fields)
    row = st.lists(finite_floats, min_size=width, max_size=width)
    return TimeSeries(
        fields=fields,
        samples=draw(st.lists(row, max_size=4)),
        min=draw(row),
        max=draw(row),
        mean=draw(row),
        median=draw(row),
        variance=draw(row),
    )


def _leaf_contents() -> SearchStrategy[Content]:
    """A content holding one kind of value (not nested samples), as real data samples do."""
    variants = [
        st.builds(Content, string_value=words),
        st.builds(Content, number_value=finite_floats),
        st.builds(Content, boolean_value=st.booleans()),
        st.builds(Content, instant_value=epoch_ms),
        st.builds(Content, fuzzy_date_value=fuzzy_date_times),
        st.builds(Content, binary_value=base64_texts),
        st.builds(Content, document_id=st.uuids().map(str)),
        st.builds(Content, measure_value=measures),
        st.builds(Content, time_series=time_series()),
        st.builds(Content, ratio=st.lists(measures, min_size=2, max_size=2)),
        st.builds(Content, range=st.lists(measures, min_size=2, max_size=2)),
    ]
    return st.one_of(variants)


def _data_samples(contents: SearchStrategy[Content]) -> SearchStrategy[DataSample]:
    return st.builds(
        DataSample,
        **entity_fields(),
        transaction_id=optional(st.uuids().map(str)),
        identifiers=st.lists(identifiers, max_size=2),
        blind_index=blind_indexes(("identifiers",)),
        patient_id=optional(entity_ids),
        batch_id=optional(st.uuids().map(str)),
        healthcare_element_ids=string_id_sets,
        canvases_ids=string_id_sets,
        index=optional(st.integers(0, 10_000)),
        content=st.dictionaries(st.sampled_from(LANGUAGES), contents, max_size=2),
        value_date=optional(fuzzy_date_times),
        opening_date=optional(fuzzy_date_times),
        closing_date=optional(fuzzy_date_times),
        end_of_life=optional(epoch_ms),
        comment=optional(words),
        qualified_links=st.dictionaries(
            st.sampled_from(("isPartOf", "isRelatedTo", "isAnswerTo")),
            st.dictionaries(st.uuids().map(str), st.uuids().map(str), max_size=2),
            max_size=2,
        ),
        secret_foreign_keys=optional(secret_id_sets),
        crypted_foreign_keys=optional(legacy_delegations),
    )


leaf_contents = _leaf_contents()
leaf_data_samples = _data_samples(leaf_contents)
# Compound values nest one level: a content may hold data samples whose contents are leaves (a third of them).
contents = st.one_of(
    leaf_contents,
    leaf_contents,
    st.builds(Content, compound_value=st.lists(leaf_data_samples, min_size=1, max_size=2)),
)
data_samples = _data_samples(contents)

# --- the other entities -------------------------------------------------------------------------------------

patients = st.builds(
    Patient,
    **entity_fields(),
    identifiers=st.lists(identifiers, max_size=2),
    blind_index=blind_indexes(("ssin", "identifiers", "names")),
    end_of_life=optional(epoch_ms),
    first_name=optional(first_names),
    last_name=optional(last_names),
    names=st.lists(person_names, max_size=2),
    company_name=optional(words),
    languages=st.lists(st.sampled_from(LANGUAGES), max_size=2),
    addresses=st.lists(addresses, max_size=2),
    civility=optional(st.sampled_from(("Mr", "Mrs", "Ms"))),
    gender=optional(st.sampled_from(Gender)),
    birth_sex=optional(st.sampled_from(Gender)),
    merge_to_patient_id=optional(entity_ids),
    merged_ids=string_id_sets,
    alias=optional(words),
    active=st.booleans(),
    deactivation_reason=st.sampled_from(DeactivationReason),
    ssin=optional(st.from_regex(r"[0-9]{11}", fullmatch=True)),
    personal_status=optional(st.sampled_from(PersonalStatus)),
    date_of_birth=optional(fuzzy_dates),
    date_of_death=optional(fuzzy_dates),
    place_of_birth=optional(words),
    deceased=optional(st.booleans()),
    education=optional(st.sampled_from(EDUCATIONS)),
    profession=optional(st.sampled_from(PROFESSIONS)),
    note=optional(words),
    nationality=optional(st.sampled_from(("BE", "FR", "CH"))),
    external_id=optional(words),
    partnerships=st.lists(
        st.builds(Partnership, type=optional(words), status=optional(words), partner_id=optional(entity_ids)),
        max_size=1,
    ),
    patient_health_care_parties=st.lists(
        st.builds(PatientHealthCareParty, type=optional(words), healthcare_party_id=optional(entity_ids)),
        max_size=1,
    ),
    patient_professions=st.lists(codings, max_size=1),
    parameters=st.dictionaries(words, st.lists(words, max_size=2), max_size=2),
    properties=st.lists(properties, max_size=2),
    crypto_keys=crypto_key_lists,
)

healthcare_elements = st.builds(
    HealthcareElement,
    **entity_fields(),
    identifiers=st.lists(identifiers, max_size=2),
    blind_index=blind_indexes(("identifiers",)),
    patient_id=optional(entity_ids),
    healthcare_element_id=optional(entity_ids),
    medical_location_id=optional(st.uuids().map(str)),
    end_of_life=optional(epoch_ms),
    value_date=optional(fuzzy_date_times),
    opening_date=optional(fuzzy_date_times),
    closing_date=optional(fuzzy_date_times),
    description=optional(words),
    note=optional(words),
    relevant=st.booleans(),
    status=st.integers(0, 7),
    secret_foreign_keys=optional(secret_id_sets),
    encryption_keys=optional(legacy_delegations),
)

healthcare_professionals = st.builds(
    HealthcareProfessional,
    **entity_fields(),
    name=optional(words),
    last_name=optional(last_names),
    first_name=optional(first_names),
    names=st.lists(person_names, max_size=2),
    gender=optional(st.sampled_from(Gender)),
    civility=optional(st.sampled_from(("Dr", "Prof"))),
    speciality=optional(st.sampled_from(("cardiology", "general practice", "nursing"))),
    speciality_codes=coding_sets,
    parent_id=optional(entity_ids),
    addresses=st.lists(addresses, max_size=2),
    languages=st.lists(st.sampled_from(LANGUAGES), max_size=2),
    picture=optional(base64_texts),
    notes=optional(words),
    properties=st.lists(properties, max_size=2),
    crypto_keys=crypto_key_lists,
)

medical_devices = st.builds(
    MedicalDevice,
    **entity_fields(),
    identifiers=st.lists(identifiers, max_size=2),
    end_of_life=optional(epoch_ms),
    external_id=optional(words),
    name=optional(st.sampled_from(("Scale", "Glucometer", "BP monitor")) | free_text),
    type=optional(st.sampled_from(("scale", "glucometer", "sphygmomanometer"))),
    brand=optional(words),
    model=optional(words),
    serial_number=optional(st.from_regex(r"[A-Z0-9-]{4,16}", fullmatch=True)),
    parent_id=optional(entity_ids),
    picture=optional(base64_texts),
    properties=st.lists(properties, max_size=2),
    crypto_keys=crypto_key_lists,
)

notifications = st.builds(
    Notification,
    **entity_fields(),
    identifiers=st.lists(identifiers, max_size=2),
    end_of_life=optional(epoch_ms),
    status=optional(st.sampled_from(NotificationStatus)),
    type=optional(st.sampled_from(NotificationType)),
    properties=st.lists(properties, max_size=2),
)


@st.composite
def _data_owner_links(draw: st.DrawFn) -> dict[str, str]:
    """At most one of the three links a user may have to the data owner it acts as."""
    field = draw(st.sampled_from((None, "healthcare_party_id", "patient_id", "device_id")))
    return {} if field is None else {field: draw(entity_ids)}


# Users as the server returns them: without a password (it is write-only, so it cannot round-trip).
users = _data_owner_links().flatmap(
    lambda links: st.builds(
        User,
        **entity_fields(),
        name=optional(words),
        login=optional(st.emails() | st.from_regex(r"[a-z][a-z0-9._-]{2,20}", fullmatch=True)),
        email=optional(st.emails()),
        mobile_phone=optional(st.from_regex(r"\+[0-9]{8,14}", fullmatch=True)),
        roles=st.sets(st.sampled_from(ROLES), max_size=2),
        sharing_data_with=st.dictionaries(st.sampled_from(SharedDataType), string_id_sets, max_size=3),
        properties=st.lists(properties, max_size=2),
        **{field: st.just(value) for field, value in links.items()},
    )
)
# A password as a user would choose it: 8 to 64 printable characters.
passwords = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=8, max_size=64)

exchange_data = st.builds(
    ExchangeData,
    **entity_fields(),
    delegator=entity_ids,
    delegate=entity_ids,
    exchange_key=st.dictionaries(hex_ids, blobs, max_size=2),
    access_control_secret=st.dictionaries(hex_ids, blobs, max_size=2),
    delegator_signature=st.dictionaries(hex_ids, blobs, max_size=1),
    delegate_signature=st.none() | st.dictionaries(hex_ids, blobs, min_size=1, max_size=1),
    shared_signature_key=optional(st.dictionaries(hex_ids, blobs, max_size=1)),
    shared_signature=optional(blobs),
)

contacts = st.builds(
    Contact,
    **entity_fields(),
    identifiers=st.lists(identifiers, max_size=2),
    group_id=optional(entity_ids),
    opening_date=optional(fuzzy_date_times),
    closing_date=optional(fuzzy_date_times),
    description=optional(words),
    location=optional(words),
    encounter_type=optional(codings),
    end_of_life=optional(epoch_ms),
    data_sample_ids=st.lists(entity_ids, max_size=3),
    secret_foreign_keys=optional(secret_id_sets),
    delegations=optional(legacy_delegations),
)

_BY_KIND: dict[str, SearchStrategy[Any]] = {
    "Contact": contacts,
    "Patient": patients,
    "DataSample": data_samples,
    "HealthcareElement": healthcare_elements,
    "HealthcareProfessional": healthcare_professionals,
    "MedicalDevice": medical_devices,
    "Notification": notifications,
    "User": users,
    "ExchangeData": exchange_data,
}


def entities_of(kind_name: str) -> SearchStrategy[Entity]:
    """Entities of the kind named `kind_name` ("DataSample"...); KeyError for an unknown kind."""
    kind_of(kind_name)  # the same KeyError, listing the known kinds, as the rest of the code base
    strategy: SearchStrategy[Entity] = _BY_KIND[kind_name]
    return strategy
