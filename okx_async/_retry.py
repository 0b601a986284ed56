"""Retry decisions as small pure functions, tested by tables."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from ._defaults import BACKOFF_BASE, BACKOFF_CAP, MAX_ATTEMPTS
from ._errors import OKXError, RateLimitedError, TimestampExpiredError

__all__ = ["RetryPolicy", "backoff", "should_retry"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry. `max_attempts` counts the first try."""

    max_attempts: int = MAX_ATTEMPTS
    backoff_base: float = BACKOFF_BASE
    backoff_cap: float = BACKOFF_CAP

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_base < 0 or self.backoff_cap < self.backoff_base:
            raise ValueError("need 0 <= backoff_base <= backoff_cap")


def should_retry(error: BaseException, attempt: int, policy: RetryPolicy) -> bool:
    """Whether to send again after `error` ended attempt number `attempt` (1-based)."""
    if attempt >= policy.max_attempts or not isinstance(error, OKXError):
        return False
    if isinstance(error, TimestampExpiredError):
        return attempt == 1  # once, after the clock resync; twice means something else
    return error.retryable


def backoff(
    attempt: int, policy: RetryPolicy, *, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before attempt `attempt + 1`: full jitter over a capped exponential."""
    ceiling = min(policy.backoff_cap, policy.backoff_base * 2.0 ** (attempt - 1))
    return rand() * ceiling


def retry_delay(
    error: BaseException,
    attempt: int,
    policy: RetryPolicy,
    *,
    rand: Callable[[], float] = random.random,
) -> float:
    """Extra wait before the retry. A 50011 waits in the limiter (which holds the key
    for a full window), and a resynced clock needs no wait: both retry at once."""
    if isinstance(error, (RateLimitedError, TimestampExpiredError)):
        return 0.0
    return backoff(attempt, policy, rand=rand)
