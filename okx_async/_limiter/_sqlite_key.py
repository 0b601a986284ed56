"""The sqlite store's per-key limiter: this process's FIFO, leases and waits for one
budget of the file (the file: `_sqlite`; the rows' transactions: `_sqlite_rows`).

A caller that has to wait takes a ticket; inside one process only the head of a key's
local FIFO asks the file for a slot, needing more free slots than there are older
tickets. It is answered "granted" or the exact time to try again (a cooling lease's
expiry, the hold's end, the pacer's time, or one window from now while every slot is in
flight) and sleeps until then, woken early when a lease of this process is released.
Nothing polls.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from math import inf
from typing import TYPE_CHECKING

from .._errors import DeadlineExceededError, LimiterUnavailableError
from .._limits import Lease, LimiterKey, LimiterSnapshot, RateLimit
from ._queue import HeadQueue
from ._sqlite_rows import GRANTED, REFUSED, BudgetRows

if TYPE_CHECKING:
    import sqlite3

    from ._sqlite import SqliteLimiterBackend

__all__ = ["SqliteKeyLimiter", "SqliteLease"]

logger = logging.getLogger("okx_async.sqlite")


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class SqliteLease:
    """One granted slot; `release()` it once the request's answer (or error) arrived.
    `granted_at`: the grant's time on the store's wall clock (seconds)."""

    __slots__ = ("_owner", "granted_at", "lease_id", "released")

    def __init__(self, owner: SqliteKeyLimiter, lease_id: str, granted_at: float) -> None:
        self._owner = owner
        self.lease_id = lease_id
        self.granted_at = granted_at
        self.released = False

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"<SqliteLease {self.lease_id} {state} on {self._owner.key}>"


class SqliteKeyLimiter:
    """The budget of one key in the sqlite file (rules: `_rules`; layout: `_sqlite_rows`).

    `snapshot()` reports what this process knows: its queued callers, its leases in
    flight and cooling, and the burst and hold read at its last transaction.
    """

    __slots__ = (
        "_backend",
        "_burst",
        "_cooling",
        "_held_until",
        "_key",
        "_live",
        "_name",
        "_queue",
        "_rate",
        "_rows",
        "_wake",
    )

    def __init__(self, backend: SqliteLimiterBackend, key: LimiterKey, rate: RateLimit) -> None:
        if rate.limit < 1 or not rate.window > 0:
            raise ValueError(f"need limit >= 1 and window > 0, got {rate!r}")
        self._backend = backend
        self._key = key
        self._name = str(key)
        self._rate = rate
        self._rows = BudgetRows(self._name, rate, backend._settings)
        self._queue = HeadQueue()  # this process's callers; only the head asks the file
        self._live: set[str] = set()  # lease ids in flight
        self._cooling: deque[tuple[float, float, str]] = deque()  # (loop, wall expiry, id)
        self._burst = rate.limit
        self._held_until = -inf  # loop time
        self._wake: asyncio.Future[None] | None = None

    @property
    def key(self) -> LimiterKey:
        return self._key

    @property
    def rate(self) -> RateLimit:
        return self._rate

    def __repr__(self) -> str:
        s = self.snapshot()
        return (
            f"<SqliteKeyLimiter {self._key} {self._rate.limit}/{self._rate.window:g}s "
            f"burst={s.burst} in_flight={s.in_flight} cooling={s.cooling} queued={s.queued}>"
        )

    def snapshot(self) -> LimiterSnapshot:
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:
            now = time.monotonic()
        cooling = self._cooling
        while cooling and cooling[0][0] <= now:
            cooling.popleft()
        return LimiterSnapshot(
            queued=len(self._queue),
            in_flight=len(self._live),
            cooling=len(cooling),
            burst=self._burst,
            held_until=self._held_until if self._held_until > now else None,
        )

    # -- acquire -------------------------------------------------------------------

    async def acquire(self, *, deadline: float | None = None) -> SqliteLease:
        """Wait FIFO (across processes) for a slot, granted strictly before `deadline`
        (loop time). Raises DeadlineExceededError, QueueFullError, or
        LimiterUnavailableError when the file cannot be used."""
        loop = asyncio.get_running_loop()
        queue = self._queue
        turn = queue.join(
            loop, key=self._key, deadline=deadline, max_pending=self._backend._max_pending
        )
        backend = self._backend
        lease_id = backend._new_id()  # also the id of its ticket, if it needs one
        ticket = False
        try:
            if not turn.done():
                # Take a ticket now: a caller of another process arriving later must not
                # overtake this one while it waits behind this process's head.
                try_at = backend._clock() + max(0.0, queue.head_try_at - loop.time())
                await backend._run(
                    functools.partial(self._rows.enqueue, lease_id=lease_id, try_at=try_at)
                )
                ticket = True
                await queue.wait(turn, loop, key=self._key, deadline=deadline)
            ticket = False  # from here on the head's code owns it
            return await self._acquire_as_head(loop, deadline, lease_id)
        except BaseException:
            if ticket:
                self._drop_ticket(lease_id)
            raise
        finally:
            queue.leave(turn)

    def _drop_ticket(self, lease_id: str) -> None:
        self._backend._fire(
            functools.partial(self._rows.drop_ticket, lease_id=lease_id), "dropping a ticket"
        )

    async def _acquire_as_head(
        self, loop: asyncio.AbstractEventLoop, deadline: float | None, lease_id: str
    ) -> SqliteLease:
        backend = self._backend
        ticket = True  # whether the file may hold a ticket under lease_id
        try:
            while True:
                now = loop.time()
                if deadline is not None and now >= deadline:
                    raise DeadlineExceededError(f"deadline passed waiting for {self._key}")
                wall_deadline = None if deadline is None else backend._clock() + (deadline - now)
                ticket = True
                status, wait, burst, hold = await backend._run(
                    functools.partial(self._rows.ask, lease_id=lease_id, deadline=wall_deadline)
                )
                self._learn(burst, hold)
                if status == GRANTED:
                    ticket = False
                    self._live.add(lease_id)
                    return SqliteLease(self, lease_id, wait)
                if status == REFUSED:  # the transaction dropped any ticket
                    ticket = False
                    raise DeadlineExceededError(
                        f"the next slot of {self._key} frees in {wait:.3f}s, after the deadline"
                    )
                self._queue.head_try_at = loop.time() + wait
                await self._sleep(loop, wait)
        except BaseException:
            if ticket:  # cancelled, failed or past the deadline holding a ticket
                self._drop_ticket(lease_id)
            raise
        finally:
            self._queue.head_try_at = 0.0

    async def _sleep(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        """Until the try-at, or until one of our leases is released (it may free ours)."""
        wake = self._wake = loop.create_future()
        handle = loop.call_at(loop.time() + delay, _resolve, wake)
        try:
            await wake
        finally:
            handle.cancel()
            self._wake = None

    def _learn(self, burst: int, hold: float) -> None:
        self._burst = burst
        if hold > 0:
            held = asyncio.get_running_loop().time() + hold
            self._held_until = max(self._held_until, held)

    def _reregister(self, conn: sqlite3.Connection, now: float) -> None:
        # Copies: this may run in the worker thread while the loop thread releases.
        cooling = [expires for _, expires, _ in list(self._cooling)]
        self._rows.reregister(conn, now, live=list(self._live), cooling=cooling)

    # -- release, 50011 ------------------------------------------------------------

    async def release(self, lease: Lease) -> None:
        """The request finished; its slot frees one window from now. Idempotent; never
        raises for file trouble (an unrecorded release lapses after `inflight_ttl`)."""
        if not isinstance(lease, SqliteLease) or lease._owner is not self:
            raise ValueError(f"{lease!r} was not granted by {self!r}")
        if lease.released:
            return
        lease.released = True
        backend, window = self._backend, self._rate.window
        lease_id = lease.lease_id
        self._live.discard(lease_id)
        loop = asyncio.get_running_loop()
        loop_now, expires = loop.time(), backend._clock() + window
        cooling = self._cooling
        while cooling and cooling[0][0] <= loop_now:
            cooling.popleft()
        cooling.append((loop_now + window, expires, lease_id))
        # Written by the next transaction, which is soon (a callback is queued) and often
        # the next acquire: a sequential acquire+release costs one transaction, not two.
        self._rows.pending.append((lease_id, expires))
        backend._released(self._rows, loop)
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def on_rate_limited(self) -> None:
        """OKX said 50011: hold the key one window in every process, halve the burst."""
        loop_now = asyncio.get_running_loop().time()
        self._held_until = max(self._held_until, loop_now + self._rate.window)
        try:
            self._learn(*await self._backend._run(self._rows.limited))
        except LimiterUnavailableError as exc:
            logger.warning("recording a 50011 for %s: %s", self._key, exc)
