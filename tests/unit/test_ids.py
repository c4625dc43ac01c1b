"""Server-made entity ids are version 7 UUIDs: time first, so that new rows land at the end of the indexes."""

from __future__ import annotations

import os
import time
import uuid

from medstream.model.ids import new_entity_id, random_bits, random_hex, uuid7


def test_an_id_is_a_version_7_rfc_9562_uuid_that_starts_with_the_time_in_ms() -> None:
    before = time.time_ns() // 1_000_000
    made = uuid7()
    after = time.time_ns() // 1_000_000
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert before <= made.int >> 80 <= after
    assert uuid.UUID(new_entity_id()).version == 7


def test_ids_made_in_later_milliseconds_sort_after_earlier_ones() -> None:
    first = new_entity_id()
    time.sleep(0.002)
    second = new_entity_id()
    assert first < second  # as text, which is how the indexes order them


def test_ids_made_in_the_same_millisecond_differ_in_their_random_bits() -> None:
    made = [uuid7() for _ in range(20_000)]
    assert len({u.int for u in made}) == len(made)
    random_parts = {u.int & (2**62 - 1) for u in made}
    assert len(random_parts) == len(made)
    # the 12 bits after the version are random too, not a counter stuck at zero
    assert len({(u.int >> 64) & 0xFFF for u in made}) > 1_000


def test_an_id_as_text_is_the_uuids_canonical_form() -> None:
    for _ in range(1_000):
        text = new_entity_id()
        assert str(uuid.UUID(text)) == text


def test_random_bytes_are_handed_out_once_across_refills_of_the_pool() -> None:
    taken = [random_hex(16) for _ in range(2_000)]  # 32 KB: the 4 KiB pool refills eight times
    assert len(set(taken)) == len(taken)
    assert all(len(t) == 32 for t in taken)
    assert {random_bits(74).bit_length() <= 74 for _ in range(1_000)} == {True}
    assert max(random_bits(74) for _ in range(1_000)) >= 2**70  # the top bits are used


def test_a_forked_child_does_not_hand_out_the_bytes_its_parent_hands_out() -> None:
    random_hex(16)  # the parent's pool holds bytes it has not handed out yet
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(writer, bytes.fromhex("".join(random_hex(16) for _ in range(8))))
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    from_child = os.read(reader, 4096)
    os.close(reader)
    from_parent = bytes.fromhex("".join(random_hex(16) for _ in range(8)))
    assert len(from_child) == len(from_parent) == 128
    assert from_child != from_parent
