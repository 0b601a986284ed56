"""The rate limiter shared by every process and host of one OKX user, kept in Redis.

Same rules as the in-process limiter (`_ratelimit.LocalKeyLimiter`): a request takes a
lease when it is sent, `release` starts the lease's last window, at most `limit` leases
exist at once, a 50011 holds the key for a window and halves the burst (GCRA pacing). Here
the leases, the pacer and the hold live in Redis (or Valkey), so every process of the user
obeys one budget. The scripts and the data layout are in `_redis_scripts`; the connection
(client, timeouts, outage, probe) is `_redis_link.RedisLink`.

Inside one process a local FIFO lets only its head talk to Redis: about one round trip
per acquire and one per release.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from dataclasses import dataclass

from ._defaults import (
    MAX_PENDING_PER_KEY,
    RATE_LIMIT_RECOVERY_WINDOWS,
    REDIS_EPOCH_TTL,
    REDIS_FALLBACK_PROBE_INTERVAL,
    REDIS_INFLIGHT_TTL,
    REDIS_KEY_PREFIX,
    REDIS_OPERATION_TIMEOUT,
    REDIS_TICKET_GRACE,
)
from ._errors import (
    ClientClosedError,
    DeadlineExceededError,
    InvalidInputError,
)
from ._limiter._queue import HeadQueue
from ._limits import KeyLimiter, Lease, LimiterKey, LimiterSnapshot, RateLimit
from ._redis_lanes import RedisLaneStore
from ._redis_link import RedisDown, RedisLink
from ._redis_scripts import (
    GRANTED,
    REFUSED,
    RESYNC,
    SETTLE_CANCEL,
    SETTLE_IN_FLIGHT,
    budget_keys,
    idle_ms,
    int_list,
    mask_url,
)

__all__ = [
    "RedisKeyLimiter",
    "RedisLease",
    "RedisLimiterBackend",
    "RedisLimiterSettings",
    "mask_url",
]

logger = logging.getLogger("okx_async.redis")


def _loop_time() -> float:
    import time

    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:  # no loop running (a repr or stats read from sync code)
        return time.monotonic()


@dataclass(frozen=True, slots=True)
class RedisLimiterSettings:
    """What a key needs to know of its backend's configuration (see RedisLimiterBackend)."""

    fallback_share: float | None
    max_pending: int
    key_prefix: str
    inflight_ttl: float
    ticket_grace: float
    probe_interval: float
    epoch_ttl: float


class RedisLease:
    """One lease: granted by Redis, or by the local fallback while Redis was away."""

    __slots__ = ("_inner", "adopted", "lease_id", "released", "released_at")

    def __init__(self, lease_id: str, inner: Lease | None = None) -> None:
        self.lease_id = lease_id
        self._inner = inner  # the fallback's lease, if the fallback granted this one
        self.adopted = inner is None  # whether Redis knows about it
        self.released = False
        self.released_at = 0.0  # loop time

    @property
    def from_fallback(self) -> bool:
        return self._inner is not None

    def __repr__(self) -> str:
        origin = "fallback" if self._inner is not None else "redis"
        state = "released" if self.released else "in flight"
        return f"<RedisLease {self.lease_id} {origin} {state}>"


class RedisLimiterBackend:
    """Limiters whose budgets live in Redis, shared by every process that uses the same
    Redis and key prefix.

    `fallback_share=None` (the default) fails fast: once a Redis call fails or takes
    longer than `operation_timeout` (s), that caller, every caller queued on any key and
    every new one get LimiterUnavailableError at once (nothing is sent) until a ping (one
    at once, then one every `probe_interval` s) is answered. With a share
    (0 < share <= 1) each key falls back instead to a local limiter allowing
    `max(1, floor(limit * share))` per window (after this process's Redis leases have
    cooled), and goes back to Redis when a ping is answered, first registering the
    fallback's leases there. One WARNING per outage.

    A store that lost its state (restarted empty, FLUSHALL, a failover that lost writes)
    is detected by each budget's epoch marker: the key is held one window and every
    process registers its live and cooling leases again before it is granted (see
    `_redis_scripts`).

    URLs (anything redis-py's `from_url` takes; a password in it is masked in every
    message): `redis://[[user]:password@]host:port/db`, `rediss://...` (TLS),
    `unix:///path/to/redis.sock?db=0&password=...` for one server, and
    `redis+cluster://[[user]:password@]host:port` or `rediss+cluster://...` for Redis
    Cluster (any reachable node; the rest are discovered; db must be 0). `cluster=True`
    treats a plain `redis://`/`rediss://` URL as a cluster node too. Every key of one
    budget carries the hash tag `{env|subject}`, so each script runs on one slot, and
    redis-py loads the scripts on every primary when a node answers NOSCRIPT.

    `inflight_ttl`: how long a lease whose holder died stays (must exceed the window).
    `ticket_grace`: how long a waiter's place in the cross-process queue outlives the
    try-at time Redis gave it (a dead process's ticket blocks others that long).
    `epoch_ttl`: how long a budget's epoch marker outlives its last use (s).
    Raises InvalidInputError for a bad URL or setting, ImportError without redis-py.
    """

    # __weakref__: the slots-in-use metric watches backends weakly.
    __slots__ = ("__weakref__", "_closed", "_limiters", "_link", "_settings")

    def __init__(
        self,
        url: str,
        *,
        fallback_share: float | None = None,
        max_pending: int = MAX_PENDING_PER_KEY,
        key_prefix: str = REDIS_KEY_PREFIX,
        operation_timeout: float = REDIS_OPERATION_TIMEOUT,
        inflight_ttl: float = REDIS_INFLIGHT_TTL,
        ticket_grace: float = REDIS_TICKET_GRACE,
        probe_interval: float = REDIS_FALLBACK_PROBE_INTERVAL,
        epoch_ttl: float = REDIS_EPOCH_TTL,
        cluster: bool = False,
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "RedisLimiterBackend needs the redis package: pip install 'okx_async[redis]'"
            ) from exc
        if fallback_share is not None and not 0 < fallback_share <= 1:
            raise InvalidInputError(f"fallback_share must be in (0, 1], got {fallback_share!r}")
        if max_pending < 0:
            raise InvalidInputError(f"max_pending must be >= 0, got {max_pending!r}")
        if not key_prefix or "{" in key_prefix or "}" in key_prefix:
            raise InvalidInputError(f"key_prefix must be non-empty without braces: {key_prefix!r}")
        for name, value in (
            ("operation_timeout", operation_timeout),
            ("inflight_ttl", inflight_ttl),
            ("ticket_grace", ticket_grace),
            ("probe_interval", probe_interval),
            ("epoch_ttl", epoch_ttl),
        ):
            if not value > 0:
                raise InvalidInputError(f"{name} must be positive, got {value!r}")
        mode = (
            "failing fast"
            if fallback_share is None
            else f"falling back to local limiters with {fallback_share:g} of each budget"
        )
        self._link = RedisLink(
            url,
            operation_timeout=operation_timeout,
            probe_interval=probe_interval,
            cluster=cluster,
            mode=mode,
        )
        self._settings = RedisLimiterSettings(
            fallback_share=fallback_share,
            max_pending=max_pending,
            key_prefix=key_prefix,
            inflight_ttl=inflight_ttl,
            ticket_grace=ticket_grace,
            probe_interval=probe_interval,
            epoch_ttl=epoch_ttl,
        )
        self._limiters: dict[tuple[LimiterKey, RateLimit], RedisKeyLimiter] = {}
        self._closed = False

    def __repr__(self) -> str:
        share = self._settings.fallback_share
        mode = "fail fast" if share is None else f"fallback {share}"
        state = "closed" if self._closed else "outage" if self._link.in_outage else "ok"
        return (
            f"<RedisLimiterBackend {self._link.url} prefix={self._settings.key_prefix!r} "
            f"{mode} keys={len(self._limiters)} {state}>"
        )

    async def __aenter__(self) -> RedisLimiterBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def url(self) -> str:
        """The Redis URL with its password masked."""
        return self._link.url

    @property
    def fallback_share(self) -> float | None:
        return self._settings.fallback_share

    @property
    def in_outage(self) -> bool:
        """Whether a Redis call failed and no probe has been answered since."""
        return self._link.in_outage

    def limiter(self, key: LimiterKey, rate: RateLimit) -> RedisKeyLimiter:
        if self._closed:
            raise ClientClosedError("the Redis limiter backend is closed")
        limiter = self._limiters.get((key, rate))
        if limiter is None:
            if rate.limit < 1 or not rate.window > 0:
                raise InvalidInputError(f"invalid rate limit {rate!r}")
            if not self._settings.inflight_ttl > rate.window:
                raise InvalidInputError(
                    f"inflight_ttl ({self._settings.inflight_ttl}s) must exceed the window "
                    f"({rate.window}s)"
                )
            limiter = RedisKeyLimiter(key=key, rate=rate, link=self._link, settings=self._settings)
            self._limiters[(key, rate)] = limiter
        return limiter

    def lane_store(self) -> RedisLaneStore:
        """Per-currency ordering shared through this Redis (see `_redis_lanes`)."""
        return RedisLaneStore(link=self._link, prefix=self._settings.key_prefix)

    def snapshots(self) -> list[tuple[LimiterKey, LimiterSnapshot]]:
        """This process's view of every key it used (for the slots-in-use metric)."""
        return [(key, limiter.snapshot()) for (key, _), limiter in list(self._limiters.items())]

    async def aclose(self) -> None:
        """Stop taking calls, let pending clean-ups finish (bounded), close the pool."""
        if self._closed:
            return
        self._closed = True
        await self._link.aclose()


class RedisKeyLimiter:
    """The budget of one key, kept in Redis (rules above; what Redis decides: `_redis_scripts`).

    Talks to Redis only through `link` (one script call per operation) and reads only
    `settings`. `snapshot()` uses what this process knows: its own queued callers and
    leases in flight, its own released leases still cooling (other processes' are not
    counted), and the burst and hold Redis reported at the last contact.
    """

    __slots__ = (
        "_burst",
        "_cooling",
        "_epoch",
        "_fallback",
        "_fb_leases",
        "_held_until",
        "_idle_ms",
        "_in_flight",
        "_key",
        "_keys",
        "_last_contact",
        "_link",
        "_nap",
        "_pending",
        "_pending_limited",
        "_queue",
        "_quiet",
        "_rate",
        "_recovery_us",
        "_redis_cool_end",
        "_redis_in_flight",
        "_resync",
        "_resynced",
        "_settings",
        "_window_us",
    )

    def __init__(
        self, *, key: LimiterKey, rate: RateLimit, link: RedisLink, settings: RedisLimiterSettings
    ) -> None:
        self._link = link
        self._settings = settings
        self._key = key
        self._rate = rate
        self._keys = budget_keys(settings.key_prefix, key)
        self._window_us = max(1, round(rate.window * 1e6))
        self._recovery_us = round(RATE_LIMIT_RECOVERY_WINDOWS * rate.window * 1e6)
        self._idle_ms = idle_ms(rate, settings.inflight_ttl, settings.ticket_grace)
        self._queue = HeadQueue()  # this process's callers; only the head asks Redis
        self._nap: asyncio.Future[None] | None = None  # the head's wait; an outage ends it
        self._in_flight: set[RedisLease] = set()
        # (loop time it stops cooling, lease id) of our released leases, oldest first.
        self._cooling: deque[tuple[float, str]] = deque()
        self._burst = rate.limit
        self._held_until = 0.0  # loop time
        # Redis has yet to hear these: lease id -> (loop time, True: released then;
        # False: forget the id, asked then).
        self._pending: dict[str, tuple[float, bool]] = {}
        self._pending_limited = False
        self._fallback: KeyLimiter | None = None
        self._fb_leases: list[RedisLease] = []  # fallback leases Redis does not know yet
        self._redis_in_flight = 0
        self._redis_cool_end = 0.0
        self._quiet = asyncio.Event()
        # The epoch Redis last reported (id, seq), and when: see _redis_scripts.
        self._epoch: tuple[str, int] = ("", 0)
        self._last_contact = 0.0
        # Losses seen, and up to which one this process's leases are registered again.
        self._resync = 0
        self._resynced = 0
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
        return tuple(self._keys)

    def __repr__(self) -> str:
        mode = "fallback" if self._use_fallback() else "redis"
        return (
            f"<RedisKeyLimiter {self._key} {self._rate.limit}/{self._rate.window:g}s "
            f"{mode} queued={len(self._queue)} in_flight={len(self._in_flight)} "
            f"burst={self._burst}>"
        )

    def snapshot(self) -> LimiterSnapshot:
        now = _loop_time()
        while self._cooling and self._cooling[0][0] <= now:
            self._cooling.popleft()
        burst = self._burst
        if self._use_fallback() and self._fallback is not None:
            burst = self._fallback.snapshot().burst
        return LimiterSnapshot(
            queued=len(self._queue),
            in_flight=len(self._in_flight),
            cooling=len(self._cooling),
            burst=burst,
            held_until=self._held_until if self._held_until > now else None,
        )

    def _use_fallback(self) -> bool:
        return self._settings.fallback_share is not None and self._link.in_outage

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
        elif self._pending or self._fb_leases or self._resync > self._resynced:
            self._flush_soon()

    # -- acquire -------------------------------------------------------------------------

    async def acquire(self, *, deadline: float | None = None) -> RedisLease:
        self._check_open()
        if self._link.in_outage and self._settings.fallback_share is None:
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
        loop = asyncio.get_running_loop()
        lease_id = self._link.new_id()
        ticket = False  # whether Redis holds a ticket under lease_id (no call under way)
        try:
            while True:
                self._check_open()
                now = loop.time()
                if deadline is not None and now >= deadline:
                    raise DeadlineExceededError(f"deadline passed waiting for {self._key}")
                if self._use_fallback():
                    if ticket:
                        self._forget(lease_id)  # sent when Redis is back
                        ticket = False
                        lease_id = self._link.new_id()
                    lease = await self._try_fallback(lease_id, deadline)
                    if lease is not None:
                        return lease
                    continue
                max_wait = -1 if deadline is None else max(0, int((deadline - now) * 1e6))
                ticket = False  # while the call is under way, `_ask` cleans up after it
                try:
                    status, wait_us = await self._ask(lease_id, max_wait)
                except RedisDown as down:
                    # Redis may or may not have run the script: undo it when it answers.
                    self._forget(lease_id)
                    if self._settings.fallback_share is None:
                        raise self._link.unavailable(down) from down.__cause__
                    lease_id = self._link.new_id()
                    continue  # the link is in outage now: the loop turns to the fallback
                if status == GRANTED:
                    lease = RedisLease(lease_id)
                    self._in_flight.add(lease)
                    self._redis_in_flight += 1
                    return lease
                if status == RESYNC:
                    continue  # the next ask carries this process's leases first
                if status == REFUSED:  # the script dropped any ticket
                    raise DeadlineExceededError(
                        f"the next slot of {self._key} frees in {wait_us / 1e6:.3f}s, "
                        "after the deadline"
                    )
                ticket = True
                self._queue.head_try_at = loop.time() + wait_us / 1e6
                self._nap = loop.create_future()
                await asyncio.wait((self._nap,), timeout=wait_us / 1e6)
        except BaseException:
            if ticket:
                # Cancelled or past the deadline while holding a ticket: give it back.
                self._forget(lease_id)
            raise
        finally:
            self._queue.head_try_at = 0.0
            self._nap = None

    async def _ask(self, lease_id: str, max_wait: int) -> tuple[int, int]:
        entries, sent, adopted, resync = self._settle_entries()
        args: list[str | int] = [
            *self._common_args(),
            lease_id,
            self._rate.limit,
            self._rate.limit,
            round(self._settings.ticket_grace * 1e6),
            max_wait,
            self._recovery_us,
            1 if self._pending_limited else 0,
            *entries,
        ]
        limited = self._pending_limited
        task = self._link.spawn(self._link.eval("acquire", self._keys, args))
        try:
            # Shielded: if our caller goes away mid-call, Redis's decision still arrives,
            # and only then is it undone (a clean-up sent earlier could overtake it).
            raw = await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(lambda t: self._abandoned(t, lease_id, limited))
            raise
        status, wait_us, burst, hold_us, *epoch = int_list(raw, 7)
        self._synced(sent, adopted, resync, epoch)
        if limited:
            self._pending_limited = False
        self._learned(burst, hold_us)
        return status, wait_us

    def _abandoned(self, task: asyncio.Task[object], lease_id: str, limited: bool) -> None:
        if limited and not task.cancelled() and task.exception() is None:
            self._pending_limited = False
        if not self._link.closed:
            self._forget(lease_id)

    def _common_args(self) -> list[str | int]:
        now = _loop_time()
        known_id, known_seq = self._epoch
        if now - self._last_contact > self._settings.epoch_ttl:
            known_id, known_seq = "", 0  # the marker may have expired since: not a loss
        return [
            self._window_us,
            round(self._settings.inflight_ttl * 1e6),
            self._idle_ms,
            known_id,
            known_seq,
            self._link.new_epoch_id(),
            math.ceil(self._settings.epoch_ttl * 1000),
        ]

    def _learned(self, burst: int, hold_us: int) -> None:
        self._burst = burst
        if hold_us > 0:
            held = asyncio.get_running_loop().time() + hold_us / 1e6
            self._held_until = max(self._held_until, held)

    def _forget(self, lease_id: str) -> None:
        """Undo whatever Redis holds under `lease_id` (an unused lease or a ticket)."""
        self._pending[lease_id] = (_loop_time(), False)
        if not self._link.in_outage:
            self._flush_soon()

    # -- fallback ------------------------------------------------------------------------

    async def _try_fallback(self, lease_id: str, deadline: float | None) -> RedisLease | None:
        """A lease from the local fallback, or None to look at Redis again.

        The fallback knows nothing of this process's Redis leases, so it grants only once
        they have all been released and have cooled."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        remaining = None if deadline is None else deadline - now
        if self._redis_in_flight > 0:
            self._quiet.clear()
            timeout = self._settings.probe_interval
            if remaining is not None:
                timeout = min(timeout, remaining)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), timeout)
            return None
        if self._redis_cool_end > now:
            if deadline is not None and self._redis_cool_end > deadline:
                raise DeadlineExceededError(
                    f"{self._key} is on its local fallback and cools past the deadline"
                )
            await asyncio.sleep(min(self._redis_cool_end - now, self._settings.probe_interval))
            return None
        fallback = self._fallback_limiter()
        inner = await fallback.acquire(deadline=deadline)
        now = loop.time()
        window = self._rate.window
        self._fb_leases = [
            x for x in self._fb_leases if not x.released or x.released_at + window > now
        ]
        lease = RedisLease(lease_id, inner)
        self._in_flight.add(lease)
        self._fb_leases.append(lease)
        return lease

    def _fallback_limiter(self) -> KeyLimiter:
        if self._fallback is None:
            from ._ratelimit import LocalKeyLimiter

            share = self._settings.fallback_share or 1.0
            limit = max(1, math.floor(self._rate.limit * share))
            rate = RateLimit(limit, self._rate.window, self._rate.scope)
            self._fallback = LocalKeyLimiter(
                self._key, rate, max_pending=self._settings.max_pending
            )
        return self._fallback

    # -- release -------------------------------------------------------------------------

    async def release(self, lease: Lease) -> None:
        """Give a lease back; idempotent. Never raises for Redis trouble: a release Redis
        did not hear is sent again with the next operation on this key, and until then
        the lease counts as in flight there (it lapses after `inflight_ttl` at most)."""
        if not isinstance(lease, RedisLease):
            raise ValueError(f"{lease!r} was not granted by {self!r}")
        if lease.released:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        lease.released = True
        lease.released_at = now
        self._in_flight.discard(lease)
        cooling = self._cooling
        while cooling and cooling[0][0] <= now:
            cooling.popleft()
        cooling.append((now + self._rate.window, lease.lease_id))
        if lease._inner is not None:
            if self._fallback is not None:
                await self._fallback.release(lease._inner)
            if not lease.adopted:
                return  # Redis learns of it on adoption, with its release time
        else:
            self._redis_in_flight -= 1
            self._redis_cool_end = max(self._redis_cool_end, now + self._rate.window)
            if self._redis_in_flight == 0:
                self._quiet.set()
        self._pending[lease.lease_id] = (now, True)
        if not self._link.in_outage:
            try:
                await self._flush()
            except asyncio.CancelledError:
                # The entry stays pending until a flush succeeds: send it from the
                # background (meanwhile Redis counts the lease as in flight: safe).
                self._flush_soon()
                raise

    def _flush_soon(self) -> asyncio.Task[None]:
        return self._link.spawn(self._flush())

    async def _flush(self) -> None:
        """Send every pending settle entry (one round trip); on failure keep them."""
        if self._link.in_outage:
            return
        entries, sent, adopted, resync = self._settle_entries()
        if not entries:
            return
        args: list[str | int] = [*self._common_args(), *entries]
        try:
            raw = await self._link.eval("settle", self._keys, args)
        except RedisDown:
            return  # kept; the next successful operation on this key carries them
        _, *epoch = int_list(raw, 4)
        self._synced(sent, adopted, resync, epoch)

    def _settle_entries(
        self,
    ) -> tuple[list[str | int], dict[str, tuple[float, bool]], list[RedisLease], int]:
        """Pending releases and clean-ups, plus (when Redis is back) the fallback's leases
        Redis must count, plus (after a loss) every lease of ours still live or cooling:
        (id, remaining µs of cooling | -1 in flight | -2 forget) pairs. Also returns
        which loss the entries re-register for (0: none)."""
        now = asyncio.get_running_loop().time()
        entries: list[str | int] = []
        ttl = self._settings.inflight_ttl
        for lease_id, (when, _) in list(self._pending.items()):
            if now - when > ttl:  # Redis has let whatever it was lapse by now
                del self._pending[lease_id]
        sent = dict(self._pending)
        for lease_id, (when, released) in sent.items():
            remaining = self._remaining_us(when, now) if released else SETTLE_CANCEL
            entries += [lease_id, remaining]
        adopted: list[RedisLease] = []
        if self._fb_leases and not self._link.in_outage:
            keep: list[RedisLease] = []
            for lease in self._fb_leases:
                if lease.released and lease.released_at + self._rate.window <= now:
                    continue  # cooled: nothing for Redis to count
                remaining = (
                    self._remaining_us(lease.released_at, now)
                    if lease.released
                    else SETTLE_IN_FLIGHT
                )
                entries += [lease.lease_id, remaining]
                adopted.append(lease)
                keep.append(lease)
            self._fb_leases = keep
        resync = 0
        if self._resync > self._resynced:
            resync = self._resync
            for lease in self._in_flight:
                entries += [lease.lease_id, SETTLE_IN_FLIGHT]
            for until, lease_id in self._cooling:
                if until > now:
                    entries += [lease_id, math.ceil((until - now) * 1e6)]
        return entries, sent, adopted, resync

    def _remaining_us(self, released_at: float, now: float) -> int:
        return max(0, math.ceil((released_at + self._rate.window - now) * 1e6))

    def _synced(
        self,
        sent: dict[str, tuple[float, bool]],
        adopted: list[RedisLease],
        resync: int,
        epoch: list[int],
    ) -> None:
        for lease_id, value in sent.items():
            if lease_id in self._pending and self._pending[lease_id] == value:
                del self._pending[lease_id]
        for lease in adopted:
            was_in_flight = not lease.adopted
            lease.adopted = True
            if lease in self._fb_leases:
                self._fb_leases.remove(lease)
            if lease.released and was_in_flight and lease.lease_id not in self._pending:
                # Released while its adoption (as in flight) was on the way.
                self._pending[lease.lease_id] = (lease.released_at, True)
        epoch_id, seq, lost = epoch
        known_id, known_seq = self._epoch
        if str(epoch_id) == known_id:
            seq = max(seq, known_seq)
        self._epoch = (str(epoch_id), seq)
        self._last_contact = _loop_time()
        if lost:
            self._resync += 1
            logger.warning(
                "Redis limiter %s lost the state of %s; registering this process's %d "
                "live and cooling leases again, the key is held for a window",
                self._link.url,
                self._key,
                len(self._in_flight) + len(self._cooling),
            )
            self._flush_soon()
        elif resync:
            self._resynced = max(self._resynced, resync)

    # -- 50011 ---------------------------------------------------------------------------

    async def on_rate_limited(self) -> None:
        """Hold the key for a window in every process and halve the shared burst. If
        Redis cannot be told, the hold is applied locally (and to the fallback) and sent
        with this key's next acquire."""
        now = asyncio.get_running_loop().time()
        self._held_until = max(self._held_until, now + self._rate.window)
        if self._fallback is not None:
            await self._fallback.on_rate_limited()
        self._pending_limited = True
        if self._link.in_outage:
            return
        await asyncio.shield(self._link.spawn(self._push_limited()))

    async def _push_limited(self) -> None:
        args: list[str | int] = [*self._common_args(), self._rate.limit]
        try:
            raw = await self._link.eval("rate_limited", self._keys, args)
        except RedisDown:
            return  # stays pending
        hold_us, burst, *epoch = int_list(raw, 5)
        self._pending_limited = False
        self._learned(burst, hold_us)
        self._synced({}, [], 0, epoch)
