"""The rate limiter shared by every process and host of one OKX user, kept in Redis.

Same rules as the in-process limiter (`_ratelimit.LocalKeyLimiter`): a request takes a
lease when it is sent, `release` starts the lease's last window, at most `limit` leases
exist at once, a 50011 holds the key for a window and halves the burst (GCRA pacing). Here
the leases, the pacer and the hold live in Redis (or Valkey), so every process of the user
obeys one budget. The backend (this module) owns the connection (`_redis_link.RedisLink`)
and one `_redis_key.RedisKeyLimiter` per key; the scripts and the data layout are in
`_redis_scripts`.
"""

from __future__ import annotations

from collections.abc import Callable

from ._defaults import (
    MAX_PENDING_PER_KEY,
    REDIS_EPOCH_TTL,
    REDIS_FALLBACK_PROBE_INTERVAL,
    REDIS_INFLIGHT_TTL,
    REDIS_KEY_PREFIX,
    REDIS_OPERATION_TIMEOUT,
    REDIS_TICKET_GRACE,
)
from ._errors import ClientClosedError, InvalidInputError
from ._limits import LimiterKey, LimiterSnapshot, RateLimit
from ._redis_key import RedisKeyLimiter, RedisLimiterSettings
from ._redis_lanes import RedisLaneStore
from ._redis_ledger import RedisLease
from ._redis_link import RedisLink
from ._redis_scripts import mask_url

__all__ = [
    "RedisKeyLimiter",
    "RedisLease",
    "RedisLimiterBackend",
    "RedisLimiterSettings",
    "mask_url",
]


def _check_settings(
    *,
    fallback_share: float | None,
    max_pending: int,
    key_prefix: str,
    **positive: float,
) -> None:
    """Raise InvalidInputError for a setting out of its range (every `positive` > 0)."""
    if fallback_share is not None and not 0 < fallback_share <= 1:
        raise InvalidInputError(f"fallback_share must be in (0, 1], got {fallback_share!r}")
    if max_pending < 0:
        raise InvalidInputError(f"max_pending must be >= 0, got {max_pending!r}")
    if not key_prefix or "{" in key_prefix or "}" in key_prefix:
        raise InvalidInputError(f"key_prefix must be non-empty without braces: {key_prefix!r}")
    for name, value in positive.items():
        if not value > 0:
            raise InvalidInputError(f"{name} must be positive, got {value!r}")


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
    `clock`: a test hook. None (the default, and the only setting for production): the
    scripts read Redis's own clock (TIME). A callable returning seconds (any origin, the
    same timeline for every backend on the budget) is sent with every script call
    instead, so a test can replay a timeline on a virtual clock; still one round trip.
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
        clock: Callable[[], float] | None = None,
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "RedisLimiterBackend needs the redis package: pip install 'okx_async[redis]'"
            ) from exc
        _check_settings(
            fallback_share=fallback_share,
            max_pending=max_pending,
            key_prefix=key_prefix,
            operation_timeout=operation_timeout,
            inflight_ttl=inflight_ttl,
            ticket_grace=ticket_grace,
            probe_interval=probe_interval,
            epoch_ttl=epoch_ttl,
        )
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
            clock=clock,
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
    def inflight_ttl(self) -> float:
        """Seconds a lease stays in flight in Redis unless released."""
        return self._settings.inflight_ttl

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
