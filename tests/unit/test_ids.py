"""Server-made entity ids are version 7 UUIDs: time first, so that new rows land at the end of the indexes."""

from __future__ import annotations

import time
import uuid

from medstream.model.ids import new_entity_id, uuid7


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
