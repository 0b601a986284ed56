"""Retry decisions are pure functions: checked by tables."""

from __future__ import annotations

import re

import pytest

from okx_async import (
    ClientClosedError,
    DeadlineExceededError,
    InvalidInputError,
    NetworkError,
    RequestTimeoutError,
    RetryPolicy,
    UnexpectedResponseError,
    backoff,
    should_retry,
)
from okx_async._errors import api_error_for
from okx_async._retry import Action, decide, outcome_unknown, retry_delay

POLICY = RetryPolicy(max_attempts=4, backoff_base=0.5, backoff_cap=3.0)


def api(code: str, status: int = 200) -> Exception:
    return api_error_for(code=code, message="", status=status, path="/p")


@pytest.mark.parametrize(
    ("error", "attempt", "expected"),
    [
        (api("50011", 429), 1, True),
        (api("50011", 429), 3, True),
        (api("50011", 429), 4, False),  # attempts exhausted
        (api("50001", 503), 1, True),
        (api("50004", 400), 1, True),
        (api("50013", 429), 1, True),
        (api("50026", 500), 1, True),
        (api("50040"), 1, True),
        (api("50102", 401), 1, True),  # once per call, after resync, on any attempt
        (api("50102", 401), 3, True),
        (api("50111", 401), 1, False),
        (api("50113", 401), 1, False),
        (api("51000", 400), 1, False),
        (api("51010"), 1, False),
        (api("59648"), 1, False),
        (NetworkError("reset", path="/p"), 1, True),
        (RequestTimeoutError("slow", path="/p"), 2, True),
        (UnexpectedResponseError("html", path="/p", status=502, body_preview=""), 1, True),
        (UnexpectedResponseError("odd", path="/p", status=200, body_preview=""), 1, False),
        (InvalidInputError("bad"), 1, False),
        (ClientClosedError("closed"), 1, False),
        (DeadlineExceededError("late"), 1, False),
        (ValueError("not ours"), 1, False),
    ],
)
def test_should_retry(error: Exception, attempt: int, expected: bool) -> None:
    assert should_retry(error, attempt, POLICY) is expected


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_a_second_50102_after_a_resync_is_not_retried(attempt: int) -> None:
    assert not should_retry(api("50102", 401), attempt, POLICY, clock_resynced=True)
    assert should_retry(api("50013", 429), attempt, POLICY, clock_resynced=True)


@pytest.mark.parametrize(
    ("error", "unknown"),
    [
        (RequestTimeoutError("slow", path="/p"), True),
        (NetworkError("reset", path="/p"), True),
        (api("50004", 400), True),
        (api("50026", 500), True),
        (api("50001", 503), True),
        (UnexpectedResponseError("html", path="/p", status=502, body_preview=""), True),
        (UnexpectedResponseError("odd", path="/p", status=200, body_preview=""), True),
        (UnexpectedResponseError("waf", path="/p", status=403, body_preview=""), False),
        (api("50011", 429), False),
        (api("50013", 429), False),
        (api("50102", 401), False),
        (api("51000", 400), False),
        (api("59648"), False),
        (ClientClosedError("closed"), False),
        (DeadlineExceededError("late"), False),
    ],
)
def test_outcome_unknown(error: Exception, unknown: bool) -> None:
    """A request OKX may still apply later: the lane re-asserts the newest value after it."""
    assert outcome_unknown(error) is unknown


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (10, 3.0), (60, 3.0)]
)
def test_backoff_is_full_jitter_under_a_capped_exponential(attempt: int, ceiling: float) -> None:
    assert backoff(attempt, POLICY, rand=lambda: 1.0) == pytest.approx(ceiling)
    assert backoff(attempt, POLICY, rand=lambda: 0.0) == 0.0
    assert backoff(attempt, POLICY, rand=lambda: 0.5) == pytest.approx(ceiling / 2)


@pytest.mark.parametrize(
    ("error", "expected"),
    [(api("50011", 429), 0.0), (api("50102", 401), 0.0), (api("50013", 429), 0.5)],
)
def test_retry_delay_lets_the_limiter_wait_for_rate_limits(
    error: Exception, expected: float
) -> None:
    assert retry_delay(error, 1, POLICY, rand=lambda: 1.0) == expected


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"backoff_base": -1.0}, {"backoff_base": 2.0, "backoff_cap": 1.0}],
)
def test_policy_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_edges_are_allowed_and_behave() -> None:
    never = RetryPolicy(max_attempts=1)  # "never retry": the first try is the only one
    assert not should_retry(api("50001", 503), 1, never)
    assert not should_retry(NetworkError("reset", path="/p"), 1, never)
    assert should_retry(NetworkError("reset", path="/p"), 1, RetryPolicy(max_attempts=2))

    at_once = RetryPolicy(backoff_base=0.0)  # retry without waiting
    assert [backoff(a, at_once, rand=lambda: 1.0) for a in (1, 2, 5)] == [0.0, 0.0, 0.0]

    flat = RetryPolicy(backoff_base=1.5, backoff_cap=1.5)  # a constant ceiling
    assert [backoff(a, flat, rand=lambda: 1.0) for a in (1, 2, 5)] == [1.5, 1.5, 1.5]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be at least 1 (default 6), not 0"),
        ({"max_attempts": -3}, "max_attempts must be at least 1 (default 6), not -3"),
        (
            {"max_attempts": 2.5},
            "max_attempts must be a whole number of at least 1 (default 6), not float",
        ),
        (
            {"backoff_base": -0.001},
            "backoff_base must be a number of seconds >= 0 (default 0.25), not -0.001",
        ),
        (
            {"backoff_base": 1.5, "backoff_cap": 1.499},
            "backoff_cap must be at least backoff_base (1.5 s; defaults 0.25 and 8), not 1.499",
        ),
        (
            {"backoff_cap": 0.2},
            "backoff_cap must be at least backoff_base (0.25 s; defaults 0.25 and 8), not 0.2",
        ),
        (
            {"backoff_base": 0.0, "backoff_cap": -1.0},
            "backoff_cap must be a number of seconds >= 0 (default 8), not -1.0",
        ),
        (
            {"backoff_cap": float("nan")},
            "backoff_cap must be a number of seconds >= 0 (default 8), not nan",
        ),
    ],
)
def test_policy_refuses_each_bound_with_its_reason(kwargs: dict[str, float], message: str) -> None:
    # InvalidInputError, like every other bad argument; a ValueError too, as it was.
    with pytest.raises(InvalidInputError, match=f"^{re.escape(message)}$"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


RETRY, RESYNC, GIVE_UP, SUPERSEDED = Action.RETRY, Action.RESYNC, Action.GIVE_UP, Action.SUPERSEDED
LATE = "late"  # GIVE_UP with a DeadlineExceededError caused by the error


@pytest.mark.parametrize(
    ("error", "attempt", "newer", "time_left", "resynced", "resync_done", "action", "delay"),
    [
        # A retryable error: full-jitter backoff (rand=1.0: the ceiling, 0.5 s on attempt 1).
        (api("50013", 429), 1, False, None, False, False, RETRY, 0.5),
        (api("50013", 429), 2, False, None, False, False, RETRY, 1.0),
        (NetworkError("reset", path="/p"), 1, False, 10.0, False, False, RETRY, 0.5),
        # A 50011 waits in the limiter, not here.
        (api("50011", 429), 1, False, 10.0, False, False, RETRY, 0.0),
        # Attempts exhausted, or an error that is not retried: the error itself.
        (api("50013", 429), 4, False, None, False, False, GIVE_UP, 0.0),
        (api("51000", 400), 1, False, None, False, False, GIVE_UP, 0.0),
        (ValueError("not ours"), 1, False, None, False, False, GIVE_UP, 0.0),
        # A newer value waits: never retry an older one (but a refusal is still the error).
        (api("50013", 429), 1, True, None, False, False, SUPERSEDED, 0.0),
        (api("51000", 400), 1, True, None, False, False, GIVE_UP, 0.0),
        # The delay would reach the deadline: give up (a DeadlineExceededError).
        (api("50013", 429), 1, False, 0.5, False, False, LATE, 0.0),
        (api("50013", 429), 1, False, 0.51, False, False, RETRY, 0.5),
        (api("50011", 429), 1, False, 0.0, False, False, LATE, 0.0),
        # A 50102: resync first, on any attempt, whatever else holds...
        (api("50102", 401), 1, False, None, False, False, RESYNC, 0.0),
        (api("50102", 401), 4, False, None, False, False, RESYNC, 0.0),
        (api("50102", 401), 1, True, 0.0, False, False, RESYNC, 0.0),
        # ...then retry at once, within the attempts and the time left...
        (api("50102", 401), 1, False, None, False, True, RETRY, 0.0),
        (api("50102", 401), 4, False, None, False, True, GIVE_UP, 0.0),
        (api("50102", 401), 1, False, 0.0, False, True, LATE, 0.0),
        (api("50102", 401), 1, True, None, False, True, SUPERSEDED, 0.0),
        # ...and a second 50102 after a resync in the same call is an error.
        (api("50102", 401), 2, False, None, True, False, GIVE_UP, 0.0),
    ],
)
def test_decide(
    error: Exception,
    attempt: int,
    newer: bool,
    time_left: float | None,
    resynced: bool,
    resync_done: bool,
    action: Action | str,
    delay: float,
) -> None:
    decision = decide(
        error,
        attempt,
        POLICY,
        newer_waiting=newer,
        time_left=time_left,
        clock_resynced=resynced,
        resync_done=resync_done,
        rand=lambda: 1.0,
    )
    if action == LATE:
        assert (decision.action, decision.delay) == (GIVE_UP, 0.0)
        assert isinstance(decision.error, DeadlineExceededError)
        assert decision.error.__cause__ is error
        assert str(decision.error) == (
            f"gave up after attempt {attempt}: no time left for a retry ({error})"
        )
        return
    assert (decision.action, decision.delay) == (action, delay)
    assert decision.error is (error if action is GIVE_UP else None)


def test_decide_gives_up_with_the_error_itself_when_no_retry_is_allowed() -> None:
    error = api("51000", 400)
    decision = decide(error, 1, POLICY, newer_waiting=False, time_left=0.0, clock_resynced=False)
    assert decision.action is GIVE_UP and decision.error is error
