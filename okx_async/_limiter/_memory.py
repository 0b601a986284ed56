"""The in-process limiter: strict leases plus an optional GCRA pacer, per key.

A request takes a slot when it is sent; `release()` is called when its answer (or error,
or timeout) arrives, and the slot frees one window after that. The server counts the
request somewhere between those two moments, so with at most `limit` slots held no window
at the server can see more than `limit` requests, whatever the network does. A token
bucket cannot promise that: `AsyncLimiter(10, 2)` admits 19 inside one 2 s window.

The rules themselves are in `_rules`; this module keeps their state for one key in one
event loop, and `_refresh` is the one place time-based state (cooled slots, burst
recovery) catches up with the clock.

Waiting is event-driven: each key keeps at most one timer, armed for the next moment a
condition can change (a slot's cooldown ends, the pacer allows, a 50011 hold ends), and
each waiter with a deadline has its own deadline timer. Nothing polls.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import Callable
from math import inf

from .._defaults import MAX_PENDING_PER_KEY, RATE_LIMIT_RECOVERY_WINDOWS
from .._errors import DeadlineExceededError, QueueFullError
from .._limits import Lease, LimiterKey, LimiterSnapshot, RateLimit
from ._rules import (
    Bursts,
    Pacer,
    earliest_grant,
    slot_free_at,
)

__all__ = [
    "LocalKeyLimiter",
    "LocalLimiterBackend",
    "Pacer",
]

# A waiter's future resolves to its lease, or to None when its deadline passed.
_Waiter = tuple["asyncio.Future[_LocalLease | None]", "float | None"]


class _LocalLease:
    """One granted slot. `_released` makes release() idempotent."""

    __slots__ = ("_owner", "_released")

    def __init__(self, owner: LocalKeyLimiter) -> None:
        self._owner = owner
        self._released = False

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"<lease {state} on {self._owner.key}>"


class LocalKeyLimiter:
    """Strict leases for one key, inside one process and one event loop.

    A grant needs: fewer than `limit` slots held (in flight or cooling down), no 50011
    hold, and the pacer's consent. Waiters are served strictly FIFO.

    `burst` (default and maximum `rate.limit`) is how many may go at once before the
    pacer spaces sends `window / limit` apart; each 50011 incident halves it, and it
    doubles back after every RATE_LIMIT_RECOVERY_WINDOWS clean windows. `on_idle(key)`
    is called when nothing is waiting, held or cooling and the burst is whole again.
    Use one limiter from one event loop only.
    """

    __slots__ = (
        "_bursts",
        "_cooling",
        "_handoffs",
        "_in_flight",
        "_key",
        "_limit",
        "_max_pending",
        "_on_idle",
        "_pacer",
        "_queued",
        "_timer",
        "_timer_when",
        "_waiters",
        "_window",
    )

    def __init__(
        self,
        key: LimiterKey,
        rate: RateLimit,
        *,
        burst: int | None = None,
        max_pending: int = MAX_PENDING_PER_KEY,
        on_idle: Callable[[LimiterKey], None] | None = None,
    ) -> None:
        if rate.limit < 1 or not rate.window > 0:
            raise ValueError(f"need limit >= 1 and window > 0, got {rate!r}")
        if max_pending < 0:
            raise ValueError(f"max_pending must be >= 0, got {max_pending!r}")
        self._key = key
        self._limit = rate.limit
        self._window = rate.window
        max_burst = min(max(burst if burst is not None else rate.limit, 1), rate.limit)
        self._pacer = Pacer(rate.window / rate.limit, max_burst)
        recovery = RATE_LIMIT_RECOVERY_WINDOWS * rate.window
        self._bursts = Bursts(max_burst=max_burst, recovery=recovery, pacer=self._pacer)
        self._max_pending = max_pending
        self._on_idle = on_idle
        self._in_flight = 0  # granted, not released (includes grants not yet picked up)
        self._handoffs = 0  # granted to a waiter whose task has not resumed yet
        self._cooling: deque[float] = deque()  # expiry times, ascending; len <= limit
        self._waiters: deque[_Waiter] = deque()  # FIFO; done futures are skipped lazily
        self._queued = 0  # live waiters in `_waiters`
        # Weak, so a closed loop's handle (which references the loop) does not keep the
        # loop alive through `_shared`'s per-loop WeakKeyDictionary.
        self._timer: weakref.ref[asyncio.TimerHandle] | None = None
        self._timer_when = inf

    @property
    def key(self) -> LimiterKey:
        return self._key

    # -- acquire -------------------------------------------------------------------

    async def acquire(self, *, deadline: float | None = None) -> Lease:
        """Take a slot, waiting FIFO; granted strictly before `deadline` (loop time)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if not self._queued and (deadline is None or now < deadline):
            self._refresh(now)
            if (
                self._in_flight + len(self._cooling) < self._limit
                and now >= self._bursts.held_until
                and self._pacer.try_commit(now)
            ):
                self._in_flight += 1
                return _LocalLease(self)
        # The wait path, in this coroutine rather than a helper's: a waiting call keeps
        # its coroutines alive, and each costs memory and garbage-collector scans.
        if self._queued >= self._max_pending:
            raise QueueFullError(
                f"{self._queued} calls already wait for {self._key} (max_pending="
                f"{self._max_pending})"
            )
        if deadline is not None:
            earliest = self._earliest_possible(now, deadline)
            if earliest >= deadline:
                if not self._queued:
                    self._plan_idle(now)  # a fresh key refused at once must still be dropped
                raise DeadlineExceededError(
                    f"no slot for {self._key} before the deadline: the earliest is "
                    f"{earliest - now:.3f} s away, the deadline {deadline - now:.3f} s"
                )
        fut: asyncio.Future[_LocalLease | None] = loop.create_future()
        self._waiters.append((fut, deadline))
        self._queued += 1
        # A slot may be free already (its timer has not run yet): serve the head now.
        self._dispatch(now)
        expiry = None
        if deadline is not None and not fut.done():
            expiry = loop.call_at(deadline, self._expire, fut)
        try:
            lease = await fut
        except asyncio.CancelledError:
            if not fut.done() or fut.cancelled():
                fut.cancel()
                self._queued -= 1
                self._after_leave(loop.time())
            else:
                granted = fut.result()
                if granted is not None:
                    # Granted, but cancelled before it could run: never sent, so the
                    # slot goes straight back (no cooldown) and the next waiter gets it.
                    self._handoffs -= 1
                    self._unsend(granted, loop.time())
            raise
        finally:
            if expiry is not None:
                expiry.cancel()
        if lease is None:
            raise DeadlineExceededError(f"deadline passed while waiting for {self._key}")
        self._handoffs -= 1
        return lease

    def _earliest_possible(self, now: float, deadline: float) -> float:
        """A lower bound on when a newcomer could be granted, assuming every waiter ahead
        leaves. Used to refuse at once a deadline that cannot be met."""
        self._refresh(now)
        # A grant not yet picked up may be cancelled and hand its slot straight back.
        slot = now if self._handoffs else self._slot_at(now)
        pacer, bursts = self._pacer, self._bursts
        paced = pacer.tat - self._handoffs * pacer.interval - bursts.tolerance_by(deadline)
        return earliest_grant(
            slot_at=slot, window=self._window, held_until=bursts.held_until, paced_at=paced, now=now
        )

    def _slot_at(self, now: float) -> float:
        """When the head may take a slot (`inf`: only after an in-flight release)."""
        return slot_free_at(
            limit=self._limit, ahead=0, in_flight=self._in_flight, cooling=self._cooling, now=now
        )

    def _refresh(self, now: float) -> None:
        """Catch time-based state up with `now`: drop cooled slots, recover the burst."""
        cooling = self._cooling
        while cooling and cooling[0] <= now:
            cooling.popleft()
        bursts = self._bursts
        if bursts.burst < bursts.max_burst and now >= bursts.recover_at:
            bursts.refresh(now)

    # -- the event machinery ------------------------------------------------------

    def _can_grant(self, now: float) -> bool:
        return (
            self._slot_at(now) <= now
            and now >= self._bursts.held_until
            and self._pacer.earliest(now) <= now
        )

    def _dispatch(self, now: float) -> None:
        """Grant heads while possible, then arm the timer for the next change."""
        waiters = self._waiters
        if self._queued:
            self._refresh(now)
            while waiters:
                fut, deadline = waiters[0]
                if fut.done():  # cancelled or expired: left already
                    waiters.popleft()
                elif deadline is not None and now >= deadline:
                    waiters.popleft()
                    fut.set_result(None)
                    self._queued -= 1
                elif self._can_grant(now):
                    waiters.popleft()
                    self._pacer.commit(now)
                    self._in_flight += 1
                    self._handoffs += 1
                    self._queued -= 1
                    fut.set_result(_LocalLease(self))
                else:
                    break
            if self._queued:
                self._plan(now)
                return
        waiters.clear()  # only done futures left; drop them (they reference the loop)
        self._plan_idle(now)

    def _plan(self, now: float) -> None:
        """Waiters are blocked: arm the timer for when the head could be granted."""
        slot = self._slot_at(now)
        if slot == inf:
            return  # every slot is in flight: release() plans again
        when = max(slot, self._bursts.held_until, self._pacer.earliest(now))
        self._arm(self._bursts.wake_by(when))

    def _plan_idle(self, now: float) -> None:
        """No waiters: report idleness, or arm the timer for when it will be idle."""
        if self._in_flight:
            return  # release() calls back
        self._refresh(now)
        cooling = self._cooling
        # The pacer needs no check: a key idle for a window has a rested pacer.
        bursts = self._bursts
        idle_at = max(cooling[-1] if cooling else -inf, bursts.held_until, bursts.whole_at())
        if idle_at > now:
            self._arm(idle_at)
        elif self._on_idle is not None:
            self._on_idle(self._key)

    def _arm(self, when: float) -> None:
        ref = self._timer
        if ref is not None:
            handle = ref()
            if handle is not None:
                if self._timer_when <= when:
                    return  # an earlier wake-up re-plans anyway
                handle.cancel()
        handle = asyncio.get_running_loop().call_at(when, self._on_timer, when)
        self._timer = weakref.ref(handle)
        self._timer_when = when

    def _on_timer(self, when: float) -> None:
        self._timer = None
        self._timer_when = inf
        # The loop runs a timer up to its clock resolution early; it counts as on time,
        # else we would re-arm and wait a whole selector tick (1 ms with epoll).
        now = asyncio.get_running_loop().time()
        self._dispatch(when if when > now else now)

    def _expire(self, fut: asyncio.Future[_LocalLease | None]) -> None:
        if not fut.done():
            fut.set_result(None)
            self._queued -= 1
            self._after_leave(asyncio.get_running_loop().time())

    def _after_leave(self, now: float) -> None:
        # Cancelled waiters stay in the deque until they reach the head; rebuild it when
        # they outnumber the live ones so memory stays O(live waiters).
        waiters = self._waiters
        if len(waiters) > 2 * self._queued + 64:
            self._waiters = deque(w for w in waiters if not w[0].done())
        self._dispatch(now)

    def _unsend(self, lease: _LocalLease, now: float) -> None:
        lease._released = True
        self._in_flight -= 1
        self._pacer.uncommit(now)
        self._dispatch(now)

    # -- release, 50011, state -----------------------------------------------------

    async def release(self, lease: Lease) -> None:
        """The request finished; its slot frees one window from now. Idempotent."""
        if not isinstance(lease, _LocalLease) or lease._owner is not self:
            raise ValueError(f"{lease!r} was not granted by {self!r}")
        if lease._released:
            return
        lease._released = True
        now = asyncio.get_running_loop().time()
        self._in_flight -= 1
        expiry = now + self._window
        self._cooling.append(expiry)
        if self._queued:
            self._plan(now)
        elif expiry < self._timer_when:  # else the timer armed already wakes up earlier
            self._arm(expiry)  # to notice idleness

    async def on_rate_limited(self) -> None:
        """OKX said 50011: hold the key a window from now and halve the burst."""
        now = asyncio.get_running_loop().time()
        self._bursts.incident(now, self._window)
        self._dispatch(now)

    def snapshot(self) -> LimiterSnapshot:
        now = _loop_time()
        held_until = self._bursts.held_until
        return LimiterSnapshot(
            queued=self._queued,
            in_flight=self._in_flight,
            cooling=sum(1 for t in self._cooling if t > now),
            burst=self._bursts.burst_at(now),
            held_until=held_until if held_until > now else None,
        )

    def __repr__(self) -> str:
        s = self.snapshot()
        held = "" if s.held_until is None else f" held_until={s.held_until:.3f}"
        return (
            f"<LocalKeyLimiter {self._key} {self._limit}/{self._window:g}s "
            f"burst={s.burst}/{self._bursts.max_burst} in_flight={s.in_flight} "
            f"cooling={s.cooling} queued={s.queued}{held}>"
        )


def _loop_time() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()  # the default loop clock (repr outside a loop)


class LocalLimiterBackend:
    """One LocalKeyLimiter per key for one event loop; idle keys are dropped.

    Callers look the limiter up on every call, so dropping an idle one loses nothing.
    """

    __slots__ = ("__weakref__", "_burst", "_limiters", "_max_pending")

    def __init__(self, *, burst: int | None = None, max_pending: int = MAX_PENDING_PER_KEY) -> None:
        self._burst = burst
        self._max_pending = max_pending
        self._limiters: dict[LimiterKey, LocalKeyLimiter] = {}

    def limiter(self, key: LimiterKey, rate: RateLimit) -> LocalKeyLimiter:
        found = self._limiters.get(key)
        if found is None:
            cell: list[LocalKeyLimiter] = []
            # A weak reference back: a strong one makes backend and limiter a reference
            # cycle, which the cyclic GC frees only on a pass after the one that frees the
            # loop (and with it the loop's entry in `_shared`). On Python 3.12+ a closed
            # loop is itself in a cycle (a cancelled task keeps its CancelledError, whose
            # traceback's frames hold the loop), so a collection left the backend alive.
            owner = weakref.ref(self)

            def on_idle(k: LimiterKey) -> None:
                backend = owner()
                if backend is not None:
                    backend._drop(k, cell[0])

            found = LocalKeyLimiter(
                key,
                rate,
                burst=self._burst,
                max_pending=self._max_pending,
                on_idle=on_idle,
            )
            cell.append(found)
            self._limiters[key] = found
        return found

    def _drop(self, key: LimiterKey, limiter: LocalKeyLimiter) -> None:
        # Only if it is still the registered one: a limiter dropped earlier (and kept by
        # someone) may report idle again after its key got a new limiter.
        if self._limiters.get(key) is limiter:
            del self._limiters[key]

    def __len__(self) -> int:
        return len(self._limiters)

    def __contains__(self, key: object) -> bool:
        return key in self._limiters

    def snapshots(self) -> list[tuple[LimiterKey, LimiterSnapshot]]:
        """Every live key's state (for the slots-in-use metric)."""
        return [(key, limiter.snapshot()) for key, limiter in list(self._limiters.items())]

    async def aclose(self) -> None:
        """Nothing to close: the backend is shared, and limiters drop themselves."""

    def __repr__(self) -> str:
        return f"<LocalLimiterBackend keys={len(self._limiters)}>"
