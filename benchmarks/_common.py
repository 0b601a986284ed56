"""Helpers shared by the benchmark scripts (run as `python benchmarks/NAME.py`, so this
directory is on sys.path)."""

from __future__ import annotations

from collections.abc import Sequence


def max_in_any_window(times: Sequence[float], window: float) -> int:
    """The most of the sorted `times` inside any half-open window (t - window, t]."""
    best = start = 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def verdict(ok: bool) -> str:
    """The word each script prints before a target's line."""
    return "PASS" if ok else "FAIL"
