"""Counters for `OKXClient.stats()` and the metrics hook's events."""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Literal

from ._defaults import QUEUE_WAIT_SAMPLES

__all__ = ["ClientEvent", "ClientStats", "StatsRecorder"]

EventKind = Literal["sent", "retry", "rate_limited", "superseded", "succeeded", "failed"]


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """What the metrics hook receives; never carries credentials."""

    kind: EventKind
    path: str
    attempt: int
    error: str | None = None  # error class name, plus OKX's code when there is one
    delay: float = 0.0  # for "retry": seconds waited before the next attempt


@dataclass(frozen=True, slots=True)
class ClientStats:
    queued: int  # waiting for a rate-limit slot now
    in_flight: int  # on the wire now
    sent: int  # requests sent, retries included
    retried: int
    rate_limited: int  # 50011 answers
    superseded: int  # calls whose value was replaced by a newer one, never sent
    succeeded: int
    failed: int
    queue_wait_p50: float  # seconds from asking for a slot to getting it
    queue_wait_p99: float


class StatsRecorder:
    __slots__ = (
        "failed",
        "in_flight",
        "queued",
        "rate_limited",
        "retried",
        "sent",
        "succeeded",
        "superseded",
        "wait_count",
        "waits",
    )

    def __init__(self) -> None:
        self.queued = 0
        self.in_flight = 0
        self.sent = 0
        self.retried = 0
        self.rate_limited = 0
        self.superseded = 0
        self.succeeded = 0
        self.failed = 0
        # A ring of the latest queue waits, allocated once: 8 bytes a sample and no
        # allocation per call, so a long-lived client's memory does not grow with its call
        # count (a deque of floats grew by ~40 bytes a call until it was full).
        self.waits = array("d", bytes(8 * QUEUE_WAIT_SAMPLES))
        self.wait_count = 0  # samples ever recorded; the next goes to wait_count % size

    def record_wait(self, seconds: float) -> None:
        count = self.wait_count
        self.waits[count % QUEUE_WAIT_SAMPLES] = seconds
        self.wait_count = count + 1

    def snapshot(self) -> ClientStats:
        ordered = sorted(self.waits[: self.wait_count])  # all of the ring once it is full
        return ClientStats(
            queued=self.queued,
            in_flight=self.in_flight,
            sent=self.sent,
            retried=self.retried,
            rate_limited=self.rate_limited,
            superseded=self.superseded,
            succeeded=self.succeeded,
            failed=self.failed,
            queue_wait_p50=_quantile(ordered, 0.50),
            queue_wait_p99=_quantile(ordered, 0.99),
        )


def _quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile; 0.0 with no samples."""
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))
    return ordered[index]
