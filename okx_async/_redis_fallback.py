"""A Redis key's local fallback during an outage (when the backend has a fallback share).

The fallback is an in-process limiter allowing `max(1, floor(limit * share))` per window.
It knows nothing of this process's Redis leases, so it grants only once they have all
been released and have cooled. When Redis answers again, the fallback's leases still in
flight or cooling are registered there (adopted) before Redis grants anything more.
"""

from __future__ import annotations

import asyncio
import contextlib
import math

from ._errors import DeadlineExceededError
from ._limits import KeyLimiter, LimiterKey, RateLimit
from ._redis_ledger import RedisLease, Report
from ._redis_scripts import REPORT_IN_FLIGHT

__all__ = ["FallbackShare"]


class FallbackShare:
    """The fallback of one key, and this process's Redis leases it must wait for.

    `share`: the fallback's part of the budget (None: no fallback, the bookkeeping of
    Redis leases still runs). `probe_interval` (s): the longest one look waits before the
    caller checks Redis again."""

    __slots__ = (
        "_key",
        "_limiter",
        "_max_pending",
        "_probe_interval",
        "_quiet",
        "_rate",
        "_redis_cool_end",
        "_redis_in_flight",
        "_share",
        "unadopted",
    )

    def __init__(
        self,
        *,
        key: LimiterKey,
        rate: RateLimit,
        share: float | None,
        max_pending: int,
        probe_interval: float,
    ) -> None:
        self._key = key
        self._rate = rate
        self._share = share
        self._max_pending = max_pending
        self._probe_interval = probe_interval
        self._limiter: KeyLimiter | None = None  # made on first use
        self.unadopted: list[RedisLease] = []  # fallback leases Redis does not know yet
        self._redis_in_flight = 0
        self._redis_cool_end = 0.0  # loop time the last Redis lease stops cooling
        self._quiet = asyncio.Event()  # set when no Redis lease is in flight

    def __repr__(self) -> str:
        return (
            f"<FallbackShare {self._key} share={self._share} active={self._limiter is not None} "
            f"redis_in_flight={self._redis_in_flight} unadopted={len(self.unadopted)}>"
        )

    @property
    def enabled(self) -> bool:
        return self._share is not None

    @property
    def limiter(self) -> KeyLimiter | None:
        """The local limiter, once the fallback was used."""
        return self._limiter

    def burst(self) -> int | None:
        """The local limiter's burst (None before the fallback was used)."""
        return None if self._limiter is None else self._limiter.snapshot().burst

    # -- this process's Redis leases -----------------------------------------------------

    def redis_granted(self) -> None:
        self._redis_in_flight += 1

    def redis_released(self, now: float) -> None:
        self._redis_in_flight -= 1
        self._redis_cool_end = max(self._redis_cool_end, now + self._rate.window)
        if self._redis_in_flight == 0:
            self._quiet.set()

    # -- fallback leases -----------------------------------------------------------------

    async def acquire(self, lease_id: str, deadline: float | None) -> RedisLease | None:
        """A lease from the local limiter, or None to look at Redis again (after waiting
        at most `probe_interval` for this process's Redis leases to end or cool)."""
        now = asyncio.get_running_loop().time()
        if self._redis_in_flight > 0:
            await self._wait_quiet(None if deadline is None else deadline - now)
            return None
        if self._redis_cool_end > now:
            if deadline is not None and self._redis_cool_end > deadline:
                raise DeadlineExceededError(
                    f"{self._key} is on its local fallback and cools past the deadline"
                )
            await asyncio.sleep(min(self._redis_cool_end - now, self._probe_interval))
            return None
        inner = await self._local().acquire(deadline=deadline)
        self._drop_cooled(asyncio.get_running_loop().time())
        lease = RedisLease(lease_id, inner)
        self.unadopted.append(lease)
        return lease

    async def _wait_quiet(self, remaining: float | None) -> None:
        self._quiet.clear()
        timeout = (
            self._probe_interval if remaining is None else min(self._probe_interval, remaining)
        )
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._quiet.wait(), timeout)

    def _local(self) -> KeyLimiter:
        if self._limiter is None:
            from ._ratelimit import LocalKeyLimiter

            limit = max(1, math.floor(self._rate.limit * (self._share or 1.0)))
            rate = RateLimit(limit, self._rate.window, self._rate.scope)
            self._limiter = LocalKeyLimiter(self._key, rate, max_pending=self._max_pending)
        return self._limiter

    def _drop_cooled(self, now: float) -> None:
        window = self._rate.window
        self.unadopted = [
            x for x in self.unadopted if not x.released or x.released_at + window > now
        ]

    async def release(self, lease: RedisLease) -> None:
        if self._limiter is not None and lease.inner is not None:
            await self._limiter.release(lease.inner)

    async def on_rate_limited(self) -> None:
        if self._limiter is not None:
            await self._limiter.on_rate_limited()

    # -- adoption by Redis ---------------------------------------------------------------

    def add_to(self, report: Report, now: float) -> None:
        """Register in `report` every fallback lease still in flight or cooling."""
        self._drop_cooled(now)
        for lease in self.unadopted:
            value = lease.cooling_us(now, self._rate.window) if lease.released else REPORT_IN_FLIGHT
            report.add(lease.lease_id, value)
        report.adopted = list(self.unadopted)

    def adopted(self, leases: list[RedisLease]) -> list[RedisLease]:
        """Redis registered `leases`; returns those adopted now that are released: their
        release is reported (again, if the registration carried it already: Redis keeps
        the later expiry, so a repeat changes nothing)."""
        late: list[RedisLease] = []
        for lease in leases:
            was_in_flight = not lease.adopted
            lease.adopted = True
            if lease in self.unadopted:
                self.unadopted.remove(lease)
            if lease.released and was_in_flight:
                late.append(lease)
        return late
