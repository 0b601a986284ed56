"""What the clients on one event loop share: one `LoopShared` per loop.

Futures, timers and connections belong to the loop that made them, so each loop has its
own set of the shared parts: the lanes of `_ordering` (one per user and currency), a
`ServerClock` per host, the in-process limiter store (`memory://`) and the connection
pools of `_pool`. Every client on the loop uses the same ones: one order per currency,
one clock sync per host, one budget per user, one connection cap.

`for_loop(loop)` is the one accessor, with one caching rule:

- one `LoopShared` per loop, in a WeakKeyDictionary keyed by the loop: a loop that is
  garbage collected takes its entry with it;
- when a loop asks for the first time, the entries of closed loops are dropped. A loop
  closed without finalizing its async generators leaves pools whose sessions keep it
  alive, and nothing can use or close them now.

A second loop (a second `asyncio.run`, or a loop in another thread) gets its own
`LoopShared`; nothing crosses loops. That is harmless for lanes, clocks and pools, but it
splits the in-process limiter's budget: if another loop that is still running (another
thread) already uses the in-process store, a warning is logged, once per process, when
the second one starts using its own.

The accessors of the parts (`lanes_for_running_loop`, `shared_clock`,
`default_local_backend`, `acquire_pool`) are for callers that look them up once per loop
and keep the result: each is a dictionary lookup keyed by a weak reference.
"""

from __future__ import annotations

import asyncio
import logging
from weakref import WeakKeyDictionary

from ._clock import ServerClock
from ._limiter._memory import LocalLimiterBackend
from ._ordering import LaneRegistry
from ._pool import LoopPools, NetworkSettings, Pool

__all__ = [
    "LoopShared",
    "acquire_pool",
    "default_local_backend",
    "for_loop",
    "lanes_for_running_loop",
    "shared_clock",
]

logger = logging.getLogger("okx_async")


class LoopShared:
    """The parts every client on one event loop shares. It holds no reference to its
    loop itself (only the pools' sessions do, once made), so an unused entry never keeps
    a loop alive.

    - `lanes`: the `LaneRegistry` of per-currency lanes (keys: mode, User ID, ccy);
    - `pools`: the `LoopPools` of connection pools, by network settings;
    - `clock(base_url)`: the `ServerClock` of that host, made on first use;
    - `local_limiter()`: the in-process `LocalLimiterBackend`, made on first use.
    """

    __slots__ = ("_clocks", "_limiter", "lanes", "pools")

    def __init__(self) -> None:
        self.lanes = LaneRegistry()
        self.pools = LoopPools()
        self._clocks: dict[str, ServerClock] = {}
        self._limiter: LocalLimiterBackend | None = None

    def clock(self, base_url: str) -> ServerClock:
        """One clock per host: hundreds of clients sync once, not once each (public/time
        allows only 10 requests per 2 s per IP)."""
        clock = self._clocks.get(base_url)
        if clock is None:
            clock = self._clocks[base_url] = ServerClock()
        return clock

    def local_limiter(self) -> LocalLimiterBackend:
        """The in-process store of this loop; the first use may warn (see the module)."""
        limiter = self._limiter
        if limiter is None:
            _warn_if_budget_splits(self)
            limiter = self._limiter = LocalLimiterBackend()
        return limiter

    def __repr__(self) -> str:
        limiter = "none" if self._limiter is None else f"keys={len(self._limiter)}"
        return (
            f"<LoopShared lanes={len(self.lanes)} clocks={len(self._clocks)} "
            f"pools={len(self.pools.pools)} local_limiter={limiter}>"
        )


_LOOPS: WeakKeyDictionary[asyncio.AbstractEventLoop, LoopShared] = WeakKeyDictionary()


def for_loop(loop: asyncio.AbstractEventLoop) -> LoopShared:
    """The shared parts of `loop` (made on its first call; see the module for the rule)."""
    shared = _LOOPS.get(loop)
    if shared is None:
        # keyrefs() copies the keys at once: another thread's loop may register meanwhile.
        for ref in _LOOPS.keyrefs():
            other = ref()
            if other is not None and other.is_closed():
                _LOOPS.pop(other, None)
        shared = _LOOPS[loop] = LoopShared()
    return shared


_WARNED_SECOND_LOOP = False  # once per process


def _warn_if_budget_splits(new: LoopShared) -> None:
    global _WARNED_SECOND_LOOP
    if _WARNED_SECOND_LOOP:
        return
    for ref in _LOOPS.keyrefs():
        other = ref()
        if other is None or not other.is_running():
            continue
        shared = _LOOPS.get(other)
        if shared is not None and shared is not new and shared._limiter is not None:
            _WARNED_SECOND_LOOP = True
            logger.warning(
                "a second running event loop uses the in-process (memory://) limiter: each "
                "loop keeps its own budget, so clients of one user on both can exceed OKX's "
                "limit; share one with limiter_url='sqlite:///ABSOLUTE/PATH' (or Redis)"
            )
            return


def lanes_for_running_loop() -> LaneRegistry:
    """The running loop's lanes: every client of a user in this loop shares them."""
    return for_loop(asyncio.get_running_loop()).lanes


def shared_clock(base_url: str) -> ServerClock:
    """The running loop's clock for the host of `base_url`."""
    return for_loop(asyncio.get_running_loop()).clock(base_url)


def default_local_backend() -> LocalLimiterBackend:
    """The running loop's in-process limiter store, shared by every client on it that
    was given no other (futures cannot cross loops, so there is one per loop)."""
    return for_loop(asyncio.get_running_loop()).local_limiter()


async def acquire_pool(loop: asyncio.AbstractEventLoop, settings: NetworkSettings) -> Pool:
    """The pool of `loop` (the running one) for `settings`, with one more user: what a
    client's `Transport` is given as `pools=` (an `_pool.AcquirePool`)."""
    return await for_loop(loop).pools.acquire(loop, settings)
