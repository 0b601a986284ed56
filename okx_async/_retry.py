"""Retry decisions as small pure functions, tested by tables."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from ._defaults import BACKOFF_BASE, BACKOFF_CAP, MAX_ATTEMPTS
from ._errors import (
    APIError,
    DeadlineExceededError,
    InvalidInputError,
    NetworkError,
    OKXError,
    RateLimitedError,
    RequestTimeoutError,
    TimestampExpiredError,
    UnexpectedResponseError,
)

__all__ = [
    "Action",
    "Decision",
    "RetryPolicy",
    "backoff",
    "decide",
    "outcome_unknown",
    "should_retry",
]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry. `max_attempts` counts the first try."""

    max_attempts: int = MAX_ATTEMPTS
    backoff_base: float = BACKOFF_BASE
    backoff_cap: float = BACKOFF_CAP

    def __post_init__(self) -> None:
        """InvalidInputError (a ValueError) naming the field, its bound and its default."""
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise InvalidInputError(
                f"max_attempts must be a whole number of at least 1 (default {MAX_ATTEMPTS}), "
                f"not {type(self.max_attempts).__name__}"
            )
        if self.max_attempts < 1:
            raise InvalidInputError(
                f"max_attempts must be at least 1 (default {MAX_ATTEMPTS}), not {self.max_attempts}"
            )
        for name, value in (("backoff_base", self.backoff_base), ("backoff_cap", self.backoff_cap)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                default = BACKOFF_BASE if name == "backoff_base" else BACKOFF_CAP
                raise InvalidInputError(
                    f"{name} must be a number of seconds >= 0 (default {default:g}), not {value!r}"[
                        :160
                    ]
                )
        if self.backoff_cap < self.backoff_base:
            raise InvalidInputError(
                f"backoff_cap must be at least backoff_base ({self.backoff_base:g} s; defaults "
                f"{BACKOFF_BASE:g} and {BACKOFF_CAP:g}), not {self.backoff_cap:g}"
            )


def should_retry(
    error: BaseException, attempt: int, policy: RetryPolicy, *, clock_resynced: bool = False
) -> bool:
    """Whether to send again after `error` ended attempt number `attempt` (1-based).
    `clock_resynced`: this call already resynced the clock after an earlier 50102."""
    if attempt >= policy.max_attempts or not isinstance(error, OKXError):
        return False
    if isinstance(error, TimestampExpiredError):
        # Once per call, after the resync, on whichever attempt: OKX's clock may move
        # during a backoff. A second 50102 after a resync means something else.
        return not clock_resynced
    return error.retryable


def outcome_unknown(error: BaseException) -> bool:
    """Whether a request that ended in `error` may still be applied by OKX.

    True for a timeout, a dropped connection, 50004, and any 5xx (OKX JSON or a gateway
    page); also for a 2xx/3xx body that is not OKX JSON. False for a connection that was
    never made (`NetworkError.sent` is False) and for answers that refuse the request:
    4xx pages, 50011, 50013 (HTTP 429), business codes.
    """
    if isinstance(error, NetworkError):
        return error.sent
    if isinstance(error, RequestTimeoutError):
        return True
    if isinstance(error, UnexpectedResponseError):
        return not 400 <= error.status < 500
    if isinstance(error, APIError):
        return error.code == "50004" or error.status >= 500
    return False


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


class Action(Enum):
    """What the attempt loop does after a failed attempt."""

    RETRY = "retry"  # wait `delay` seconds, then send again
    RESYNC = "resync"  # resync the server clock, then decide again with `resync_done`
    GIVE_UP = "give_up"  # raise `error`
    SUPERSEDED = "superseded"  # a newer value waits: retrying this one could undo it


@dataclass(frozen=True, slots=True)
class Decision:
    """`action`; `delay` (seconds >= 0, for RETRY); `error` (the exception to raise, for
    GIVE_UP: the attempt's own error, or a DeadlineExceededError caused by it)."""

    action: Action
    delay: float = 0.0
    error: BaseException | None = None


_RESYNC = Decision(Action.RESYNC)
_SUPERSEDED = Decision(Action.SUPERSEDED)


def decide(
    error: BaseException,
    attempt: int,
    policy: RetryPolicy,
    *,
    newer_waiting: bool,
    time_left: float | None,
    clock_resynced: bool,
    resync_done: bool = False,
    rand: Callable[[], float] = random.random,
) -> Decision:
    """What to do after `error` ended attempt number `attempt` (1-based).

    `newer_waiting`: a newer value for the same currency waits (only set calls have
    one). `time_left`: seconds until the caller's deadline, None for no deadline.
    `clock_resynced`: this call resynced the clock after an earlier 50102, before the
    attempt that failed. `resync_done`: the caller has just resynced for this 50102.

    A 50102 first asks for a resync (whatever the attempt: the clock is known wrong, and
    the next call needs it too); then the usual rules, in order: give up when no retry
    is allowed (`should_retry`), supersede when a newer value waits, give up with a
    DeadlineExceededError when the delay would reach the deadline, else retry.
    """
    if isinstance(error, TimestampExpiredError) and not (clock_resynced or resync_done):
        return _RESYNC
    if not should_retry(error, attempt, policy, clock_resynced=clock_resynced):
        return Decision(Action.GIVE_UP, error=error)
    if newer_waiting:
        return _SUPERSEDED
    delay = retry_delay(error, attempt, policy, rand=rand)
    if time_left is not None and delay >= time_left:
        late = DeadlineExceededError(
            f"gave up after attempt {attempt}: no time left for a retry ({error})"
        )
        late.__cause__ = error  # as `raise late from error` would
        late.__suppress_context__ = True
        return Decision(Action.GIVE_UP, error=late)
    return Decision(Action.RETRY, delay=delay)
