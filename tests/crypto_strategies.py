"""Hypothesis strategies for entities as an application holds them before the SDK encrypts them: every field the
server's configuration encrypts (`model/encrypted_fields.py`) holds a value, nested ones included (a compound
value's data samples, an address's telecoms), and each text in them is empty, any Unicode (JSON escapes, NUL,
astral planes) or long.

`ENCRYPTED_VALUES` gives, for every kind and every encrypted field (wire name), the strategy of its value; a field
added to the configuration without one fails `test_crypto_round_trip.py`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, TypeVar

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from medstream.model import (
    Address,
    AddressType,
    CodingReference,
    Content,
    DataSample,
    Entity,
    Identifier,
    Measure,
    Partnership,
    PatientHealthCareParty,
    PersonalStatus,
    PersonName,
    PersonNameUse,
    Property,
    PropertyType,
    PropertyTypeType,
    Telecom,
    TelecomType,
    TimeSeries,
    TypedValue,
)
from tests.strategies import base64_texts, entities_of, epoch_ms, fuzzy_dates, optional

E = TypeVar("E", bound=Entity)

_ANY_CHAR = st.characters(codec="utf-8", exclude_categories=["Cs"])
# Long: a short run repeated, so that hypothesis draws it cheaply (300 to 12,000 characters).
long_texts = st.tuples(st.text(_ANY_CHAR, min_size=1, max_size=6), st.integers(300, 2_000)).map(
    lambda drawn: drawn[0] * drawn[1]
)
texts = st.one_of(
    st.just(""),
    st.text(_ANY_CHAR, min_size=1, max_size=24),
    st.sampled_from(
        ("Hélène Dupré", "日本語の名前", 'Zoë "Z" O\'Brien\\', "🩺 ✓ \U0001d518", "line\nbreak\ttab\x00nul")
    ),
    long_texts,
)
# Names: long ones are words of a few letters, as people write them, so that their blind-index tokens (each word
# and its prefixes of 3 letters or more) stay within what an entity may carry; a single word of thousands of
# letters goes past it, and the SDK refuses that write (tested on its own).
name_texts = st.one_of(
    st.just(""),
    st.text(_ANY_CHAR, min_size=1, max_size=24),
    st.sampled_from(("Hélène Dupré", "日本語の名前", "Zoë O'Brien-Nguyễn", "Ōta \U0001d518")),
    st.tuples(st.text(_ANY_CHAR, min_size=1, max_size=6), st.integers(300, 2_000)).map(
        lambda drawn: (drawn[0] + " ") * drawn[1]
    ),
)
int64s = st.integers(-(2**63), 2**63 - 1)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
text_lists = st.lists(texts, max_size=3)

codings = st.builds(
    CodingReference, id=optional(texts), type=optional(texts), code=optional(texts), version=optional(texts)
)
identifiers = st.builds(
    Identifier,
    id=optional(texts),
    assigner=optional(texts),
    start=optional(texts),
    end=optional(texts),
    system=optional(texts),
    type=optional(codings),
    use=optional(texts),
    value=optional(texts),
)
person_names = st.builds(
    PersonName,
    last_name=optional(name_texts),
    first_names=st.lists(name_texts, max_size=3),
    start=optional(int64s),
    end=optional(epoch_ms),
    prefix=text_lists,
    suffix=text_lists,
    text=optional(name_texts),
    use=optional(st.sampled_from(PersonNameUse)),
)
telecoms = st.builds(
    Telecom,
    telecom_type=optional(st.sampled_from(TelecomType)),
    telecom_number=optional(texts),
    telecom_description=optional(texts),
)
addresses = st.builds(
    Address,
    address_type=optional(st.sampled_from(AddressType)),
    description=optional(texts),
    street=optional(texts),
    house_number=optional(texts),
    postbox_number=optional(texts),
    postal_code=optional(texts),
    city=optional(texts),
    state=optional(texts),
    country=optional(texts),
    note=optional(texts),
    telecoms=st.lists(telecoms, max_size=3),
)
typed_values = st.builds(
    TypedValue,
    type=optional(st.sampled_from(PropertyTypeType)),
    boolean_value=optional(st.booleans()),
    integer_value=optional(int64s),
    double_value=optional(finite_floats),
    string_value=optional(texts),
    date_value=optional(int64s),
)
properties = st.builds(
    Property,
    id=optional(texts),
    type=optional(
        st.builds(PropertyType, identifier=optional(texts), type=optional(st.sampled_from(PropertyTypeType)))
    ),
    typed_value=optional(typed_values),
    deleted=optional(epoch_ms),
)
measures = st.builds(
    Measure,
    value=optional(finite_floats),
    min=optional(finite_floats),
    max=optional(finite_floats),
    ref=optional(finite_floats),
    severity=optional(int64s),
    severity_code=optional(texts),
    evolution=optional(int64s),
    unit=optional(texts),
    unit_codes=st.sets(codings, max_size=2),
    comment=optional(texts),
    comparator=optional(texts),
)
float_rows = st.lists(finite_floats, max_size=3)
time_series = st.builds(
    TimeSeries,
    fields=text_lists,
    samples=st.lists(float_rows, max_size=3),
    min=float_rows,
    max=float_rows,
    mean=float_rows,
    median=float_rows,
    variance=float_rows,
)
long_base64 = st.binary(min_size=1, max_size=8).map(lambda b: base64.b64encode(b * 700).decode("ascii"))
leaf_contents = st.builds(
    Content,
    string_value=optional(texts),
    number_value=optional(finite_floats),
    boolean_value=optional(st.booleans()),
    instant_value=optional(int64s),
    fuzzy_date_value=optional(int64s),
    binary_value=optional(base64_texts | long_base64),
    document_id=optional(texts),
    measure_value=optional(measures),
    time_series=optional(time_series),
    ratio=st.lists(measures, max_size=2),
    range=st.lists(measures, max_size=2),
)


def _content_maps(contents: SearchStrategy[Content]) -> SearchStrategy[dict[str, Content]]:
    return st.dictionaries(texts, contents, max_size=3)


def _sample_values(contents: SearchStrategy[Content]) -> dict[str, SearchStrategy[Any]]:
    return {
        "content": _content_maps(contents),
        "comment": optional(texts),
        "qualifiedLinks": st.dictionaries(texts, st.dictionaries(texts, texts, max_size=2), max_size=2),
        "canvasesIds": st.sets(texts, max_size=3),
        "transactionId": optional(texts),
        "identifiers": st.lists(identifiers, max_size=3),
    }


@st.composite
def _nested_samples(draw: st.DrawFn) -> DataSample:
    """A data sample inside a compound value: every encrypted field of a data sample filled too."""
    sample = draw(entities_of("DataSample"))
    assert isinstance(sample, DataSample)
    return with_values(sample, {name: draw(value) for name, value in _sample_values(leaf_contents).items()})


# A compound value nests one level of data samples, as real data samples do.
contents = leaf_contents | st.builds(Content, compound_value=st.lists(_nested_samples(), min_size=1, max_size=2))
optional_texts = optional(texts)
_PATIENT_TEXTS = (
    "companyName", "note", "administrativeNote", "nationality", "race", "ethnicity", "partnerName", "placeOfBirth",
    "placeOfDeath", "externalId", "alias", "civility", "ssin",
)  # fmt: skip

ENCRYPTED_VALUES: Mapping[str, Mapping[str, SearchStrategy[Any]]] = {
    "Patient": {
        **{name: optional(name_texts) for name in ("firstName", "lastName", "maidenName", "spouseName")},
        **{name: optional_texts for name in _PATIENT_TEXTS},
        "names": st.lists(person_names, max_size=3),
        "addresses": st.lists(addresses, max_size=3),
        "partnerships": st.lists(
            st.builds(Partnership, type=optional(texts), status=optional(texts), partner_id=optional(texts)), max_size=2
        ),
        "patientHealthCareParties": st.lists(
            st.builds(PatientHealthCareParty, type=optional(texts), healthcare_party_id=optional(texts)), max_size=2
        ),
        "patientProfessions": st.lists(codings, max_size=2),
        "languages": text_lists,
        "personalStatus": optional(st.sampled_from(PersonalStatus)),
        "dateOfDeath": optional(int64s | fuzzy_dates),
        "properties": st.lists(properties, max_size=3),
        "parameters": st.dictionaries(texts, text_lists, max_size=3),
        "identifiers": st.lists(identifiers, max_size=3),
    },
    "DataSample": _sample_values(contents),
    "HealthcareElement": {
        "description": optional_texts,
        "note": optional_texts,
        "identifiers": st.lists(identifiers, max_size=3),
    },
    "Contact": {
        "description": optional_texts,
        "location": optional_texts,
        "identifiers": st.lists(identifiers, max_size=3),
    },
    "Notification": {"properties": st.lists(properties, max_size=3)},
    "HealthcareProfessional": {},
    "MedicalDevice": {},
    "User": {},
    "ExchangeData": {},
}


def with_values(entity: E, values: Mapping[str, Any]) -> E:
    """`entity` with the fields named by wire name in `values` set, validated again as the model."""
    wire = entity.to_json_dict()
    for name, value in values.items():
        if value is None:
            wire.pop(name, None)
        else:
            wire[name] = value
    return type(entity).model_validate(wire)


@st.composite
def clear_entities_of(draw: st.DrawFn, kind_name: str) -> Entity:
    """An entity of `kind_name` as an application holds it before a create: every encrypted field drawn from
    `ENCRYPTED_VALUES`, and none of what the SDK and the server set (no rev, `encryptedSelf`, `blindIndex` or
    delegations)."""
    entity = draw(entities_of(kind_name))
    values = {name: draw(strategy, label=name) for name, strategy in ENCRYPTED_VALUES[kind_name].items()}
    cleared = {"rev": None, "encryptedSelf": None, "blindIndex": None, "securityMetadata": None}
    return with_values(entity, {**values, **cleared})
