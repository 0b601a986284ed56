"""StatsRecorder: queue-wait quantiles over the latest samples, in memory that never grows."""

from __future__ import annotations

import tracemalloc

import pytest

from okx_async._defaults import QUEUE_WAIT_SAMPLES
from okx_async._stats import StatsRecorder


@pytest.mark.parametrize(
    ("waits", "p50", "p99"),
    [
        ([], 0.0, 0.0),
        ([0.5], 0.5, 0.5),
        ([0.3, 0.1, 0.2], 0.2, 0.3),
        ([i / 100 for i in range(1, 101)], 0.5, 0.99),
        # Only the latest QUEUE_WAIT_SAMPLES count: the old large waits have left the ring.
        ([9.0] * QUEUE_WAIT_SAMPLES + [0.25] * QUEUE_WAIT_SAMPLES, 0.25, 0.25),
        ([9.0] * 30 + [0.25] * (QUEUE_WAIT_SAMPLES - 30), 0.25, 9.0),
    ],
    ids=["none", "one", "three", "hundred", "ring-wrapped", "ring-full"],
)
def test_queue_wait_quantiles(waits: list[float], p50: float, p99: float) -> None:
    stats = StatsRecorder()
    for seconds in waits:
        stats.record_wait(seconds)
    snapshot = stats.snapshot()
    assert (snapshot.queue_wait_p50, snapshot.queue_wait_p99) == (p50, p99)


def test_recording_waits_allocates_nothing() -> None:
    """A client that lives for millions of calls keeps the same memory for its stats."""
    stats = StatsRecorder()
    waits = [i / 1000 for i in range(5 * QUEUE_WAIT_SAMPLES)]  # built before measuring
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for seconds in waits:
            stats.record_wait(seconds)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 1024, f"recording {len(waits)} waits kept {grown} bytes"
    latest = waits[-QUEUE_WAIT_SAMPLES:]
    assert stats.snapshot().queue_wait_p50 == latest[QUEUE_WAIT_SAMPLES // 2 - 1]
