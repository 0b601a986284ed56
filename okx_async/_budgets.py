"""Budgets: whose rate-limit budget each request spends, and the store that keeps them.

A client's store comes from its options (`limiter`, `limiter_url` / `redis_url`, the
environment), else it is the event loop's in-process store, found on first use. Each
path's `LimiterKey` is remembered once it is final: per host for the endpoints OKX
limits per IP, per User ID for the others (see `_identity`). The User ID is given
(`user_id=`) or learned by one lookup shared by the client's callers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ._defaults import ACCOUNT_CONFIG_PATH
from ._identity import cold_start_key, host_key, user_key
from ._limiter._urls import client_backend
from ._limits import ENDPOINT_LIMITS, KeyLimiter, LimiterBackend, LimiterKey, RateLimit

if TYPE_CHECKING:
    from ._lane_store import LaneStoreBase
    from ._options import ClientOptions
    from ._shared import LoopShared
    from ._telemetry import ClientMetrics

__all__ = ["Budgets"]


class Budgets:
    """The limiter keys of one client and the store (`backend`) that paces them."""

    __slots__ = (
        "_base_url",
        "_demo",
        "_loop_local",
        "_metrics",
        "_uid_lookup",
        "backend",
        "keys",
        "owns_backend",
        "uid",
    )

    def __init__(self, *, options: ClientOptions, metrics: ClientMetrics | None) -> None:
        """Raises InvalidInputError for a bad store option (see `client_backend`)."""
        self._base_url = options.base_url
        self._demo = options.demo
        self._metrics = metrics
        self.uid = options.user_id  # OKX's User ID, once given or learned
        self._uid_lookup: asyncio.Future[str] | None = None
        self.keys: dict[str, LimiterKey] = {}  # per path, once the key is final
        # None: the loop's shared in-process backend, found on first use.
        self.backend: LimiterBackend | None
        self.backend, self.owns_backend = client_backend(
            limiter_url=options.limiter_url,
            redis_url=options.redis_url,
            limiter=options.limiter,
            redis_fallback_share=options.redis_fallback_share,
            longest_hold=options.request_timeout + options.landing_horizon,
        )
        # No store of its own: each loop's in-process store, found by `bind_loop`.
        self._loop_local = self.backend is None
        if metrics is not None and self.backend is not None:
            metrics.watch(self.backend)

    def __repr__(self) -> str:
        store = "the loop's in-process store" if self.backend is None else repr(self.backend)
        return f"Budgets(user_id={self.uid!r}, {store}, keys={len(self.keys)})"

    async def user_id(self, lookup: Callable[[], Awaitable[str]]) -> str:
        """The User ID that keys limits and lanes: `lookup()` (one account/config call)
        runs once for all callers, and again only after it failed or was cancelled."""
        if self.uid is not None:
            return self.uid
        task = self._uid_lookup
        # (A lookup on a loop that is gone would never finish on this one.)
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            task = self._uid_lookup = asyncio.ensure_future(lookup())
            task.add_done_callback(self._lookup_done)
        return await asyncio.shield(task)

    def _lookup_done(self, lookup: asyncio.Future[str]) -> None:
        if lookup.cancelled() or lookup.exception() is not None:
            self._uid_lookup = None  # let the next call try again

    def lane_store(self) -> LaneStoreBase | None:
        """Ordering shared with other processes, where the store offers it (sqlite, Redis)."""
        make_lanes = getattr(self.backend, "lane_store", None)
        return make_lanes() if make_lanes else None

    def known_key(self, path: str) -> LimiterKey | None:
        """The budget `path` spends now, or None while it waits for the User ID; a final
        key (per host, or per User ID) is remembered."""
        if ENDPOINT_LIMITS[path].scope == "ip":
            key = self.keys[path] = host_key(self._base_url, path)
        elif self.uid is not None:
            key = self.keys[path] = user_key(self._demo, self.uid, path)
        elif path == ACCOUNT_CONFIG_PATH:  # the User ID lookup itself: the cold-start budget
            return cold_start_key(self._demo, self._base_url, path)
        else:
            return None
        return key

    def user_key(self, path: str, uid: str) -> LimiterKey:
        key = self.keys[path] = user_key(self._demo, uid, path)
        return key

    def limiter(self, key: LimiterKey, rate: RateLimit) -> KeyLimiter:
        """The limiter of `key` in the store; the attempt loop has called `bind_loop` for
        the running loop first (a client without a store of its own spends that loop's)."""
        backend = self.backend
        assert backend is not None, "bind_loop() comes first"
        return backend.limiter(key, rate)

    def bind_loop(self, shared: LoopShared) -> None:
        """The client now runs on the loop of `shared`: without a store of its own, it
        spends that loop's in-process store from now on (futures cannot cross loops, and
        every client of the user on this loop spends that one)."""
        if not self._loop_local:
            return
        backend = self.backend = shared.local_limiter()
        if self._metrics is not None:
            self._metrics.watch(backend)

    async def aclose(self) -> None:
        """Close the store if the client opened it from a URL; a shared one stays open."""
        if self.owns_backend and self.backend is not None:
            await self.backend.aclose()
