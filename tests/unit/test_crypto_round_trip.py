"""decrypt(encrypt(e)) == e for generated entities of every kind, through the SDK's sans-I/O write path
(`CryptoState.for_write`, `with_own_delegation`, `encrypt`) under the configuration the server announces
(`configuration_body`, read by the SDK's `parse_encryption_configuration`), with real keys and exchange data.

Each example writes an entity as a new data owner's SDK does on a create, checks the wire form (no encrypted
field in clear at any depth, only `encryptedSelf`; valid for the server's model; a kind without encrypted fields
sent as it is), then reads it back on another device of the writer and as a delegate it was shared with, and
writes it again as an update under the same key. Blind-index tokens are checked by searching the entity's own
values: every one of them finds it, under the writer's search key as the delegate learnt it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import to_json

from medstream.crypto import ENCRYPTED_SELF, EntityKey, ExchangeSecrets, KeyStore, create_exchange_data
from medstream.crypto.blind_index import search_tokens
from medstream.crypto.encrypted_self import encrypted_self_kid
from medstream.crypto.state import CryptoState, delegations_of
from medstream.errors import ValidationError
from medstream.model import ENTITY_KINDS, KIND_BY_NAME, MAX_STRING_LENGTH, Content, DataSample, Entity, Patient
from medstream.model.blind_index import MAX_TOKENS_PER_FIELD
from medstream.model.encrypted_fields import clear_encrypted_fields
from medstream.sdk.crypto_api import refuse_oversized_blind_index
from medstream.sdk.key_setup import parse_encryption_configuration
from medstream.server.routes.crypto import configuration_body
from tests.crypto_strategies import ENCRYPTED_VALUES, clear_entities_of, with_values
from tests.unit.crypto_fixtures import HCP_KEYS, PATIENT_KEYS

CONFIGURATION = parse_encryption_configuration(configuration_body(require_encryption=True))
KIND_NAMES = [kind.name for kind in ENTITY_KINDS]
WRITER, DELEGATE = "hcp-a", "pat-b"
WRITER_SEARCH_KEY, DELEGATE_SEARCH_KEY = bytes([0x55]) * 32, bytes([0x66]) * 32
# The writer's exchange data with itself and with the delegate, as its SDK makes them (its search key inside).
EXCHANGE_DATA = {
    wire["id"]: wire
    for wire, _ in (
        create_exchange_data(
            "ed-self", WRITER, WRITER, [HCP_KEYS], [HCP_KEYS.public], ExchangeSecrets.generate(WRITER_SEARCH_KEY)
        ),
        create_exchange_data(
            "ed-shared",
            WRITER,
            DELEGATE,
            [HCP_KEYS],
            [HCP_KEYS.public, PATIENT_KEYS.public],
            ExchangeSecrets.generate(WRITER_SEARCH_KEY),
        ),
    )
}
EXAMPLES_PER_KIND = int(os.environ.get("MEDSTREAM_ROUND_TRIP_EXAMPLES", "40"))
EMPTY: tuple[Any, ...] = (None, "", [], {})


def _state(data_owner_id: str) -> CryptoState:
    """A freshly logged-in SDK of `data_owner_id` (its keys, nothing opened yet), under the server's configuration."""
    keys, search_key = (HCP_KEYS, WRITER_SEARCH_KEY) if data_owner_id == WRITER else (PATIENT_KEYS, DELEGATE_SEARCH_KEY)
    store = KeyStore(data_owner_id, [keys], search_key=search_key)
    return CryptoState(
        store, CONFIGURATION.encrypted_fields, CONFIGURATION.blind_indexed, CONFIGURATION.require_encryption
    )


def _writer() -> CryptoState:
    writer = _state(WRITER)
    for wire in EXCHANGE_DATA.values():
        writer.open(wire)
    return writer


def _reader(data_owner_id: str, wire: dict[str, Any]) -> CryptoState:
    """An SDK of `data_owner_id` that opened the exchange data `wire`'s delegations to it name, as the SDK
    fetches them before decrypting (the writer's keys pinned on first use)."""
    reader = _state(data_owner_id)
    reader.check_published(WRITER, [HCP_KEYS.public])
    for exchange_data_id in reader.missing_exchange_data(wire):
        reader.open(EXCHANGE_DATA[exchange_data_id])
    return reader


def _leaf_paths(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
    """The path of every leaf (a scalar, or an empty list or object) under `value`."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaf_paths(item, (*path, key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from _leaf_paths(item, (*path, index))
    else:
        yield path


def _at(wire: Any, path: tuple[str | int, ...]) -> Any:
    """The value at `path` in `wire`, None where it is absent."""
    for step in path:
        if isinstance(wire, dict) and isinstance(step, str):
            wire = wire.get(step)
        elif isinstance(wire, list) and isinstance(step, int) and step < len(wire):
            wire = wire[step]
        else:
            return None
    return wire


def _sealed_for_create(writer: CryptoState, kind_name: str, entity: Entity) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the SDK sends for a create of `entity` (and the clear wire dict it encrypted): a kind without
    encrypted fields goes as it is; another gets an id, its blind index, a new key delegated to its writer."""
    wire = entity.to_write_dict()
    key = EntityKey.generate()
    if not writer.fields_of(kind_name):
        return wire, writer.encrypt(kind_name, wire, key)
    clear = writer.for_write(kind_name, wire)
    refuse_oversized_blind_index(kind_name, clear, writer.blind_indexed.get(kind_name, {}))
    clear = writer.with_own_delegation(kind_name, clear, key)
    return clear, writer.encrypt(kind_name, clear, key)


def _check_found_by_its_own_values(kind_name: str, clear: dict[str, Any], stored: dict[str, Any]) -> None:
    """Every value the blind index indexes finds the entity: a delegate's search (under the writer's search key,
    learnt from their exchange data) matches the stored tokens in every group, as the server's filter does."""
    searcher = _reader(DELEGATE, {})
    searcher.open(EXCHANGE_DATA["ed-shared"])
    for name, field in CONFIGURATION.blind_indexed.get(kind_name, {}).items():
        held = set((stored.get("blindIndex") or {}).get(name, ()))
        for source in field.sources:
            value = clear.get(source)
            for item in value if isinstance(value, list) else [value]:
                try:
                    groups = search_tokens(searcher.known_search_keys(), name, field, [item])
                except ValidationError:
                    continue  # nothing searchable in it (no letter or digit)
                for group in groups:
                    assert held & set(group), f"{name}: {item!r} does not find the entity"


@pytest.mark.parametrize("kind_name", KIND_NAMES)
@settings(
    max_examples=EXAMPLES_PER_KIND,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_decrypt_of_encrypt_is_the_entity_and_the_wire_holds_no_encrypted_field(
    kind_name: str, data: st.DataObject
) -> None:
    entity = data.draw(clear_entities_of(kind_name), label="entity")
    model = KIND_BY_NAME[kind_name].model
    fields = CONFIGURATION.encrypted_fields[kind_name]
    writer = _writer()
    clear, sealed = _sealed_for_create(writer, kind_name, entity)

    # What the SDK set is all that differs from the application's entity.
    sdk_fields = {"id": clear.get("id"), "blindIndex": clear.get("blindIndex")}
    sdk_fields["securityMetadata"] = clear.get("securityMetadata")
    assert model.model_validate(clear) == with_values(entity, sdk_fields)

    # The wire form: encrypted fields only inside encryptedSelf, at every depth, as sent and as the server
    # holds it once validated (its model gives unset lists and maps their empty default).
    assert (ENCRYPTED_SELF in sealed) == bool(fields)
    assert not set(fields) & set(sealed)
    as_received = model.model_validate(sealed)
    assert clear_encrypted_fields(as_received) == []
    stored = as_received.to_json_dict()
    for field in fields:
        for path in _leaf_paths(clear.get(field), (field,)):
            assert _at(sealed, path) is None and _at(stored, path) in EMPTY, path
    if not fields:
        assert sealed == clear and stored == entity.to_json_dict()

    # Read back on another device of the writer, and by a delegate once shared (the content not re-encrypted).
    assert model.model_validate(_reader(WRITER, stored).decrypt(kind_name, stored)) == model.model_validate(clear)
    if fields:
        key = writer.entity_key(kind_name, stored)
        assert key is not None
        name, delegation = writer.delegation(kind_name, stored["id"], key, DELEGATE, "READ")
        metadata = {"secureDelegations": {**delegations_of(stored), name: delegation}}
        shared = {**stored, "securityMetadata": metadata}
        read = _reader(DELEGATE, shared).decrypt(kind_name, shared)
        assert model.model_validate(read) == model.model_validate({**clear, "securityMetadata": metadata})
        _check_found_by_its_own_values(kind_name, clear, stored)

        # An update from another device of the writer: the key its delegations carry, the same content back.
        entity_read = model.model_validate({**read, "rev": "1-0"})
        wire = entity_read.to_write_dict()
        again = _reader(WRITER, wire)
        update_key = again.entity_key(kind_name, wire)
        assert update_key == key
        resealed = again.encrypt(kind_name, again.for_write(kind_name, wire, wire), update_key)
        assert encrypted_self_kid(resealed, kind_name) == key.kid
        assert model.model_validate(_reader(DELEGATE, resealed).decrypt(kind_name, resealed)) == entity_read


# --- the strategies ----------------------------------------------------------------------------------------


def test_the_strategies_give_every_encrypted_field_of_the_configuration_a_value() -> None:
    assert set(ENCRYPTED_VALUES) == set(KIND_NAMES) == set(CONFIGURATION.encrypted_fields)
    for kind_name, fields in CONFIGURATION.encrypted_fields.items():
        assert set(ENCRYPTED_VALUES[kind_name]) == set(fields), kind_name


# Fields whose values hold no text: drawn empty and set, never unicode or long.
TEXTLESS = {("Patient", "personalStatus"), ("Patient", "dateOfDeath")}


def _json(value: Any) -> str:
    return to_json(value).decode()


# The first value that shows the case will do: shrinking it to the smallest would take minutes.
FIND = settings(max_examples=2_000, database=None, phases=[Phase.generate])
CASES = {
    "empty": lambda value: value in (None, "", [], {}, set()),
    "unicode": lambda value: any(ord(c) > 0x7F for c in _json(value)),
    "long": lambda value: len(_json(value)) > 1_000,
}


@pytest.mark.filterwarnings("ignore:Generating overly large repr")  # the long values are the point
@pytest.mark.parametrize(
    ("kind_name", "field"), [(kind, field) for kind, fields in ENCRYPTED_VALUES.items() for field in fields]
)
def test_every_encrypted_field_is_drawn_empty_unicode_and_long(kind_name: str, field: str) -> None:
    strategy: SearchStrategy[Any] = ENCRYPTED_VALUES[kind_name][field]
    cases = ("empty",) if (kind_name, field) in TEXTLESS else tuple(CASES)
    for case in cases:
        find(strategy, CASES[case], settings=FIND)
    if (kind_name, field) in TEXTLESS:
        find(strategy, lambda value: value is not None, settings=FIND)


# --- what the property found -------------------------------------------------------------------------------


def test_a_write_whose_names_make_more_tokens_than_an_entity_may_carry_is_refused_before_it_is_sent() -> None:
    writer = _writer()
    fields = CONFIGURATION.blind_indexed["Patient"]
    # A word of n letters gives n - 2 tokens (the word and its prefixes of 3 letters or more).
    within = writer.for_write("Patient", {"lastName": "a" * (MAX_TOKENS_PER_FIELD + 2)})
    refuse_oversized_blind_index("Patient", within, fields)
    assert len(Patient.model_validate(within).blind_index["names"]) == MAX_TOKENS_PER_FIELD  # type: ignore[index]
    past = writer.for_write("Patient", {"firstName": "Zoë", "lastName": "a" * (MAX_TOKENS_PER_FIELD + 2)})
    with pytest.raises(
        ValidationError,
        match=rf"firstName, lastName, maidenName, spouseName, names make {MAX_TOKENS_PER_FIELD + 1} blind-index "
        rf"tokens for names \(one per word and per prefix of 3 letters or more\), more than the "
        rf"{MAX_TOKENS_PER_FIELD} an entity may carry: not sent",
    ):
        refuse_oversized_blind_index("Patient", past, fields)
    with pytest.raises(PydanticValidationError, match=r"blindIndex\.names holds"):
        Patient.model_validate(past)  # what the server would have answered


def test_an_entity_whose_strings_are_each_within_their_bound_is_valid_encrypted_too() -> None:
    # One string of the largest length a field holds in clear: its encryptedSelf is longer than any one string.
    binary = "QUJD" * (MAX_STRING_LENGTH // 4)
    sample = DataSample(id="ds-big", content={"en": Content(binary_value=binary)}, comment="é" * MAX_STRING_LENGTH)
    writer = _writer()
    clear, sealed = _sealed_for_create(writer, "DataSample", sample)
    stored = DataSample.model_validate(sealed).to_json_dict()
    assert len(stored[ENCRYPTED_SELF]) > 2 * MAX_STRING_LENGTH
    read = _reader(WRITER, stored).decrypt("DataSample", stored)
    assert DataSample.model_validate(read) == DataSample.model_validate(clear)
