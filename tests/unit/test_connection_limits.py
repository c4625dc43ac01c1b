"""The connection counts (server/connection_limits.py): caps in all and per address, releases, the open-file cap."""

from __future__ import annotations

from medstream.server.connection_limits import FILE_HEADROOM, REPORT_EVERY, ConnectionLimits, connection_cap


def test_an_address_at_its_cap_is_refused_while_others_are_admitted_until_the_total() -> None:
    limits = ConnectionLimits(total=5, per_address=2)
    a1, a2, a3, b1, b2, c1 = (object() for _ in range(6))
    assert limits.admit(a1, "10.0.0.1") is None
    assert limits.admit(a2, "10.0.0.1") is None
    refused = limits.admit(a3, "10.0.0.1")
    assert refused is not None and "10.0.0.1" in refused and "2" in refused
    assert limits.admit(b1, "10.0.0.2") is None
    assert limits.admit(b2, "10.0.0.2") is None
    assert limits.open == 4
    assert limits.admit(c1, "10.0.0.3") is None
    total_refusal = limits.admit(object(), "10.0.0.4")
    assert total_refusal is not None and "5" in total_refusal

    limits.release(a1)
    limits.release(a1)  # released once only
    limits.release(a3)  # never admitted: nothing to release
    assert limits.open == 4
    assert limits.admit(a3, "10.0.0.1") is None
    assert limits.admit(object(), "10.0.0.1") is not None


def test_no_cap_per_address_when_it_is_zero() -> None:
    limits = ConnectionLimits(total=100, per_address=0)
    assert all(limits.admit(object(), "10.0.0.1") is None for _ in range(100))
    assert limits.admit(object(), "10.0.0.1") is not None  # the total still holds


def test_the_total_cap_leaves_the_headroom_under_the_open_file_limit() -> None:
    assert connection_cap(None, 20_000) == 20_000 - FILE_HEADROOM
    assert connection_cap(500, 20_000) == 500
    assert connection_cap(50_000, 20_000) == 20_000 - FILE_HEADROOM
    assert connection_cap(None, 100) == 1  # a tiny limit still lets the server answer


def test_refusals_are_counted_and_reported_once_a_minute_at_most() -> None:
    limits = ConnectionLimits(total=10, per_address=1)
    limits.admit(object(), "10.0.0.1")
    for _ in range(3):
        assert limits.admit(object(), "10.0.0.1") is not None
    assert limits.refused == 3
    assert limits.report_due(100.0)
    assert not limits.report_due(100.0 + REPORT_EVERY / 2)
    assert limits.report_due(100.0 + REPORT_EVERY)
