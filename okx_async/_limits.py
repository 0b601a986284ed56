"""What is limited, and the interface every limiter backend offers.

A limiter key is (host/environment, subject, endpoint): OKX counts private limits per
User ID, so every API key, client and process of one user lands on one key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

from ._defaults import (
    ACCOUNT_CONFIG_PATH,
    BALANCE_PATH,
    SERVER_TIME_PATH,
    SET_RISK_OFFSET_PATH,
)

Scope = Literal["user", "ip"]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`limit` requests per `window` seconds, counted per `scope`."""

    limit: int
    window: float
    scope: Scope


# Data, not code: OKX's documented limit of each endpoint we call.
ENDPOINT_LIMITS: dict[str, RateLimit] = {
    SET_RISK_OFFSET_PATH: RateLimit(10, 2.0, "user"),
    ACCOUNT_CONFIG_PATH: RateLimit(5, 2.0, "user"),
    BALANCE_PATH: RateLimit(10, 2.0, "user"),
    SERVER_TIME_PATH: RateLimit(10, 2.0, "ip"),
}


def busiest_window(times: Sequence[float], window: float) -> int:
    """How many of `times` (seconds, sorted ascending) lie in the busiest half-open span
    (t - window, t]: the count a rolling-window limit of `window` seconds compares with
    its `limit`. 0 for no times. One pass, O(len(times))."""
    busiest = first = 0
    for last, t in enumerate(times):
        while times[first] <= t - window:
            first += 1
        busiest = max(busiest, last - first + 1)
    return busiest


class LimiterKey(NamedTuple):
    """One budget: `environment` is the host plus live/demo, `subject` the user (or IP).

    A NamedTuple, not a frozen dataclass: every request looks its limiter up by key, and
    a tuple hashes in C where a dataclass's generated __hash__ runs Python code.
    """

    environment: str
    subject: str
    endpoint: str

    def __str__(self) -> str:
        return f"{self.environment}|{self.subject}|{self.endpoint}"


@dataclass(frozen=True, slots=True)
class LimiterSnapshot:
    """A key's state at one moment, for `stats()` and reprs."""

    queued: int
    in_flight: int
    cooling: int
    burst: int
    held_until: float | None


class Lease(Protocol):
    """Proof that one request may be sent; give it back with `KeyLimiter.release`."""


class KeyLimiter(Protocol):
    """The budget of one key.

    `acquire` takes a slot when the request is about to be sent; `release` is called when
    its response, error or timeout arrives, and the slot frees one window later. So no
    window at the server can hold more than `limit` requests, whatever the network does.
    """

    @property
    def key(self) -> LimiterKey: ...

    async def acquire(self, *, deadline: float | None = None) -> Lease:
        """Wait FIFO for a slot. `deadline` is in loop time; past it, raise
        DeadlineExceededError having consumed nothing. Raises QueueFullError when
        `max_pending` callers already wait."""
        ...

    async def release(self, lease: Lease) -> None:
        """The request finished (any outcome); its slot frees one window from now."""
        ...

    async def on_rate_limited(self) -> None:
        """OKX answered 50011: hold the key for a full window and lower the burst."""
        ...

    def snapshot(self) -> LimiterSnapshot: ...


class LimiterBackend(Protocol):
    """Hands out one KeyLimiter per key; shared by every client that uses it."""

    def limiter(self, key: LimiterKey, rate: RateLimit) -> KeyLimiter: ...

    async def aclose(self) -> None: ...
