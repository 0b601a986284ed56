"""The rate limiter shared by every process and host of one OKX user, kept in Redis.

Same rules as the in-process limiter (`_ratelimit.LocalKeyLimiter`): a request takes a
lease when it is sent, `release` starts the lease's last window, at most `limit` leases
exist at once, a 50011 holds the key for a window and halves the burst (GCRA pacing). Here
the leases, the pacer and the hold live in Redis (or Valkey), so every process of the user
obeys one budget. The scripts and the data layout are in `_redis_scripts`.

Inside one process a local FIFO lets only its head talk to Redis: about one round trip
per acquire and one per release.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import sys
import time
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ._defaults import (
    MAX_PENDING_PER_KEY,
    RATE_LIMIT_RECOVERY_WINDOWS,
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
    LimiterUnavailableError,
    QueueFullError,
)
from ._limits import KeyLimiter, Lease, LimiterKey, LimiterSnapshot, RateLimit
from ._redis_scripts import (
    ACQUIRE_LUA,
    GRANTED,
    RATE_LIMITED_LUA,
    REFUSED,
    SETTLE_CANCEL,
    SETTLE_IN_FLIGHT,
    SETTLE_LUA,
    budget_keys,
    idle_ms,
    int_list,
    mask_url,
    url_secrets,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.commands.core import AsyncScript

__all__ = ["RedisKeyLimiter", "RedisLease", "RedisLimiterBackend", "mask_url"]

logger = logging.getLogger("okx_async.redis")

_T = TypeVar("_T")


def _loop_time() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:  # no loop running (a repr or stats read from sync code)
        return time.monotonic()


_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def _cluster_url(url: str, cluster: bool) -> tuple[str, bool]:
    """The URL for redis-py and whether it names a Redis Cluster: `redis+cluster://`
    and `rediss+cluster://` become `redis://` and `rediss://`."""
    scheme, sep, rest = url.partition("://")
    plain = _CLUSTER_SCHEMES.get(scheme.lower()) if sep else None
    if plain is not None:
        return f"{plain}://{rest}", True
    return url, cluster


def _consume(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


class _RedisDown(Exception):
    """Redis did not answer (in time); `__cause__` is the original error."""


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

    `fallback_share=None` (the default) fails fast: when Redis does not answer within
    `operation_timeout`, `acquire` raises LimiterUnavailableError and nothing is sent.
    With a share (0 < share <= 1) each key falls back to a local limiter allowing
    `max(1, floor(limit * share))` per window (after this process's Redis leases have
    cooled), logs one WARNING per outage, pings Redis every `probe_interval` and goes back
    to it when it answers, first registering the fallback's leases there.

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
    """

    __slots__ = (
        "_acquire_script",
        "_client",
        "_closed",
        "_counter",
        "_fallback_share",
        "_inflight_ttl",
        "_key_prefix",
        "_limiters",
        "_max_pending",
        "_outage_since",
        "_pool_closed",
        "_probe",
        "_probe_interval",
        "_rate_limited_script",
        "_secrets",
        "_settle_script",
        "_tasks",
        "_ticket_grace",
        "_timeout",
        "_token",
        "_url",
    )

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
        cluster: bool = False,
    ) -> None:
        try:
            import redis.asyncio as aioredis
            from redis.asyncio.cluster import RedisCluster
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import RedisClusterException
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
        ):
            if not value > 0:
                raise InvalidInputError(f"{name} must be positive, got {value!r}")
        self._url = mask_url(url)
        self._secrets = url_secrets(url)
        redis_url, cluster = _cluster_url(url, cluster)
        options: dict[str, Any] = {
            "socket_timeout": operation_timeout,
            "socket_connect_timeout": operation_timeout,
            # One immediate retry on a fresh connection (a pooled one may be stale; in a
            # cluster, after refreshing the topology). Each script is idempotent per
            # lease id, so a retry cannot take two slots.
            "retry": Retry(NoBackoff(), 1),
        }
        try:
            client: Redis | RedisCluster
            if cluster:
                client = RedisCluster.from_url(redis_url, **options)
            else:
                client = aioredis.Redis.from_url(redis_url, **options)
        except (ValueError, TypeError, RedisClusterException) as exc:
            raise InvalidInputError(
                f"invalid Redis URL {self._url}: {self._scrub(str(exc))}"
            ) from None
        self._client = client
        self._acquire_script: AsyncScript = client.register_script(ACQUIRE_LUA)
        self._settle_script: AsyncScript = client.register_script(SETTLE_LUA)
        self._rate_limited_script: AsyncScript = client.register_script(RATE_LIMITED_LUA)
        self._fallback_share = fallback_share
        self._max_pending = max_pending
        self._key_prefix = key_prefix
        self._timeout = operation_timeout
        self._inflight_ttl = inflight_ttl
        self._ticket_grace = ticket_grace
        self._probe_interval = probe_interval
        self._limiters: dict[tuple[LimiterKey, RateLimit], RedisKeyLimiter] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._outage_since: float | None = None
        self._probe: asyncio.Task[None] | None = None
        self._closed = False
        self._pool_closed = False
        self._token = secrets.token_hex(6)  # this backend's lease ids: <token>:<counter>
        self._counter = 0

    def __repr__(self) -> str:
        mode = "fail fast" if self._fallback_share is None else f"fallback {self._fallback_share}"
        state = "closed" if self._closed else "outage" if self._outage_since else "ok"
        return (
            f"<RedisLimiterBackend {self._url} prefix={self._key_prefix!r} {mode} "
            f"keys={len(self._limiters)} {state}>"
        )

    async def __aenter__(self) -> RedisLimiterBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def url(self) -> str:
        """The Redis URL with its password masked."""
        return self._url

    @property
    def fallback_share(self) -> float | None:
        return self._fallback_share

    @property
    def in_outage(self) -> bool:
        """Whether the last Redis operation failed (and no later one succeeded)."""
        return self._outage_since is not None

    def limiter(self, key: LimiterKey, rate: RateLimit) -> RedisKeyLimiter:
        if self._closed:
            raise ClientClosedError("the Redis limiter backend is closed")
        limiter = self._limiters.get((key, rate))
        if limiter is None:
            if rate.limit < 1 or not rate.window > 0:
                raise InvalidInputError(f"invalid rate limit {rate!r}")
            if not self._inflight_ttl > rate.window:
                raise InvalidInputError(
                    f"inflight_ttl ({self._inflight_ttl}s) must exceed the window ({rate.window}s)"
                )
            limiter = RedisKeyLimiter(self, key, rate)
            self._limiters[(key, rate)] = limiter
        return limiter

    async def aclose(self) -> None:
        """Stop taking calls, let pending clean-ups finish (bounded), close the pool."""
        if self._closed:
            return
        self._closed = True
        if self._probe is not None:
            self._probe.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self._timeout)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._probe is not None:
            await asyncio.gather(self._probe, return_exceptions=True)
            self._probe = None
        self._pool_closed = True
        await self._client.aclose()

    # -- internals -----------------------------------------------------------------------

    def _new_id(self) -> str:
        self._counter += 1
        return f"{self._token}:{self._counter}"

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _spawn(self, coro: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_consume)
        return task

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("the Redis limiter backend is closed")

    def _unavailable(self, down: _RedisDown) -> LimiterUnavailableError:
        cause = down.__cause__
        what = type(cause).__name__ if cause is not None else "error"
        text = self._scrub(str(cause)) if cause is not None else ""
        return LimiterUnavailableError(
            f"the Redis limiter at {self._url} did not answer ({what}: {text}); nothing was sent"
        )

    def _use_fallback(self) -> bool:
        return self._fallback_share is not None and self._outage_since is not None

    def _failed(self, exc: BaseException) -> None:
        if self._outage_since is not None:
            return
        self._outage_since = asyncio.get_running_loop().time()
        text = self._scrub(f"{type(exc).__name__}: {exc}")
        if self._fallback_share is None:
            logger.warning("Redis limiter %s unreachable (%s); failing fast", self._url, text)
            return
        logger.warning(
            "Redis limiter %s unreachable (%s); falling back to local limiters with %g of "
            "each budget until it answers again",
            self._url,
            text,
            self._fallback_share,
        )
        if not self._closed and (self._probe is None or self._probe.done()):
            self._probe = asyncio.ensure_future(self._probe_loop())

    def _answered(self) -> None:
        if self._outage_since is None:
            return
        down_for = asyncio.get_running_loop().time() - self._outage_since
        self._outage_since = None
        logger.info("Redis limiter %s answers again after %.1fs", self._url, down_for)

    async def _probe_loop(self) -> None:
        while self._outage_since is not None and not self._closed:
            await asyncio.sleep(self._probe_interval)
            try:
                await asyncio.wait_for(self._client.ping(), self._timeout)
            except Exception:  # see _eval
                continue
            self._answered()

    async def _run_script(
        self, script: AsyncScript, keys: list[str], args: list[str | int]
    ) -> object:
        # A cluster client routes a keyed command by slot only once its slot map is loaded:
        # a call made before then (redis-py gives it no default node, so no slot) goes to
        # a random master and gets MOVED, and after a few MOVEDs redis-py closes every
        # connection, including ones other calls are using (AttributeError on a None
        # writer in redis-py 8, unclosed sockets in 7). So load the map first: initialize()
        # does it once under redis-py's lock, and is a flag check after that (a no-op for a
        # plain client).
        await self._client.initialize()
        return await script(keys=keys, args=args)

    async def _eval(self, script: AsyncScript, keys: list[str], args: list[str | int]) -> object:
        if self._pool_closed:
            raise _RedisDown from ClientClosedError("the Redis limiter backend is closed")
        try:
            if sys.version_info >= (3, 11):  # no extra task, unlike wait_for
                async with asyncio.timeout(self._timeout):
                    raw: object = await self._run_script(script, keys, args)
            else:
                # Not wait_for: on 3.10 it waits for the call it cancels to end, and redis-py's
                # read timeout (async_timeout, due at the same moment) can take that
                # cancellation for its own timeout and retry, so the caller waited for every
                # retry. Wait at most the timeout; a late call is cancelled and ends alone.
                call = self._spawn(self._run_script(script, keys, args))
                try:
                    done, _ = await asyncio.wait({call}, timeout=self._timeout)
                finally:
                    call.cancel()
                if not done:
                    raise asyncio.TimeoutError
                raw = call.result()
        except Exception as exc:
            # Not only RedisError, OSError and timeouts: redis-py's cluster client also
            # fails with AttributeError when a topology refresh (after one command's
            # timeout) closes a connection under another running command (redis-py 8.1).
            # To the limiter, any failure of the call means Redis gave no answer.
            self._failed(exc)
            raise _RedisDown from exc
        self._answered()
        return raw


class RedisKeyLimiter:
    """The budget of one key, kept in Redis (rules above; what Redis decides: `_redis_scripts`).

    `snapshot()` uses what this process knows: its own queued callers and leases in
    flight, its own released leases still cooling (other processes' are not counted), and
    the burst and hold Redis reported at the last contact.
    """

    __slots__ = (
        "_backend",
        "_burst",
        "_cooling",
        "_fallback",
        "_fb_leases",
        "_head_try_at",
        "_held_until",
        "_idle_ms",
        "_in_flight",
        "_key",
        "_keys",
        "_pending",
        "_pending_limited",
        "_quiet",
        "_rate",
        "_recovery_us",
        "_redis_cool_end",
        "_redis_in_flight",
        "_waiters",
        "_window_us",
    )

    def __init__(self, backend: RedisLimiterBackend, key: LimiterKey, rate: RateLimit) -> None:
        self._backend = backend
        self._key = key
        self._rate = rate
        self._keys = budget_keys(backend._key_prefix, key)
        self._window_us = max(1, round(rate.window * 1e6))
        self._recovery_us = round(RATE_LIMIT_RECOVERY_WINDOWS * rate.window * 1e6)
        self._idle_ms = idle_ms(rate, backend._inflight_ttl, backend._ticket_grace)
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._head_try_at = 0.0  # loop time the head waits for; nobody behind is earlier
        self._in_flight: set[RedisLease] = set()
        self._cooling: deque[float] = deque()  # loop times our released leases stop cooling
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

    @property
    def key(self) -> LimiterKey:
        return self._key

    @property
    def rate(self) -> RateLimit:
        return self._rate

    @property
    def redis_keys(self) -> tuple[str, ...]:
        """The Redis keys of this budget: leases, queue, beats, state."""
        return tuple(self._keys)

    def __repr__(self) -> str:
        mode = "fallback" if self._backend._use_fallback() else "redis"
        return (
            f"<RedisKeyLimiter {self._key} {self._rate.limit}/{self._rate.window:g}s "
            f"{mode} queued={len(self._waiters)} in_flight={len(self._in_flight)} "
            f"burst={self._burst}>"
        )

    def snapshot(self) -> LimiterSnapshot:
        now = _loop_time()
        while self._cooling and self._cooling[0] <= now:
            self._cooling.popleft()
        burst = self._burst
        if self._backend._use_fallback() and self._fallback is not None:
            burst = self._fallback.snapshot().burst
        return LimiterSnapshot(
            queued=len(self._waiters),
            in_flight=len(self._in_flight),
            cooling=len(self._cooling),
            burst=burst,
            held_until=self._held_until if self._held_until > now else None,
        )

    # -- acquire -------------------------------------------------------------------------

    async def acquire(self, *, deadline: float | None = None) -> RedisLease:
        self._backend._check_open()
        loop = asyncio.get_running_loop()
        if deadline is not None and loop.time() >= deadline:
            raise DeadlineExceededError(f"deadline passed before asking for a slot of {self._key}")
        if self._waiters and deadline is not None and deadline <= self._head_try_at:
            raise DeadlineExceededError(
                f"the caller ahead waits for {self._key} until past the deadline"
            )
        # The head (talking to Redis) does not count: `max_pending` callers may wait.
        if len(self._waiters) > self._backend._max_pending:
            raise QueueFullError(
                f"{len(self._waiters) - 1} calls already wait for {self._key} "
                f"(max_pending={self._backend._max_pending})"
            )
        turn: asyncio.Future[None] = loop.create_future()
        self._waiters.append(turn)
        if len(self._waiters) == 1:
            turn.set_result(None)
        try:
            if not turn.done():
                timeout = None if deadline is None else deadline - loop.time()
                await asyncio.wait((turn,), timeout=timeout)
                if not turn.done():
                    raise DeadlineExceededError(
                        f"deadline passed while queued locally for {self._key}"
                    )
            return await self._acquire_as_head(deadline)
        finally:
            self._leave(turn)

    def _leave(self, turn: asyncio.Future[None]) -> None:
        if self._waiters and self._waiters[0] is turn:
            self._waiters.popleft()
            if self._waiters:
                self._waiters[0].set_result(None)
        else:
            self._waiters.remove(turn)

    async def _acquire_as_head(self, deadline: float | None) -> RedisLease:
        backend = self._backend
        loop = asyncio.get_running_loop()
        lease_id = backend._new_id()
        ticket = False  # whether Redis holds a ticket under lease_id (no call under way)
        try:
            while True:
                backend._check_open()
                now = loop.time()
                if deadline is not None and now >= deadline:
                    raise DeadlineExceededError(f"deadline passed waiting for {self._key}")
                if backend._use_fallback():
                    lease = await self._try_fallback(lease_id, deadline)
                    if lease is not None:
                        return lease
                    continue
                max_wait = -1 if deadline is None else max(0, int((deadline - now) * 1e6))
                ticket = False  # while the call is under way, `_ask` cleans up after it
                try:
                    status, wait_us = await self._ask(lease_id, max_wait)
                except _RedisDown as down:
                    # Redis may or may not have run the script: undo it when it answers.
                    self._forget(lease_id)
                    if backend._fallback_share is None:
                        raise backend._unavailable(down) from down.__cause__
                    lease_id = backend._new_id()
                    continue  # the backend is in outage now: the loop turns to the fallback
                if status == GRANTED:
                    lease = RedisLease(lease_id)
                    self._in_flight.add(lease)
                    self._redis_in_flight += 1
                    return lease
                if status == REFUSED:  # the script dropped any ticket
                    raise DeadlineExceededError(
                        f"the next slot of {self._key} frees in {wait_us / 1e6:.3f}s, "
                        "after the deadline"
                    )
                ticket = True
                self._head_try_at = loop.time() + wait_us / 1e6
                await asyncio.sleep(wait_us / 1e6)
        except BaseException:
            if ticket:
                # Cancelled or past the deadline while holding a ticket: give it back.
                self._forget(lease_id)
            raise
        finally:
            self._head_try_at = 0.0

    async def _ask(self, lease_id: str, max_wait: int) -> tuple[int, int]:
        entries, sent, adopted = self._settle_entries()
        args: list[str | int] = [
            *self._common_args(),
            lease_id,
            self._rate.limit,
            self._rate.limit,
            round(self._backend._ticket_grace * 1e6),
            max_wait,
            self._recovery_us,
            1 if self._pending_limited else 0,
            *entries,
        ]
        limited = self._pending_limited
        task = self._backend._spawn(
            self._backend._eval(self._backend._acquire_script, self._keys, args)
        )
        try:
            # Shielded: if our caller goes away mid-call, Redis's decision still arrives,
            # and only then is it undone (a clean-up sent earlier could overtake it).
            raw = await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(lambda t: self._abandoned(t, lease_id, limited))
            raise
        status, wait_us, burst, hold_us = int_list(raw, 4)
        self._synced(sent, adopted)
        if limited:
            self._pending_limited = False
        self._learned(burst, hold_us)
        return status, wait_us

    def _abandoned(self, task: asyncio.Task[object], lease_id: str, limited: bool) -> None:
        if limited and not task.cancelled() and task.exception() is None:
            self._pending_limited = False
        if not self._backend._pool_closed:
            self._forget(lease_id)

    def _common_args(self) -> list[str | int]:
        return [self._window_us, round(self._backend._inflight_ttl * 1e6), self._idle_ms]

    def _learned(self, burst: int, hold_us: int) -> None:
        self._burst = burst
        if hold_us > 0:
            held = asyncio.get_running_loop().time() + hold_us / 1e6
            self._held_until = max(self._held_until, held)

    def _forget(self, lease_id: str) -> None:
        """Undo whatever Redis holds under `lease_id` (an unused lease or a ticket)."""
        self._pending[lease_id] = (_loop_time(), False)
        if not self._backend._use_fallback():
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
            timeout = self._backend._probe_interval
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
            await asyncio.sleep(min(self._redis_cool_end - now, self._backend._probe_interval))
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

            share = self._backend._fallback_share or 1.0
            limit = max(1, math.floor(self._rate.limit * share))
            rate = RateLimit(limit, self._rate.window, self._rate.scope)
            self._fallback = LocalKeyLimiter(
                self._key, rate, max_pending=self._backend._max_pending
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
        while cooling and cooling[0] <= now:
            cooling.popleft()
        cooling.append(now + self._rate.window)
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
        if not self._backend._use_fallback():
            try:
                await self._flush()
            except asyncio.CancelledError:
                # The entry stays pending until a flush succeeds: send it from the
                # background (meanwhile Redis counts the lease as in flight: safe).
                self._flush_soon()
                raise

    def _flush_soon(self) -> asyncio.Task[None]:
        return self._backend._spawn(self._flush())

    async def _flush(self) -> None:
        """Send every pending settle entry (one round trip); on failure keep them."""
        if self._backend._use_fallback():
            return
        entries, sent, adopted = self._settle_entries()
        if not entries:
            return
        args: list[str | int] = [*self._common_args(), *entries]
        try:
            await self._backend._eval(self._backend._settle_script, self._keys, args)
        except _RedisDown:
            return  # kept; the next successful operation on this key carries them
        self._synced(sent, adopted)

    def _settle_entries(
        self,
    ) -> tuple[list[str | int], dict[str, tuple[float, bool]], list[RedisLease]]:
        """Pending releases and clean-ups, plus (when Redis is back) the fallback's leases
        Redis must count: (id, remaining µs of cooling | -1 in flight | -2 forget) pairs."""
        now = asyncio.get_running_loop().time()
        entries: list[str | int] = []
        ttl = self._backend._inflight_ttl
        for lease_id, (when, _) in list(self._pending.items()):
            if now - when > ttl:  # Redis has let whatever it was lapse by now
                del self._pending[lease_id]
        sent = dict(self._pending)
        for lease_id, (when, released) in sent.items():
            remaining = self._remaining_us(when, now) if released else SETTLE_CANCEL
            entries += [lease_id, remaining]
        adopted: list[RedisLease] = []
        if self._fb_leases and not self._backend._use_fallback():
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
        return entries, sent, adopted

    def _remaining_us(self, released_at: float, now: float) -> int:
        return max(0, math.ceil((released_at + self._rate.window - now) * 1e6))

    def _synced(self, sent: dict[str, tuple[float, bool]], adopted: list[RedisLease]) -> None:
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
        if self._backend._use_fallback():
            return
        await asyncio.shield(self._backend._spawn(self._push_limited()))

    async def _push_limited(self) -> None:
        args: list[str | int] = [*self._common_args(), self._rate.limit]
        try:
            raw = await self._backend._eval(self._backend._rate_limited_script, self._keys, args)
        except _RedisDown:
            return  # stays pending
        hold_us, burst = int_list(raw, 2)
        self._pending_limited = False
        self._learned(burst, hold_us)
