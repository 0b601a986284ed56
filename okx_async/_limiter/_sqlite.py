"""The sqlite store: one budget shared by every process on a host that names the same file.

Same lease rules as the other stores (`_rules`): a slot is held while its request is in
flight and for one window after its answer. Modules: `_sqlite_file` (the connection,
its transactions, its identity), `_sqlite_rows` (the layout and the transactions on one
key's rows), `_sqlite_key` (the per-key limiter: FIFO across processes, exact waits,
leases) and this one (the backend users create).

Clocks: times in the file are wall-clock seconds (`time.time`), the only clock every
process shares and that keeps its meaning across restarts (a monotonic clock restarts
at boot, so stored expiries would be meaningless after one). Local waits run on the
event loop's monotonic clock: a wall-clock step must not stretch or cut a sleep, so a
wall-clock delay is turned into a loop deadline at once.

A file this store has to initialise (it did not exist, was empty, or had an older
layout) starts with every key held one window from then (`hold_new_file`): the slots
spent in the last window by processes that used a deleted file still count at OKX.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable

from .._defaults import (
    MAX_PENDING_PER_KEY,
    SQLITE_BUSY_TIMEOUT,
    SQLITE_INFLIGHT_TTL,
    SQLITE_TICKET_GRACE,
)
from .._errors import InvalidInputError
from .._lane_store import SqliteLaneStore
from .._limits import LimiterKey, LimiterSnapshot, RateLimit
from ._sqlite_file import SqliteFile
from ._sqlite_key import SqliteKeyLimiter, SqliteLease
from ._sqlite_rows import BudgetRows, Settings

__all__ = ["SqliteKeyLimiter", "SqliteLease", "SqliteLimiterBackend"]


class SqliteLimiterBackend(SqliteFile):
    """Limiter budgets kept in a sqlite file: shared by every process on the host that
    opens the same `path`.

    `max_pending` (callers per key, >= 0, default 10 000): how many of this process's
    callers may wait for one key's slot behind the one asking the file; one more
    raises QueueFullError at once (nothing is queued or sent); 0: one caller per key
    waits at a time.

    `path`: an absolute file path (str or path-like); the file is created on first use,
    its directory must exist. `inflight_ttl` (seconds, > 0, default 60): a lease not
    released by then (its holder crashed) lapses. `busy_timeout` (seconds, > 0, default
    1): how long an operation waits for another process's write lock before the call
    fails with LimiterUnavailableError. `ticket_grace` (seconds, > 0, default 2): how long
    a waiter's ticket outlives the try-at it was given. `hold_new_file` (default True):
    when this store initialises the file, every key starts held one window from then
    (what was spent before is unknown); False for a file known to be the first ever.
    `clock`: wall-clock seconds, the same in every process sharing the file (tests pass
    a virtual one). Raises InvalidInputError for a relative path or a bad parameter. Use
    from one event loop; `aclose()` closes the file.
    """

    # __weakref__: the slots-in-use metric watches backends weakly.
    __slots__ = ("__weakref__", "_counter", "_flush_queued", "_max_pending")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_pending: int = MAX_PENDING_PER_KEY,
        inflight_ttl: float = SQLITE_INFLIGHT_TTL,
        busy_timeout: float = SQLITE_BUSY_TIMEOUT,
        ticket_grace: float = SQLITE_TICKET_GRACE,
        hold_new_file: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        text = os.fspath(path)
        if not isinstance(text, str) or not os.path.isabs(text):
            raise InvalidInputError(f"the sqlite limiter needs an absolute file path, got {text!r}")
        if os.path.isdir(text):
            raise InvalidInputError(f"the sqlite limiter needs a file, {text!r} is a directory")
        if max_pending < 0:
            raise InvalidInputError(f"max_pending must be >= 0, got {max_pending!r}")
        for name, value in (
            ("inflight_ttl", inflight_ttl),
            ("busy_timeout", busy_timeout),
            ("ticket_grace", ticket_grace),
        ):
            if not value > 0:
                raise InvalidInputError(f"{name} must be positive, got {value!r}")
        settings = Settings(
            inflight_ttl=float(inflight_ttl),
            ticket_grace=float(ticket_grace),
            token=f"{os.getpid()}-{secrets.token_hex(4)}",  # lease ids: <token>:<n>
        )
        super().__init__(
            os.path.normpath(text),
            busy_timeout=float(busy_timeout),
            hold_new_file=bool(hold_new_file),
            clock=clock,
            settings=settings,
        )
        self._max_pending = max_pending
        self._flush_queued = False
        self._counter = 0

    @property
    def path(self) -> str:
        return self._path

    @property
    def inflight_ttl(self) -> float:
        """Seconds a lease stays in flight in the file unless released."""
        return self._settings.inflight_ttl

    async def __aenter__(self) -> SqliteLimiterBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def limiter(self, key: LimiterKey, rate: RateLimit) -> SqliteKeyLimiter:
        found = self._limiters.get((key, rate))
        if found is None:
            found = self._limiters[(key, rate)] = SqliteKeyLimiter(self, key, rate)
        return found

    def snapshots(self) -> list[tuple[LimiterKey, LimiterSnapshot]]:
        """What this process knows of every key it used (for the slots-in-use metric):
        its own leases in flight and cooling, not other processes'."""
        return [(key, limiter.snapshot()) for (key, _), limiter in list(self._limiters.items())]

    def lane_store(self) -> SqliteLaneStore:
        """Per-currency ordering shared through this file (see `_lane_store`)."""
        return SqliteLaneStore(backend=self)

    async def aclose(self) -> None:
        """Write pending releases and close the file. Leases still held stay in it
        until they lapse."""
        if not self._closed:
            await self._close()

    # -- releases ------------------------------------------------------------------

    def _new_id(self) -> str:
        self._counter += 1
        return f"{self._settings.token}:{self._counter}"

    def _released(self, rows: BudgetRows, loop: asyncio.AbstractEventLoop) -> None:
        """`rows` has a new pending release: written by the next transaction, or by a
        callback queued now if no other runs first."""
        self._dirty.add(rows)
        if not self._flush_queued:
            self._flush_queued = True
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Write pending releases, unless a transaction did already."""
        self._flush_queued = False
        if not self._closed and any(rows.pending for rows in self._dirty):
            self._fire(lambda conn, now: None, "recording releases")
