"""Counters for `OKXClient.stats()` and the metrics hook's events."""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Literal

from ._defaults import QUEUE_WAIT_SAMPLES

__all__ = ["ClientEvent", "ClientStats", "StatsRecorder"]

EventKind = Literal[
    "sent", "retry", "rate_limited", "superseded", "succeeded", "failed", "reasserted"
]


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """What the metrics hook receives; never carries credentials."""

    kind: EventKind  # "reasserted": the lane sends the newest value again (see README)
    path: str
    attempt: int  # 1-based attempt of the request; 0 for "superseded" and "reasserted"
    error: str | None = None  # error class name, plus OKX's code when there is one
    delay: float = 0.0  # for "retry": seconds waited before the next attempt


@dataclass(frozen=True, slots=True)
class ClientStats:
    """Counts since the client was made. Every counter but `lookups` counts requests to
    set-riskOffset-amt only, so they add up: once nothing is queued or in flight,
    `sent == succeeded + retried + failed + dropped`, where `dropped` (not a field) are
    attempts cut short — a retry given up because a newer value waits, or a request
    cancelled by its caller or by `close()`. `queued` and `in_flight` are gauges over
    every endpoint.
    """

    queued: int  # waiting for a rate-limit slot now (any endpoint)
    in_flight: int  # on the wire now (any endpoint)
    sent: int  # set requests put on the wire: first attempts, retries and re-asserts
    retried: int  # set requests followed by another attempt of the same value
    rate_limited: int  # 50011 answers to set requests
    superseded: int  # calls whose value was never sent: a newer one replaced it
    succeeded: int  # set requests OKX answered with code 0 (re-asserts included)
    failed: int  # set requests whose value was given up after this, its last attempt
    queue_wait_p50: float  # seconds from asking for a slot to getting it (any endpoint)
    queue_wait_p99: float
    reasserted: int = 0  # re-asserts started: the newest value sent again after an unknown outcome
    lookups: int = 0  # requests to the other endpoints: config, balance, server time


class StatsRecorder:
    __slots__ = (
        "failed",
        "in_flight",
        "lookups",
        "queued",
        "rate_limited",
        "reasserted",
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
        self.reasserted = 0
        self.lookups = 0
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
            reasserted=self.reasserted,
            lookups=self.lookups,
        )


def _quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile; 0.0 with no samples."""
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))
    return ordered[index]
