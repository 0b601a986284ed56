"""The budget of one key kept in Redis, as seen from one process: the policy.

Inside one process a local FIFO lets only its head talk to Redis: one round trip per
acquire and one per release. `RedisKeyLimiter` holds the policy (queue, deadline,
fallback, what each answer means); `_redis_budget.RedisBudget` makes the calls, each
`do_*` method exactly one script call. The rules Redis applies are in `_redis_scripts`;
the connection in `_redis_link`; the bookkeeping (leases, unsent reports, epoch) in
`_redis_ledger`; the outage fallback in `_redis_fallback`.
"""

from __future__ import annotations

import asyncio

from ._errors import ClientClosedError, DeadlineExceededError
from ._limiter._queue import HeadQueue
from ._limits import Lease, LimiterKey, LimiterSnapshot, RateLimit
from ._redis_budget import RedisBudget, RedisLimiterSettings, loop_time
from ._redis_ledger import RedisLease
from ._redis_link import RedisDown, RedisLink
from ._redis_scripts import GRANTED, REFUSED, WAIT

__all__ = ["RedisKeyLimiter", "RedisLimiterSettings"]


class _HeadTry:
    """The head's current lease id, and whether Redis holds a ticket under it (no call
    under way): a caller that gives up must have it forgotten."""

    __slots__ = ("lease_id", "ticket")

    def __init__(self, lease_id: str) -> None:
        self.lease_id = lease_id
        self.ticket = False

    def __repr__(self) -> str:
        return f"<_HeadTry {self.lease_id} ticket={self.ticket}>"


class RedisKeyLimiter:
    """The budget of one key, kept in Redis (rules: `_redis_scripts`).

    Talks to Redis only through `link` (one script call per operation) and reads only
    `settings`. `snapshot()` uses what this process knows: its own queued callers and
    leases in flight, its own released leases still cooling (other processes' are not
    counted), and the burst and hold Redis reported at the last contact.
    """

    __slots__ = ("_budget", "_key", "_link", "_nap", "_queue", "_rate", "_settings")

    def __init__(
        self, *, key: LimiterKey, rate: RateLimit, link: RedisLink, settings: RedisLimiterSettings
    ) -> None:
        self._link = link
        self._settings = settings
        self._key = key
        self._rate = rate
        self._budget = RedisBudget(key=key, rate=rate, link=link, settings=settings)
        self._queue = HeadQueue()  # this process's callers; only the head asks Redis
        self._nap: asyncio.Future[None] | None = None  # the head's wait; an outage ends it
        link.on_outage(self._outage)

    @property
    def key(self) -> LimiterKey:
        return self._key

    @property
    def rate(self) -> RateLimit:
        return self._rate

    @property
    def redis_keys(self) -> tuple[str, ...]:
        """The Redis keys of this budget: leases, queue, beats, state, epoch."""
        return tuple(self._budget.keys)

    def __repr__(self) -> str:
        mode = "fallback" if self._use_fallback() else "redis"
        return (
            f"<RedisKeyLimiter {self._key} {self._rate.limit}/{self._rate.window:g}s "
            f"{mode} queued={len(self._queue)} in_flight={len(self._budget.book.in_flight)} "
            f"burst={self._budget.burst}>"
        )

    def snapshot(self) -> LimiterSnapshot:
        now = loop_time()
        cooling = self._budget.book.expire(now)
        burst = self._budget.fallback.burst() if self._use_fallback() else None
        return LimiterSnapshot(
            queued=len(self._queue),
            in_flight=len(self._budget.book.in_flight),
            cooling=cooling,
            burst=self._budget.burst if burst is None else burst,
            held_until=self._budget.held_until if self._budget.held_until > now else None,
        )

    def _use_fallback(self) -> bool:
        return self._budget.fallback.enabled and self._link.in_outage

    def _check_open(self) -> None:
        if self._link.closing:
            raise ClientClosedError("the Redis limiter backend is closed")

    def _outage(self, began: bool) -> None:
        """The link's outage began (True) or ended (False)."""
        if began:
            # The head looks again now: it fails (and so, one after another without a
            # round trip, does everyone queued behind it) or moves to the fallback.
            if self._nap is not None and not self._nap.done():
                self._nap.set_result(None)
        elif self._budget.unreported:
            self._budget.report_soon()

    # -- acquire: policy -----------------------------------------------------------------

    async def acquire(self, *, deadline: float | None = None) -> RedisLease:
        self._check_open()
        if self._link.in_outage and not self._budget.fallback.enabled:
            raise self._link.outage_error()
        loop = asyncio.get_running_loop()
        queue = self._queue
        turn = queue.join(
            loop, key=self._key, deadline=deadline, max_pending=self._settings.max_pending
        )
        try:
            await queue.wait(turn, loop, key=self._key, deadline=deadline)
            return await self._acquire_as_head(deadline)
        finally:
            queue.leave(turn)

    async def _acquire_as_head(self, deadline: float | None) -> RedisLease:
        head = _HeadTry(self._link.new_id())
        try:
            while True:
                self._check_open()
                if deadline is not None and loop_time() >= deadline:
                    raise DeadlineExceededError(f"deadline passed waiting for {self._key}")
                if self._use_fallback():
                    lease = await self._try_fallback(head, deadline)
                else:
                    lease = await self._try_redis(head, deadline)
                if lease is not None:
                    self._budget.book.in_flight.add(lease)
                    return lease
        except BaseException:
            if head.ticket:
                # Cancelled or past the deadline while holding a ticket: give it back.
                self._budget.forget(head.lease_id)
            raise
        finally:
            self._queue.head_try_at = 0.0
            self._nap = None

    async def _try_fallback(self, head: _HeadTry, deadline: float | None) -> RedisLease | None:
        if head.ticket:
            self._budget.forget(head.lease_id)  # sent when Redis is back
            head.ticket = False
            head.lease_id = self._link.new_id()
        return await self._budget.fallback.acquire(head.lease_id, deadline)

    async def _try_redis(self, head: _HeadTry, deadline: float | None) -> RedisLease | None:
        """One ask; the lease, or None to look again (after waiting, if Redis said so)."""
        now = loop_time()
        max_wait = -1 if deadline is None else max(0, int((deadline - now) * 1e6))
        head.ticket = False  # while the call is under way, `do_acquire` cleans up after it
        try:
            status, wait_us = await self._budget.do_acquire(head.lease_id, max_wait)
        except RedisDown as down:
            # Redis may or may not have run the script: undo it when it answers.
            self._budget.forget(head.lease_id)
            if not self._budget.fallback.enabled:
                raise self._link.unavailable(down) from down.__cause__
            head.lease_id = self._link.new_id()
            return None  # the link is in outage now: the next look turns to the fallback
        if status == GRANTED:
            self._budget.fallback.redis_granted()
            return RedisLease(head.lease_id)
        if status == REFUSED:  # the script dropped any ticket
            raise DeadlineExceededError(
                f"the next slot of {self._key} frees in {wait_us / 1e6:.3f}s, after the deadline"
            )
        if status == WAIT:
            head.ticket = True
            await self._wait_for_redis(wait_us)
        return None  # waited, or RESYNC (the next ask registers this process's leases first)

    async def _wait_for_redis(self, wait_us: int) -> None:
        """Until the try-at time Redis gave (an outage ends it early)."""
        loop = asyncio.get_running_loop()
        self._queue.head_try_at = loop.time() + wait_us / 1e6
        self._nap = loop.create_future()
        await asyncio.wait((self._nap,), timeout=wait_us / 1e6)

    # -- release -------------------------------------------------------------------------

    async def release(self, lease: Lease) -> None:
        """Give a lease back; idempotent. Never raises for Redis trouble: a release Redis
        did not hear is sent again with the next operation on this key, and until then
        the lease counts as in flight there (it lapses after `inflight_ttl` at most)."""
        if not isinstance(lease, RedisLease):
            raise ValueError(f"{lease!r} was not granted by {self!r}")
        if lease.released:
            return
        now = asyncio.get_running_loop().time()
        lease.released = True
        lease.released_at = now
        self._budget.book.released(lease, now, self._rate.window)
        if lease.from_fallback:
            await self._budget.fallback.release(lease)
            if not lease.adopted:
                return  # Redis learns of it on adoption, with its release time
        else:
            self._budget.fallback.redis_released(now)
        self._budget.outbox.release(lease.lease_id, now)
        if self._link.in_outage:
            return
        try:
            await self._budget.do_report()
        except asyncio.CancelledError:
            # The entry stays in the outbox until a report succeeds: send it from the
            # background (meanwhile Redis counts the lease as in flight: safe).
            self._budget.report_soon()
            raise

    # -- 50011 ---------------------------------------------------------------------------

    async def on_rate_limited(self) -> None:
        """Hold the key for a window in every process and halve the shared burst. If
        Redis cannot be told, the hold is applied locally (and to the fallback) and sent
        with this key's next acquire."""
        now = asyncio.get_running_loop().time()
        self._budget.held_until = max(self._budget.held_until, now + self._rate.window)
        await self._budget.fallback.on_rate_limited()
        self._budget.outbox.limited = True
        if self._link.in_outage:
            return
        await asyncio.shield(self._link.spawn(self._budget.do_rate_limited()))
