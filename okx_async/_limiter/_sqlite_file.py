"""The sqlite store's file: one connection, its short transactions, its identity.

Each operation is one short `BEGIN IMMEDIATE` transaction (WAL; synchronous=NORMAL: a
budget has to outlive processes, not the machine, and a reboot outlasts any window).

Blocking calls: sqlite3 blocks. A bare write transaction costs less than one hop to a
worker thread and back (benchmarks/store_cost.py measures both in one run), so a hop per
transaction would double the cost without shortening the time the write lock is held;
transactions therefore run inline on the event loop, with a busy timeout of 0. Only when
another process holds the write lock does a transaction go to a worker thread that waits
up to `busy_timeout`, so a slow or stopped neighbour never blocks the event loop
(opening the file, once, may wait inline). Every transaction also writes this process's
pending releases (`BudgetRows.pending`), so a sequential acquire+release costs one.

A file this store has to initialise (it did not exist, was empty, or had an older
layout) starts with every key held one window from then (`hold_new_file`). A file
deleted or wiped under a running process is detected (the path's inode, or the epoch,
changed): the store reopens it, registers this process's live and cooling leases again
and holds its keys for one window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .._errors import LimiterUnavailableError
from .._lane_store import LANE_SCHEMA
from ._sqlite_layout import LAYOUT_1, check_layout
from ._sqlite_rows import (
    DROP_LAYOUT_1,
    LAYOUT_VERSION,
    SCHEMA,
    BudgetRows,
    EpochChangedError,
    Settings,
)

if TYPE_CHECKING:
    from .._limits import LimiterKey, RateLimit
    from ._sqlite_key import SqliteKeyLimiter

__all__ = ["SqliteFile"]

logger = logging.getLogger("okx_async.sqlite")

_T = TypeVar("_T")

_READ_EPOCH = "SELECT value FROM meta WHERE name = 'epoch'"


class _Busy(Exception):
    """The write lock is taken (inline attempts do not wait for it)."""


def _statements(script: str) -> list[str]:
    return [s for s in script.split(";") if s.strip()]


class SqliteFile:
    """The file of a sqlite limiter store and its transactions (`_run`, `_try_now`,
    `_fire`); `SqliteLimiterBackend` adds the limiters. `path`: absolute, normalised;
    `busy_timeout`: seconds; `clock`: wall seconds."""

    __slots__ = (
        "_busy_timeout",
        "_clock",
        "_closed",
        "_conn",
        "_dirty",
        "_epoch",
        "_hold_new_file",
        "_identity",
        "_limiters",
        "_path",
        "_replaced",
        "_settings",
        "_slow",
        "_tasks",
    )

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float,
        hold_new_file: bool,
        clock: Callable[[], float],
        settings: Settings,
    ) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._hold_new_file = hold_new_file
        self._clock = clock
        self._settings = settings
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._epoch: str | None = None
        self._replaced = False
        self._limiters: dict[tuple[LimiterKey, RateLimit], SqliteKeyLimiter] = {}
        self._slow: asyncio.Lock | None = None  # serializes the worker-thread path
        # Keys with releases not yet written (`BudgetRows.pending`); pruned on the loop.
        self._dirty: set[BudgetRows] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._conn is not None else "unopened"
        return f"<{type(self).__name__} {self._path} keys={len(self._limiters)} {state}>"

    async def _close(self) -> None:
        """Write pending releases, wait for background transactions, close."""
        if any(rows.pending for rows in list(self._dirty)):
            with contextlib.suppress(LimiterUnavailableError):
                await self._run(lambda conn, now: None)
        self._closed = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._slow is not None:
            async with self._slow:
                self._close_conn()
        else:
            self._close_conn()

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _open(self, wait: bool) -> sqlite3.Connection:
        """Open (creating if need be) the file; remember its identity. `wait`: wait up to
        busy_timeout for another process's lock (worker thread), else fail at once."""
        conn = sqlite3.connect(
            self._path,
            isolation_level=None,
            check_same_thread=False,
            timeout=self._busy_timeout if wait else 0.0,
        )
        try:
            check_layout(conn, self._path)  # before WAL: a foreign file stays as it was
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            self._initialise(conn)
            conn.execute("COMMIT")
            st = os.stat(self._path)
            conn.execute("PRAGMA busy_timeout=0")  # inline attempts never wait (see above)
        except BaseException:
            conn.close()
            raise
        self._identity = (st.st_dev, st.st_ino)
        return conn

    def _initialise(self, conn: sqlite3.Connection) -> None:
        """Create the tables unless they exist; a file without its epoch (new, empty, or
        of layout 1, whose budgets are dropped) starts its keys held. Checked again
        under the write lock: another process may have written the file meanwhile."""
        layout = check_layout(conn, self._path)
        fresh = layout != LAYOUT_VERSION
        if fresh:
            for statement in _statements(DROP_LAYOUT_1 if layout == LAYOUT_1 else ""):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={LAYOUT_VERSION}")
        for statement in _statements(SCHEMA + LANE_SCHEMA):
            conn.execute(statement)
        epoch = secrets.token_hex(8)
        if conn.execute("INSERT OR IGNORE INTO meta VALUES ('epoch', ?)", (epoch,)).rowcount:
            fresh = True
        if fresh:
            self._mark_created(conn, self._clock())

    def _mark_created(self, conn: sqlite3.Connection, now: float) -> None:
        """The file's history is unknown from `now`: new keys start held one window."""
        if self._hold_new_file:
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('created', ?)", (repr(now),))
        else:
            conn.execute("DELETE FROM meta WHERE name = 'created'")

    def _open_when_free(self, wait: bool) -> sqlite3.Connection:
        """`_open`, when another process holds the lock: _Busy at once inline (the caller
        retries in a worker thread), else retried until busy_timeout. Retried, not left to
        sqlite's busy handler: two processes switching a new file to WAL at once deadlock
        on the upgrade, and sqlite answers one of them "locked" without waiting."""
        give_up = time.monotonic() + self._busy_timeout
        while True:
            try:
                return self._open(wait)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if not wait:
                    raise _Busy from None
                if time.monotonic() >= give_up:
                    raise
            time.sleep(0.005)  # a worker thread, never the event loop (wait=True)

    def _same_file(self) -> bool:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            return False
        return (st.st_dev, st.st_ino) == self._identity

    def _connection(self, wait: bool) -> sqlite3.Connection:
        """The open connection, reopened when the path names another file now."""
        conn = self._conn
        if conn is not None and not self._same_file():
            self._replaced = True  # until a transaction re-registered our leases
            conn = None
        if conn is None:
            self._close_conn()
            conn = self._conn = self._open_when_free(wait)
        return conn

    def _begin(self, conn: sqlite3.Connection, wait: bool) -> None:
        if wait:
            conn.execute(f"PRAGMA busy_timeout={round(self._busy_timeout * 1000)}")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not wait and conn.in_transaction is False and "locked" in str(exc):
                raise _Busy from None
            raise
        finally:
            if wait:
                conn.execute("PRAGMA busy_timeout=0")

    def _txn(self, fn: Callable[[sqlite3.Connection, float], _T], wait: bool) -> _T:
        """Run `fn(conn, now)` in one BEGIN IMMEDIATE transaction, with this process's
        pending releases. `wait`: wait up to busy_timeout for the write lock (worker
        thread), else raise _Busy at once (the loop thread)."""
        try:
            return self._attempt(fn, wait)
        except EpochChangedError:
            # A budget row read showed the file wiped: redo, re-registering our leases.
            self._replaced = True
            return self._attempt(fn, wait)

    def _attempt(self, fn: Callable[[sqlite3.Connection, float], _T], wait: bool) -> _T:
        if self._closed:
            raise LimiterUnavailableError("the sqlite limiter was closed")
        try:
            conn = self._connection(wait)
            self._begin(conn, wait)
            try:
                result = self._body(conn, fn)
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            finally:
                touched = self._settings.touched
                for rows in touched:
                    rows.taken = -1
                touched.clear()
        except sqlite3.Error as exc:
            hint = ""
            if "unable to open" in str(exc):  # sqlite says no more than that
                hint = " (check that its directory exists and this user may write it)"
            raise LimiterUnavailableError(
                f"the sqlite limiter at {self._path} failed: {exc}{hint}"
            ) from None
        if not wait:  # the loop thread: the only one that adds to `_dirty`
            self._dirty = {rows for rows in self._dirty if rows.pending}
        return result

    def _body(self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection, float], _T]) -> _T:
        now = self._clock()
        epoch = self._epoch
        if epoch is None or self._replaced:
            epoch = self._check_epoch(conn, now)
        # Every budget row read checks the epoch (EpochChangedError when it differs).
        self._settings.epoch = epoch
        result = fn(conn, now)
        for rows in list(self._dirty):
            if rows.taken < 0 and rows.pending:
                rows.flush(conn, now)
        conn.execute("COMMIT")
        self._epoch, self._replaced = epoch, False
        for rows in self._settings.touched:
            # Only the loop thread appends, at the end: the written prefix goes.
            del rows.pending[: rows.taken]
        return result

    def _check_epoch(self, conn: sqlite3.Connection, now: float) -> str:
        """The file's epoch (a new one when it was wiped). Replaced since our last
        transaction: re-register in this one; remembered only once it commits, so a
        rolled-back one is redone by the next transaction."""
        row = conn.execute(_READ_EPOCH).fetchone()
        epoch: str = row[0] if row else secrets.token_hex(8)
        if row is None:  # wiped: what was spent is unknown
            conn.execute("INSERT INTO meta VALUES ('epoch', ?)", (epoch,))
            self._mark_created(conn, now)
        if (self._replaced or epoch != self._epoch) and self._epoch is not None:
            logger.warning("limiter file %s was replaced; holding its keys one window", self._path)
            self._settings.epoch = epoch
            for limiter in list(self._limiters.values()):
                limiter._reregister(conn, now)
        return epoch

    async def _run(self, fn: Callable[[sqlite3.Connection, float], _T]) -> _T:
        """Inline while the write lock is free; in a worker thread when it is taken."""
        slow = self._slow
        if slow is None or not slow.locked():
            try:
                return self._txn(fn, False)
            except _Busy:
                pass
        if self._slow is None:
            self._slow = asyncio.Lock()
        async with self._slow:
            return await asyncio.to_thread(self._txn, fn, True)

    def _try_now(self, fn: Callable[[sqlite3.Connection, float], _T]) -> _T | None:
        """`fn`'s result when the write lock is free now, else None (never waits)."""
        if self._slow is not None and self._slow.locked():
            return None
        try:
            return self._txn(fn, False)
        except _Busy:
            return None

    def _fire(self, fn: Callable[[sqlite3.Connection, float], object], what: str) -> None:
        """Run `fn` now if the lock is free, else in the background; never raises (what
        it does is also undone by time: a ticket's beat, a lease's TTL)."""
        try:
            if self._slow is None or not self._slow.locked():
                self._txn(fn, False)
                return
        except _Busy:
            pass
        except LimiterUnavailableError as exc:
            logger.warning("%s: %s", what, exc)
            return
        task = asyncio.get_running_loop().create_task(self._run(fn))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("sqlite limiter: %s", task.exception())
