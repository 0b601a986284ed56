"""The lease rules, written once: pure functions of the state and `now` (no clock, no I/O).

A request takes a slot when it is sent; the slot is held while it is in flight and for
one window after its answer arrives (cooling). The server counts the request somewhere
between those two moments, so with at most `limit` slots held no window at the server
sees more than `limit` requests, whatever the network does.

On top of the slots, a GCRA pacer spaces sends `window / limit` apart once `burst` went
at once. A 50011 incident halves the burst and holds the key for one window; every
RATE_LIMIT_RECOVERY_WINDOWS clean windows after it, the burst doubles back.

The in-process store (`_memory`) and the sqlite store (`_sqlite`) call these; the Redis
store's Lua scripts (`okx_async._redis_scripts`) mirror them.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import inf

__all__ = [
    "Bursts",
    "Pacer",
    "earliest_grant",
    "gcra_allowed_at",
    "gcra_commit",
    "incident",
    "recover",
    "recovered_at",
    "slot_free_at",
]


def slot_free_at(
    *, limit: int, ahead: int, in_flight: int, cooling: Sequence[float], now: float
) -> float:
    """When a waiter with `ahead` waiters before it may take a slot: it needs more than
    `ahead` free slots, so nobody behind overtakes.

    `cooling` holds the expiries still after `now`, ascending. Returns `now` when enough
    are free already, a cooling expiry, or `inf` when it takes an in-flight release (that
    frees one window after the release, at `now + window` at the earliest).
    """
    need = in_flight + len(cooling) - (limit - ahead - 1)
    if need <= 0:
        return now
    if need <= len(cooling):
        t = cooling[need - 1]
        return t if t > now else now
    return inf


def gcra_allowed_at(
    *, tat: float, interval: float, burst: int, now: float, ahead: int = 0
) -> float:
    """GCRA (virtual scheduling): when a send may go, `ahead` sends after the next one.

    `tat` is the theoretical arrival time of the next send; it conforms at
    `tat - (burst - 1) * interval`."""
    t = (tat if tat > now else now) + (ahead - burst + 1) * interval
    return t if t > now else now


def gcra_commit(*, tat: float, interval: float, now: float) -> float:
    """The new `tat` after a send at `now`."""
    return (tat if tat > now else now) + interval


def incident(
    *, burst: int, held_until: float, now: float, window: float, recovery: float
) -> tuple[int, float, float]:
    """A 50011: (burst, held_until, recover_at) after it.

    50011s answering requests sent before the hold are one incident: the burst halves
    once. The hold lasts one window from now; recovery starts over."""
    if now >= held_until:
        burst = max(1, burst // 2)
    return burst, max(held_until, now + window), now + recovery


def recover(
    *, burst: int, max_burst: int, recover_at: float, recovery: float, now: float
) -> tuple[int, float]:
    """(burst, recover_at) at `now`: the burst doubles at each `recover_at` passed, which
    moves on by `recovery` (clean time) each time."""
    while burst < max_burst and now >= recover_at:
        burst = min(burst * 2, max_burst)
        recover_at += recovery
    return burst, recover_at


def recovered_at(*, burst: int, max_burst: int, recover_at: float, recovery: float) -> float:
    """When the burst will be back at its maximum (-inf if it is)."""
    if burst >= max_burst:
        return -inf
    while burst * 2 < max_burst:
        burst *= 2
        recover_at += recovery
    return recover_at


def earliest_grant(
    *,
    slot_at: float,
    window: float,
    held_until: float,
    paced_at: float,
    now: float,
) -> float:
    """A lower bound on when a grant is possible: the last of the slot (an in-flight
    release, `inf`, frees one window from now at the earliest), the hold and the pacer."""
    if slot_at == inf:
        slot_at = now + window
    return max(slot_at, held_until, paced_at, now)


class Pacer:
    """GCRA (virtual scheduling): one send per `interval`, up to `burst` at once.

    `tat` is the theoretical arrival time of the next send; a send at `now` conforms
    when `now >= tat - tolerance`, with tolerance (burst - 1) * interval. Pure: no clock.
    """

    __slots__ = ("_burst", "_interval", "_tat", "_tolerance")

    def __init__(self, interval: float, burst: int = 1) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval!r}")
        self._interval = interval
        self._tat = -inf
        self._burst = 1
        self._tolerance = 0.0
        self.set_burst(burst)

    @property
    def interval(self) -> float:
        return self._interval

    @property
    def burst(self) -> int:
        return self._burst

    @property
    def tat(self) -> float:
        return self._tat

    @property
    def tolerance(self) -> float:
        return self._tolerance

    def set_burst(self, burst: int) -> None:
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self._burst = burst
        self._tolerance = (burst - 1) * self._interval

    def earliest(self, now: float) -> float:
        """When the next send is allowed (`now` if it is allowed already)."""
        return gcra_allowed_at(tat=self._tat, interval=self._interval, burst=self._burst, now=now)

    def try_commit(self, now: float) -> bool:
        """Record a send at `now` if one is allowed: `earliest` and `commit` in one call,
        for the limiter's fast path (so `gcra_allowed_at` and `gcra_commit` inlined)."""
        tat = self._tat
        if tat - self._tolerance > now:
            return False
        self._tat = (tat if tat > now else now) + self._interval
        return True

    def commit(self, now: float) -> None:
        """Record a send at `now`."""
        self._tat = gcra_commit(tat=self._tat, interval=self._interval, now=now)

    def uncommit(self, now: float) -> None:
        """Take back the latest send (granted but never sent).

        Exact when nothing else was committed across an idle gap since; otherwise at
        most one interval lenient. Leases, not the pacer, are what keep OKX safe.
        """
        tat = self._tat - self._interval
        self._tat = tat if tat > now else now

    def __repr__(self) -> str:
        return f"Pacer(interval={self._interval:g}, burst={self._burst}, tat={self._tat:g})"


class Bursts:
    """How many sends may go at once after 50011 incidents, and the hold they impose.

    Each incident halves `burst` (once per hold) and holds the key one window from now
    (`held_until`); every `recovery` seconds without one, the burst doubles back up to
    `max_burst`. The pacer's burst follows. No clock: every method takes `now`.
    """

    __slots__ = ("burst", "held_until", "max_burst", "pacer", "recover_at", "recovery")

    def __init__(self, *, max_burst: int, recovery: float, pacer: Pacer) -> None:
        self.max_burst = max_burst
        self.burst = max_burst
        self.pacer = pacer
        self.held_until = -inf
        self.recover_at = inf
        self.recovery = recovery

    def refresh(self, now: float) -> None:
        """Recover the burst for the clean time passed by `now`."""
        if self.burst < self.max_burst and now >= self.recover_at:
            self.burst, self.recover_at = recover(
                burst=self.burst,
                max_burst=self.max_burst,
                recover_at=self.recover_at,
                recovery=self.recovery,
                now=now,
            )
            self.pacer.set_burst(self.burst)

    def incident(self, now: float, window: float) -> None:
        """OKX answered 50011 at `now`."""
        self.burst, self.held_until, self.recover_at = incident(
            burst=self.burst,
            held_until=self.held_until,
            now=now,
            window=window,
            recovery=self.recovery,
        )
        self.pacer.set_burst(self.burst)

    def burst_at(self, now: float) -> int:
        """The burst at `now`, recoveries due by then counted (without changing state)."""
        return recover(
            burst=self.burst,
            max_burst=self.max_burst,
            recover_at=self.recover_at,
            recovery=self.recovery,
            now=now,
        )[0]

    def wake_by(self, when: float) -> float:
        """When a waiter blocked until `when` should look again: sooner if the burst
        recovers first, since a bigger burst widens the pacer's tolerance."""
        return min(when, self.recover_at) if self.burst < self.max_burst else when

    def whole_at(self) -> float:
        """When the burst will be back at `max_burst` (-inf if it is)."""
        return recovered_at(
            burst=self.burst,
            max_burst=self.max_burst,
            recover_at=self.recover_at,
            recovery=self.recovery,
        )

    def tolerance_by(self, deadline: float) -> float:
        """The pacer's tolerance at its largest before `deadline`: a recovery due by then
        may give back the whole burst."""
        if self.burst < self.max_burst and self.recover_at < deadline:
            return (self.max_burst - 1) * self.pacer.interval
        return self.pacer.tolerance

    def __repr__(self) -> str:
        return (
            f"Bursts(burst={self.burst}/{self.max_burst}, held_until={self.held_until:g}, "
            f"recover_at={self.recover_at:g})"
        )
