"""crypto/exchange_data.py: HPKE wraps of K_ex and S_ac, the delegator's signature, the delegate's on a record it
gave wraps for the delegator's new key, and their verification."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import hpke

from medstream.crypto import (
    DataOwnerKeyPair,
    ExchangeSecrets,
    PublicKeyRecord,
    add_wraps,
    add_wraps_as_delegate,
    create_exchange_data,
    open_exchange_data,
    sign_exchange_data,
    verify_exchange_data,
)
from medstream.crypto.exchange_data import unwrap_secret, wrapped_key_ids
from medstream.errors import DecryptionError
from tests.unit.crypto_fixtures import (
    ACCESS_CONTROL_SECRET,
    EXCHANGE_KEY,
    HCP_KEYS,
    PATIENT_KEYS,
    SEARCH_KEY,
    context,
)

# Frozen: HPKE (base mode, X25519 / HKDF-SHA256 / AES-256-GCM) wrap of EXCHANGE_KEY for the patient's key, with
# info = ctx("exchange-data", "ed-1", "exchangeKey", <patient key id>). HPKE is randomised: this one ciphertext
# and the patient's fixed private key freeze the format through decryption.
FROZEN_WRAP = (
    "AfOHQCAoEt6V1X14cMUW6MyY0vOg/Ca7Ae6iNubkGV5xzGHjpwqJonIs/P1NugAvYffng3oTyuIygpzn6afuG1hHLYLDcZZdF4EfIJjUwVZY"
)
# Frozen: Ed25519 (deterministic) over ctx("exchange-data-signature") + canonical JSON of the five fields.
SIGNED_WIRE: dict[str, Any] = {
    "id": "ed-1",
    "delegator": "hcp-a",
    "delegate": "pat-b",
    "exchangeKey": {PATIENT_KEYS.id: "AQ=="},
    "accessControlSecret": {PATIENT_KEYS.id: "AQ=="},
}
FROZEN_SIGNATURE = {
    HCP_KEYS.id: "AcKi57gTFWqCgxMAAv+dgHBOxBKxvlO5nNjffJSToUD6g5PHrG1ro76PF+YvYV1arWnegW/WHf061QpZz5UVywY="
}
SECRETS = ExchangeSecrets(EXCHANGE_KEY, ACCESS_CONTROL_SECRET)
PINS = {"hcp-a": {HCP_KEYS.id: HCP_KEYS.public}, "pat-b": {PATIENT_KEYS.id: PATIENT_KEYS.public}}


def exchange_data() -> dict[str, Any]:
    wire, _ = create_exchange_data(
        "ed-1", "hcp-a", "pat-b", [HCP_KEYS], [HCP_KEYS.public, PATIENT_KEYS.public], SECRETS
    )
    return wire


def test_a_frozen_hpke_wrap_opens_with_the_recipients_private_key() -> None:
    assert unwrap_secret(FROZEN_WRAP, "ed-1", "exchangeKey", PATIENT_KEYS) == EXCHANGE_KEY
    # The same bytes opened straight with HPKE and the spec's info string: the format is the library's HPKE.
    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    raw = base64.b64decode(FROZEN_WRAP)
    assert raw[0] == 1 and len(raw) == 1 + 32 + 32 + 16
    info = context("exchange-data", "ed-1", "exchangeKey", PATIENT_KEYS.id)
    assert suite.decrypt(raw[1:], PATIENT_KEYS.encryption_private, info) == EXCHANGE_KEY


@pytest.mark.parametrize(
    ("exchange_data_id", "field", "keys"),
    [
        ("ed-2", "exchangeKey", PATIENT_KEYS),
        ("ed-1", "accessControlSecret", PATIENT_KEYS),
        ("ed-1", "exchangeKey", HCP_KEYS),
    ],
)
def test_a_wrap_opens_only_where_it_belongs(exchange_data_id: str, field: str, keys: DataOwnerKeyPair) -> None:
    with pytest.raises(DecryptionError, match="authentication failed"):
        unwrap_secret(FROZEN_WRAP, exchange_data_id, field, keys)


def test_the_delegator_signature_is_frozen_and_covers_the_spec_content() -> None:
    assert sign_exchange_data(SIGNED_WIRE, [HCP_KEYS]) == FROZEN_SIGNATURE
    content = context("exchange-data-signature") + orjson.dumps(SIGNED_WIRE, option=orjson.OPT_SORT_KEYS)
    signature = base64.b64decode(FROZEN_SIGNATURE[HCP_KEYS.id])
    assert signature[0] == 1
    HCP_KEYS.public.signing_public_key().verify(signature[1:], content)  # raises if not
    # Fields outside the five are not signed: the server's own fields may change.
    assert verify_exchange_data({**SIGNED_WIRE, "rev": "3-x", "delegatorSignature": FROZEN_SIGNATURE}, PINS)


def test_both_parties_open_the_same_secrets() -> None:
    wire = exchange_data()
    assert set(wire["exchangeKey"]) == set(wire["accessControlSecret"]) == {HCP_KEYS.id, PATIENT_KEYS.id}
    assert open_exchange_data(wire, [PATIENT_KEYS], PINS) == SECRETS
    assert open_exchange_data(wire, [HCP_KEYS], PINS) == SECRETS
    fresh, secrets = create_exchange_data("ed-9", "hcp-a", "hcp-a", [HCP_KEYS], [HCP_KEYS.public])
    assert open_exchange_data(fresh, [HCP_KEYS], PINS) == secrets and secrets != SECRETS


def test_retired_keys_get_no_wrap() -> None:
    retired = DataOwnerKeyPair.generate(created=1).with_status("RETIRED")
    wire, _ = create_exchange_data("ed-3", "hcp-a", "pat-b", [HCP_KEYS], [HCP_KEYS.public, retired.public])
    assert set(wire["exchangeKey"]) == {HCP_KEYS.id}


def test_exchange_data_signed_by_an_unpinned_key_is_refused() -> None:
    stranger = DataOwnerKeyPair.generate(created=1)
    wire, _ = create_exchange_data("ed-4", "hcp-a", "pat-b", [stranger], [stranger.public, PATIENT_KEYS.public])
    with pytest.raises(DecryptionError, match="not pinned"):
        open_exchange_data(wire, [PATIENT_KEYS], PINS)


def test_a_signature_under_a_pinned_key_id_by_a_substituted_key_is_refused() -> None:
    # The server (or anyone between) makes exchange data of its own and labels its signature with the pinned id.
    attacker = DataOwnerKeyPair.generate(created=1)
    wire, _ = create_exchange_data("ed-5", "hcp-a", "pat-b", [attacker], [PATIENT_KEYS.public])
    wire["delegatorSignature"] = {HCP_KEYS.id: next(iter(wire["delegatorSignature"].values()))}
    with pytest.raises(DecryptionError, match="does not verify"):
        open_exchange_data(wire, [PATIENT_KEYS], PINS)


def test_a_changed_wrap_or_party_breaks_the_signature() -> None:
    other, _ = create_exchange_data("ed-1", "hcp-a", "pat-b", [HCP_KEYS], [PATIENT_KEYS.public])
    swapped = {**exchange_data(), "exchangeKey": other["exchangeKey"]}  # the server swaps in its own K_ex wraps
    with pytest.raises(DecryptionError, match="does not verify"):
        open_exchange_data(swapped, [PATIENT_KEYS], PINS)
    with pytest.raises(DecryptionError, match="does not verify"):
        open_exchange_data({**exchange_data(), "delegate": "pat-c"}, [PATIENT_KEYS], PINS)
    # Signed by the patient's key but naming the professional as delegator: the professional's pins decide.
    forged, _ = create_exchange_data("ed-6", "hcp-a", "pat-b", [PATIENT_KEYS], [PATIENT_KEYS.public])
    with pytest.raises(DecryptionError, match="not pinned"):
        open_exchange_data(forged, [PATIENT_KEYS], PINS)


def test_no_wrap_for_the_readers_keys_is_a_clear_error() -> None:
    with pytest.raises(DecryptionError, match="no wrap for any of this data owner's keys"):
        open_exchange_data(exchange_data(), [DataOwnerKeyPair.generate(created=1)], PINS)


def test_the_delegator_adds_wraps_for_a_new_key_and_re_signs() -> None:
    new_patient_key = DataOwnerKeyPair.generate(created=2)
    updated = add_wraps(exchange_data(), SECRETS, [new_patient_key.public], [HCP_KEYS])
    assert set(updated["exchangeKey"]) == {HCP_KEYS.id, PATIENT_KEYS.id, new_patient_key.id}
    assert open_exchange_data(updated, [new_patient_key], PINS) == SECRETS
    assert open_exchange_data(updated, [PATIENT_KEYS], PINS) == SECRETS


def test_a_delegate_signing_in_the_delegators_place_is_not_trusted() -> None:
    new_patient_key = DataOwnerKeyPair.generate(created=2)
    by_delegate = add_wraps(exchange_data(), SECRETS, [new_patient_key.public], [PATIENT_KEYS])
    with pytest.raises(DecryptionError, match="not pinned"):
        open_exchange_data(by_delegate, [new_patient_key], PINS)


def test_pins_only_trust_the_exact_public_record() -> None:
    substituted = PublicKeyRecord(HCP_KEYS.id, HCP_KEYS.public.encryption_key, PATIENT_KEYS.public.signing_key, 0)
    with pytest.raises(DecryptionError, match="does not verify"):
        open_exchange_data(exchange_data(), [PATIENT_KEYS], {"hcp-a": {HCP_KEYS.id: substituted}})


# --- the delegator's search key --------------------------------------------------------------------------

WITH_SEARCH_KEY = ExchangeSecrets(EXCHANGE_KEY, ACCESS_CONTROL_SECRET, SEARCH_KEY)
# Frozen: the same content as SIGNED_WIRE with a searchKey map, which the signature then covers.
SIGNED_WITH_SEARCH_KEY: dict[str, Any] = {**SIGNED_WIRE, "searchKey": {PATIENT_KEYS.id: "AQ=="}}
FROZEN_SIGNATURE_WITH_SEARCH_KEY = {
    HCP_KEYS.id: "AXXi/+SySOhT9IyzwoahEmagGpamXWGKk/X25XLNkfVnUJkY82/72fCIbWHNF3C0kAg34AT3aK3Nou0LGxAYAgs="
}


def test_a_signature_over_a_search_key_is_frozen_and_covers_the_spec_content() -> None:
    assert sign_exchange_data(SIGNED_WITH_SEARCH_KEY, [HCP_KEYS]) == FROZEN_SIGNATURE_WITH_SEARCH_KEY
    content = context("exchange-data-signature") + orjson.dumps(SIGNED_WITH_SEARCH_KEY, option=orjson.OPT_SORT_KEYS)
    signature = base64.b64decode(FROZEN_SIGNATURE_WITH_SEARCH_KEY[HCP_KEYS.id])
    HCP_KEYS.public.signing_public_key().verify(signature[1:], content)  # raises if not
    # A record without a search key (or with an empty map, as the server may answer one) signs as before.
    assert sign_exchange_data({**SIGNED_WIRE, "searchKey": {}}, [HCP_KEYS]) == FROZEN_SIGNATURE
    assert sign_exchange_data({**SIGNED_WIRE, "searchKey": None}, [HCP_KEYS]) == FROZEN_SIGNATURE


# Frozen: HPKE wraps of S_ac and of the search key for the patient's key, with
# info = ctx("exchange-data", "ed-1", fieldName, <patient key id>): each field's name is bound into its wrap.
FROZEN_FIELD_WRAPS = {
    "accessControlSecret": (
        ACCESS_CONTROL_SECRET,
        "Afn4PbOXdchij+c161c0tbsU9QbLIexXFsswkPbJkd8fHjj2XMXkomNtiooa4Z3D1OIaDN8og5z4cIKFhJ7IKPv89pHLOAFwTDzyH/KPLU8F",
    ),
    "searchKey": (
        SEARCH_KEY,
        "AWnekFyeeAmCTQF8DCKE1/ljfSZD39WlxSAfJhnC2yQUYpVRT9C1wd1Hf5SLQitpplVv5Td+rfOwWnVHggp9AYlhPsV7HHk+16IL7eSmhExi",
    ),
}


@pytest.mark.parametrize("field", sorted(FROZEN_FIELD_WRAPS))
def test_the_wraps_of_the_access_control_secret_and_search_key_are_frozen_and_bound_to_their_field(field: str) -> None:
    secret, blob = FROZEN_FIELD_WRAPS[field]
    assert unwrap_secret(blob, "ed-1", field, PATIENT_KEYS) == secret
    raw = base64.b64decode(blob)
    assert raw[0] == 1 and len(raw) == 1 + 32 + 32 + 16
    info = context("exchange-data", "ed-1", field, PATIENT_KEYS.id)
    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    assert suite.decrypt(raw[1:], PATIENT_KEYS.encryption_private, info) == secret
    with pytest.raises(DecryptionError, match="authentication failed"):
        unwrap_secret(blob, "ed-1", "exchangeKey", PATIENT_KEYS)


def test_both_parties_open_the_delegators_search_key_wrapped_in_its_own_place() -> None:
    wire, _ = create_exchange_data(
        "ed-1", "hcp-a", "pat-b", [HCP_KEYS], [HCP_KEYS.public, PATIENT_KEYS.public], WITH_SEARCH_KEY
    )
    assert set(wire["searchKey"]) == {HCP_KEYS.id, PATIENT_KEYS.id}
    assert open_exchange_data(wire, [PATIENT_KEYS], PINS).search_key == SEARCH_KEY
    assert open_exchange_data(wire, [HCP_KEYS], PINS) == WITH_SEARCH_KEY
    assert unwrap_secret(wire["searchKey"][PATIENT_KEYS.id], "ed-1", "searchKey", PATIENT_KEYS) == SEARCH_KEY
    with pytest.raises(DecryptionError, match="authentication failed"):  # not a K_ex wrap
        unwrap_secret(wire["searchKey"][PATIENT_KEYS.id], "ed-1", "exchangeKey", PATIENT_KEYS)
    assert open_exchange_data(exchange_data(), [PATIENT_KEYS], PINS).search_key is None


def test_the_signature_covers_the_search_key_removed_added_or_swapped() -> None:
    wire, _ = create_exchange_data(
        "ed-1", "hcp-a", "pat-b", [HCP_KEYS], [HCP_KEYS.public, PATIENT_KEYS.public], WITH_SEARCH_KEY
    )
    stripped = {k: v for k, v in wire.items() if k != "searchKey"}
    other, _ = create_exchange_data("ed-1", "hcp-a", "pat-b", [HCP_KEYS], [PATIENT_KEYS.public], WITH_SEARCH_KEY)
    added = {**exchange_data(), "searchKey": other["searchKey"]}  # a search key slipped into a record without
    for altered in (stripped, {**wire, "searchKey": other["searchKey"]}, added):
        with pytest.raises(DecryptionError, match="does not verify"):
            open_exchange_data(altered, [PATIENT_KEYS], PINS)


def test_the_delegator_adds_its_search_key_to_a_record_made_without_one() -> None:
    original = exchange_data()
    updated = add_wraps(original, WITH_SEARCH_KEY, [HCP_KEYS.public, PATIENT_KEYS.public], [HCP_KEYS])
    assert set(updated["searchKey"]) == {HCP_KEYS.id, PATIENT_KEYS.id}
    assert updated["exchangeKey"] == original["exchangeKey"], "the wraps it had are kept as they are"
    assert open_exchange_data(updated, [PATIENT_KEYS], PINS) == WITH_SEARCH_KEY


# --- the delegate's signature: a delegator that lost its keys ----------------------------------------------

# Frozen: Ed25519 over ctx("exchange-data-delegate-signature") + the same canonical JSON as SIGNED_WIRE.
FROZEN_DELEGATE_SIGNATURE = {
    PATIENT_KEYS.id: "AUzOqJKUcQDiizxz0H+2GBeoH7g0W0JWVl6jsMHKxCPgvuVslLa9xOpjDnUSBImvEq9POAsX5cJA6JkAhmaHrAA="
}


def test_the_delegate_signature_is_frozen_and_separate_from_the_delegators() -> None:
    assert sign_exchange_data(SIGNED_WIRE, [PATIENT_KEYS], "delegateSignature") == FROZEN_DELEGATE_SIGNATURE
    content = context("exchange-data-delegate-signature") + orjson.dumps(SIGNED_WIRE, option=orjson.OPT_SORT_KEYS)
    PATIENT_KEYS.public.signing_public_key().verify(
        base64.b64decode(FROZEN_DELEGATE_SIGNATURE[PATIENT_KEYS.id])[1:], content
    )
    # The same key's signature as delegator is another one: neither passes for the other.
    assert sign_exchange_data(SIGNED_WIRE, [PATIENT_KEYS]) != FROZEN_DELEGATE_SIGNATURE
    as_delegator = {**SIGNED_WIRE, "delegator": "pat-b", "delegatorSignature": FROZEN_DELEGATE_SIGNATURE}
    with pytest.raises(DecryptionError, match="does not verify"):
        verify_exchange_data(as_delegator, PINS)
    assert verify_exchange_data({**SIGNED_WIRE, "delegateSignature": FROZEN_DELEGATE_SIGNATURE}, PINS) == (
        PATIENT_KEYS.id
    )


def test_the_delegate_gives_wraps_for_the_delegators_new_key_which_both_trust_through_its_signature() -> None:
    """The professional lost its key: the patient, its delegate, wraps the record's secrets for the new key and
    signs as delegate; the professional, with only its new key and the patient pinned, opens the same secrets,
    then signs again as delegator, and the record is an ordinary one."""
    lost = exchange_data()
    new_hcp_key = DataOwnerKeyPair.generate(created=3)
    updated = add_wraps_as_delegate(lost, SECRETS, [new_hcp_key.public], [PATIENT_KEYS])
    assert updated["delegatorSignature"] == lost["delegatorSignature"], "left as it was"
    assert set(updated["delegateSignature"]) == {PATIENT_KEYS.id}
    with pytest.raises(DecryptionError, match="does not verify"):  # the old signature no longer covers the maps
        verify_exchange_data({k: v for k, v in updated.items() if k != "delegateSignature"}, PINS)
    after_loss = {"hcp-a": {new_hcp_key.id: new_hcp_key.public}, "pat-b": {PATIENT_KEYS.id: PATIENT_KEYS.public}}
    assert open_exchange_data(updated, [new_hcp_key], after_loss) == SECRETS
    assert open_exchange_data(updated, [PATIENT_KEYS], PINS) == SECRETS, "the delegate trusts its own signature"

    resigned = add_wraps(updated, SECRETS, [new_hcp_key.public], [new_hcp_key])
    assert "delegateSignature" not in resigned and set(resigned["delegatorSignature"]) == {new_hcp_key.id}
    patient_pins = {**PINS, "hcp-a": {**PINS["hcp-a"], new_hcp_key.id: new_hcp_key.public}}
    assert open_exchange_data(resigned, [PATIENT_KEYS], patient_pins) == SECRETS
    with pytest.raises(DecryptionError, match="not pinned"):  # a patient that has not pinned the new key
        open_exchange_data(resigned, [PATIENT_KEYS], PINS)


def test_a_delegate_signature_by_an_unpinned_key_or_over_other_content_is_refused() -> None:
    new_hcp_key = DataOwnerKeyPair.generate(created=3)
    after_loss = {"hcp-a": {new_hcp_key.id: new_hcp_key.public}, "pat-b": {PATIENT_KEYS.id: PATIENT_KEYS.public}}
    # Whoever writes the record (the server too) wraps secrets of its own for the new key and signs as delegate.
    attacker = DataOwnerKeyPair.generate(created=4)
    forged = add_wraps_as_delegate(exchange_data(), ExchangeSecrets.generate(), [new_hcp_key.public], [attacker])
    with pytest.raises(DecryptionError, match="by its delegate: signed only by keys of pat-b that are not pinned"):
        open_exchange_data(forged, [new_hcp_key], after_loss)
    labelled = {**forged, "delegateSignature": {PATIENT_KEYS.id: next(iter(forged["delegateSignature"].values()))}}
    with pytest.raises(DecryptionError, match="by its delegate: the signature does not verify"):
        open_exchange_data(labelled, [new_hcp_key], after_loss)
    genuine = add_wraps_as_delegate(exchange_data(), SECRETS, [new_hcp_key.public], [PATIENT_KEYS])
    other, _ = create_exchange_data("ed-1", "hcp-a", "pat-b", [HCP_KEYS], [new_hcp_key.public])
    wraps = {**genuine["exchangeKey"], new_hcp_key.id: other["exchangeKey"][new_hcp_key.id]}
    swapped = {**genuine, "exchangeKey": wraps}
    with pytest.raises(DecryptionError, match="does not verify"):
        open_exchange_data(swapped, [new_hcp_key], after_loss)


def test_wrapped_key_ids_are_the_keys_with_both_secrets() -> None:
    wire = exchange_data()
    assert wrapped_key_ids(wire) == {HCP_KEYS.id, PATIENT_KEYS.id}
    assert wrapped_key_ids({**wire, "accessControlSecret": {HCP_KEYS.id: "AQ=="}}) == {HCP_KEYS.id}
    assert wrapped_key_ids({"id": "ed-1"}) == frozenset()
