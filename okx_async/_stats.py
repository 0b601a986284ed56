"""Counters for `OKXClient.stats()` and the metrics hook's events."""

from __future__ import annotations

from collections import deque
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
        self.waits: deque[float] = deque(maxlen=QUEUE_WAIT_SAMPLES)

    def snapshot(self) -> ClientStats:
        ordered = sorted(self.waits)
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
