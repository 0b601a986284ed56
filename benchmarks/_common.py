"""Helpers shared by the benchmark scripts (run as `python benchmarks/NAME.py`, so this
directory is on sys.path)."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence


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


async def per_op_us(body: Callable[[int], Awaitable[None]], n: int, repeats: int) -> float:
    """Median over `repeats` of the wall time of `body(n)`, in microseconds per op."""
    samples = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        await body(n)
        samples.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(samples)
