"""Bursts: the burst after 50011 incidents and its recovery, on explicit times."""

from __future__ import annotations

from math import inf

from okx_async._limiter._rules import Bursts, Pacer


def _bursts(max_burst: int = 8, recovery: float = 10.0) -> Bursts:
    return Bursts(max_burst=max_burst, recovery=recovery, pacer=Pacer(0.5, max_burst))


def test_incident_halves_once_per_hold_and_holds_a_window() -> None:
    b = _bursts()
    b.incident(100.0, window=2.0)
    assert (b.burst, b.held_until, b.recover_at) == (4, 102.0, 110.0)
    assert b.pacer.burst == 4
    b.incident(101.0, window=2.0)  # inside the hold: the same incident
    assert (b.burst, b.held_until) == (4, 103.0)
    b.incident(103.0, window=2.0)  # after it: a new one
    assert (b.burst, b.pacer.burst) == (2, 2)


def test_recovery_doubles_per_clean_period_and_the_pacer_follows() -> None:
    b = _bursts()
    b.incident(0.0, window=1.0)
    b.incident(1.0, window=1.0)  # burst 2, recover_at 11
    assert b.whole_at() == 21.0  # 2 -> 4 at 11, 4 -> 8 at 21
    assert b.burst_at(10.9) == 2 and b.burst_at(11.0) == 4 and b.burst_at(25.0) == 8
    assert b.burst == 2  # burst_at changes nothing
    b.refresh(11.0)
    assert (b.burst, b.pacer.burst, b.recover_at) == (4, 4, 21.0)
    b.refresh(21.0)
    assert (b.burst, b.whole_at()) == (8, -inf)


def test_tolerance_counts_a_recovery_due_before_the_deadline() -> None:
    b = _bursts()
    b.incident(0.0, window=1.0)  # burst 4: tolerance 3 intervals; recovery at 10
    assert b.tolerance_by(5.0) == 3 * 0.5
    assert b.tolerance_by(10.5) == 7 * 0.5  # it may be whole again by then
