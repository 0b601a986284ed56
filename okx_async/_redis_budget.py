"""One key's budget in Redis, one script call per method: acquire, report, rate-limited.

`RedisBudget` builds each call's ARGV (see `_redis_scripts`), carries whatever Redis has
yet to hear (the outbox, fallback leases to adopt, leases to register after a loss) in
the same call, and takes in what the answer says (burst, hold, epoch). It decides
nothing: what an answer means for the caller is `_redis_key.RedisKeyLimiter`'s policy.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ._defaults import RATE_LIMIT_RECOVERY_WINDOWS
from ._limits import LimiterKey, RateLimit
from ._redis_fallback import FallbackShare
from ._redis_ledger import EpochWatch, LeaseBook, Outbox, Report
from ._redis_link import RedisDown, RedisLink
from ._redis_scripts import budget_keys, idle_ms, int_list

__all__ = ["RedisBudget", "RedisLimiterSettings", "loop_time"]

logger = logging.getLogger("okx_async.redis")


def loop_time() -> float:
    """The running loop's clock (the monotonic clock when no loop runs: a repr or a
    stats read from sync code)."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


@dataclass(frozen=True, slots=True)
class RedisLimiterSettings:
    """What a key needs to know of its backend's configuration (see RedisLimiterBackend).
    `clock`: None in production (Redis TIME decides), else seconds on one timeline shared
    by every process of the budget (tests pass a virtual loop's clock)."""

    fallback_share: float | None
    max_pending: int
    key_prefix: str
    inflight_ttl: float
    ticket_grace: float
    probe_interval: float
    epoch_ttl: float
    clock: Callable[[], float] | None = None


class RedisBudget:
    """The Redis side of one key: its keys, this process's leases and outbox, the epoch,
    the fallback, and the burst and hold Redis last reported (`burst`, `held_until`:
    loop time)."""

    __slots__ = (
        "_key",
        "_rate",
        "_settings",
        "book",
        "burst",
        "epoch",
        "fallback",
        "held_until",
        "idle_ms",
        "keys",
        "link",
        "outbox",
    )

    def __init__(
        self, *, key: LimiterKey, rate: RateLimit, link: RedisLink, settings: RedisLimiterSettings
    ) -> None:
        self.link = link
        self._settings = settings
        self._key = key
        self._rate = rate
        self.keys = budget_keys(settings.key_prefix, key)
        self.idle_ms = idle_ms(rate, settings.inflight_ttl, settings.ticket_grace)
        self.book = LeaseBook()
        self.outbox = Outbox()
        self.epoch = EpochWatch()
        self.fallback = FallbackShare(
            key=key,
            rate=rate,
            share=settings.fallback_share,
            max_pending=settings.max_pending,
            probe_interval=settings.probe_interval,
        )
        self.burst = rate.limit
        self.held_until = 0.0

    def __repr__(self) -> str:
        return (
            f"<RedisBudget {self.keys[0].rsplit(':', 1)[0]} burst={self.burst} "
            f"{self.book!r} {self.outbox!r} {self.epoch!r}>"
        )

    @property
    def unreported(self) -> bool:
        """Whether Redis has yet to hear something (sent when the outage ends)."""
        return bool(self.outbox or self.fallback.unadopted or self.epoch.registration_due)

    # -- acquire -------------------------------------------------------------------------

    async def do_acquire(self, lease_id: str, max_wait: int) -> tuple[int, int]:
        """One acquire script call (carrying any unsent report): (status, wait µs).
        Raises RedisDown."""
        report = self._report()
        limited = self.outbox.limited
        args: list[str | int] = [
            *self._common_args(),
            lease_id,
            self._rate.limit,
            self._rate.limit,
            round(self._settings.ticket_grace * 1e6),
            max_wait,
            round(RATE_LIMIT_RECOVERY_WINDOWS * self._rate.window * 1e6),
            1 if limited else 0,
            *report.pairs,
        ]
        task = self.link.spawn(self.link.eval("acquire", self.keys, args))
        try:
            # Shielded: if our caller goes away mid-call, Redis's decision still arrives,
            # and only then is it undone (a forget sent earlier could overtake it).
            raw = await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(lambda t: self._abandoned(t, lease_id, limited))
            raise
        status, wait_us, burst, hold_us, *epoch = int_list(raw, 7)
        self._heard(report, epoch)
        if limited:
            self.outbox.limited = False
        self._learned(burst, hold_us)
        return status, wait_us

    def _abandoned(self, task: asyncio.Task[object], lease_id: str, limited: bool) -> None:
        if limited and not task.cancelled() and task.exception() is None:
            self.outbox.limited = False
        if not self.link.closed:
            self.forget(lease_id)

    def forget(self, lease_id: str) -> None:
        """Undo whatever Redis holds under `lease_id` (an unused lease or a ticket)."""
        self.outbox.forget(lease_id, loop_time())
        if not self.link.in_outage:
            self.report_soon()

    # -- report --------------------------------------------------------------------------

    def report_soon(self) -> asyncio.Task[None]:
        return self.link.spawn(self.do_report())

    async def do_report(self) -> None:
        """One report script call with everything Redis has yet to hear (nothing when
        there is nothing, or during an outage); on failure the outbox keeps it."""
        if self.link.in_outage:
            return
        report = self._report()
        if not report:
            return
        args: list[str | int] = [*self._common_args(), *report.pairs]
        try:
            raw = await self.link.eval("report", self.keys, args)
        except RedisDown:
            return  # kept; the next successful operation on this key carries it
        _, *epoch = int_list(raw, 4)
        self._heard(report, epoch)

    def _report(self) -> Report:
        """The outbox, plus (when Redis is back) the fallback's leases Redis must count,
        plus (after a loss) every lease of ours still live or cooling."""
        now = asyncio.get_running_loop().time()
        report = Report()
        self.outbox.add_to(report, now, window=self._rate.window, ttl=self._settings.inflight_ttl)
        if self.fallback.unadopted and not self.link.in_outage:
            self.fallback.add_to(report, now)
        report.loss = self.epoch.loss_to_register()
        if report.loss:
            self.book.register_all(report, now)
        return report

    # -- 50011 ---------------------------------------------------------------------------

    async def do_rate_limited(self) -> None:
        """One rate-limited script call; on failure the 50011 stays in the outbox."""
        args: list[str | int] = [*self._common_args(), self._rate.limit]
        try:
            raw = await self.link.eval("rate_limited", self.keys, args)
        except RedisDown:
            return
        hold_us, burst, *epoch = int_list(raw, 5)
        self.outbox.limited = False
        self._learned(burst, hold_us)
        self._heard(Report(), epoch)

    # -- arguments and answers -----------------------------------------------------------

    def _common_args(self) -> list[str | int]:
        """ARGV[1..8] of every script (see `_redis_scripts`)."""
        settings = self._settings
        known_id, known_seq = self.epoch.known(loop_time(), settings.epoch_ttl)
        clock = settings.clock
        return [
            max(1, round(self._rate.window * 1e6)),
            round(settings.inflight_ttl * 1e6),
            self.idle_ms,
            known_id,
            known_seq,
            self.link.new_epoch_id(),
            math.ceil(settings.epoch_ttl * 1000),
            "" if clock is None else round(clock() * 1e6),
        ]

    def _learned(self, burst: int, hold_us: int) -> None:
        self.burst = burst
        if hold_us > 0:
            held = asyncio.get_running_loop().time() + hold_us / 1e6
            self.held_until = max(self.held_until, held)

    def _heard(self, report: Report, epoch: list[int]) -> None:
        """Redis applied `report` and answered with the epoch tail `epoch`."""
        self.outbox.delivered(report.sent)
        for lease in self.fallback.adopted(report.adopted):
            if lease.lease_id not in self.outbox.entries:
                self.outbox.release(lease.lease_id, lease.released_at)
        if self.epoch.observe(epoch, loop_time(), registered_for=report.loss):
            logger.warning(
                "Redis limiter %s lost the state of %s; registering this process's %d "
                "live and cooling leases again, the key is held for a window",
                self.link.url,
                self._key,
                len(self.book.in_flight) + len(self.book.cooling),
            )
            self.report_soon()
