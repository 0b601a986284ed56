"""Reporter: what the client tells about its requests, in one place.

Each outcome of an attempt is counted in `StatsRecorder` (what `OKXClient.stats()`
shows), measured in OpenTelemetry metrics when a meter provider is in use, and passed to
the caller's `on_event` hook as a `ClientEvent`. The attempt loop and the lanes call one
method per outcome; none of them decides anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ._defaults import SET_RISK_OFFSET_PATH
from ._errors import RateLimitedError
from ._stats import ClientEvent, EventKind, StatsRecorder

if TYPE_CHECKING:
    from ._ordering import Lane
    from ._telemetry import ClientMetrics

__all__ = ["Reporter", "reason"]


def reason(error: BaseException) -> str:
    """An error as events and metrics name it: its class, and OKX's code if it has one."""
    code = getattr(error, "code", None)
    return f"{type(error).__name__} {code}" if code else type(error).__name__


class Reporter:
    """Counts, measures and tells each outcome; the counts are `stats`."""

    __slots__ = ("metrics", "on_event", "stats")

    def __init__(
        self, *, metrics: ClientMetrics | None, on_event: Callable[[ClientEvent], None] | None
    ) -> None:
        self.stats = StatsRecorder()
        self.metrics = metrics
        self.on_event = on_event

    def __repr__(self) -> str:
        hook = "on_event" if self.on_event is not None else "no hook"
        metrics = "metrics" if self.metrics is not None else "no metrics"
        return f"Reporter({metrics}, {hook}, {self.stats.snapshot()})"

    def emit(
        self,
        kind: EventKind,
        path: str,
        attempt: int,
        error: BaseException | None = None,
        delay: float = 0.0,
    ) -> None:
        if self.on_event is not None:
            self.on_event(
                ClientEvent(kind, path, attempt, None if error is None else reason(error), delay)
            )

    def sent(self, asked: float, now: float, path: str, attempt: int, lane: Lane | None) -> float:
        """A lease asked for at loop time `asked` was granted, and its request goes on the
        wire `now`; the lane of a set request counts it as an attempt of its value.
        Returns `now`."""
        stats = self.stats
        stats.record_wait(now - asked)
        if self.metrics is not None:
            self.metrics.limiter_wait(now - asked)
        stats.in_flight += 1
        if lane is not None:  # set requests, the only ones that go through a lane
            stats.sent += 1
            lane.attempt_sent()
        else:
            stats.lookups += 1
        if self.on_event is not None:
            self.emit("sent", path, attempt)
        return now

    def answered(self, method: str, path: str, attempt: int, took: float) -> None:
        """OKX answered code 0 after `took` seconds on the wire."""
        if self.metrics is not None:
            self.metrics.request(method, took, None)
        if path == SET_RISK_OFFSET_PATH:
            self.stats.succeeded += 1
        if self.on_event is not None:
            self.emit("succeeded", path, attempt)

    def attempt_failed(
        self,
        error: BaseException,
        method: str,
        path: str,
        attempt: int,
        took: float,
        *,
        through_lane: bool,
    ) -> bool:
        """An attempt ended in `error`; True when it was a 50011 the store must hear of."""
        metrics = self.metrics
        if metrics is not None:
            metrics.request(method, took, error)
        if not isinstance(error, RateLimitedError):
            return False
        if metrics is not None:
            metrics.rate_limited()
        if through_lane:
            self.stats.rate_limited += 1
        self.emit("rate_limited", path, attempt, error)
        return True

    def retrying(self, error: BaseException, path: str, attempt: int, delay: float) -> None:
        self.stats.retried += 1
        if self.metrics is not None:
            self.metrics.retry(reason(error))
        self.emit("retry", path, attempt, error, delay)

    def gave_up(self, error: BaseException, path: str, attempt: int) -> None:
        if path == SET_RISK_OFFSET_PATH:
            self.stats.failed += 1
        self.emit("failed", path, attempt, error)

    def superseded(self) -> None:
        """A call's value was never sent: a newer one replaced it."""
        self.stats.superseded += 1
        if self.metrics is not None:
            self.metrics.superseded()
        self.emit("superseded", SET_RISK_OFFSET_PATH, 0)

    def reasserted(self) -> None:
        """The lane sends the newest applied value again after an unknown outcome."""
        self.stats.reasserted += 1
        self.emit("reasserted", SET_RISK_OFFSET_PATH, 0)
