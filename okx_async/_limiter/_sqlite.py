"""The sqlite store: one budget shared by every process on a host that names the same file.

Same lease rules as the other stores (`_rules`): a slot is held while its request is in
flight and for one window after its answer. The file holds, per budget (a `LimiterKey`):

    budget  tat (GCRA theoretical arrival time), held_until, burst, recover_at,
            next_ticket (arrival counter)
    lease   one row per slot held: in flight (expires = grant + inflight_ttl, so a
            crashed holder's slot lapses by itself) or cooling (expires = release + window)
    ticket  the cross-process FIFO of waiting callers: seq (arrival) and beat (the
            try-at its process's head was answered + grace, so a dead process's tickets
            lapse and stop blocking)
    meta    `epoch`, a random id written when the file is created

Each operation is one short `BEGIN IMMEDIATE` transaction. A caller that has to wait
takes a ticket; inside one process only the head of a key's local FIFO asks for a slot,
needing more free slots than there are older tickets. It is answered "granted" or the exact time
to try again (a cooling lease's expiry, the hold's end, the pacer's time, or one window
from now while every slot is in flight) and sleeps until then, woken early when a lease
of this process is released. Nothing polls.

Clocks: times in the file are wall-clock seconds (`time.time`), the only clock every
process shares and that keeps its meaning across restarts (a monotonic clock restarts
at boot, so stored expiries would be meaningless after one). Local waits run on the
event loop's monotonic clock: a wall-clock step must not stretch or cut a sleep, so a
wall-clock delay is turned into a loop deadline at once.

Blocking calls: sqlite3 blocks. A bare two-row write transaction costs about as much as
one hop to a worker thread and back (benchmarks/store_cost.py measures both in one run),
so a hop per transaction would double the cost without shortening the time the write
lock is held; transactions therefore run inline on the event loop, with a busy timeout
of 0. Only when another process holds the write lock does a transaction go to a worker
thread that waits up to `busy_timeout`, so a slow or stopped neighbour never blocks the
event loop (opening the file, once, may wait inline). Sequential acquire+release costs one
transaction: a release is written by the next transaction (a callback queued at once
runs one if nothing else does).

A deleted or recreated file is detected (the path's inode, or the epoch, changed): the
store reopens it, registers this process's live and cooling leases again and holds its
keys for one window, because leases of processes that left are gone with the old file.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from math import inf
from typing import Any, TypeVar

from .._defaults import (
    MAX_PENDING_PER_KEY,
    RATE_LIMIT_RECOVERY_WINDOWS,
    SQLITE_BUSY_TIMEOUT,
    SQLITE_INFLIGHT_TTL,
    SQLITE_TICKET_GRACE,
)
from .._errors import (
    DeadlineExceededError,
    InvalidInputError,
    LimiterUnavailableError,
)
from .._lane_store import LANE_SCHEMA, SqliteLaneStore
from .._limits import Lease, LimiterKey, LimiterSnapshot, RateLimit
from ._queue import HeadQueue
from ._rules import earliest_grant, gcra_allowed_at, gcra_commit, incident, recover, slot_free_at

__all__ = ["SqliteKeyLimiter", "SqliteLease", "SqliteLimiterBackend"]

logger = logging.getLogger("okx_async.sqlite")

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS budget (
    key TEXT PRIMARY KEY, tat REAL NOT NULL, held_until REAL NOT NULL,
    burst INTEGER NOT NULL, recover_at REAL NOT NULL, next_ticket INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lease (
    key TEXT NOT NULL, id TEXT NOT NULL, expires REAL NOT NULL, cooling INTEGER NOT NULL,
    PRIMARY KEY (key, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ticket (
    key TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, beat REAL NOT NULL,
    PRIMARY KEY (key, id)
) WITHOUT ROWID;
"""

_PURGE_BATCH = 4  # lapsed lease rows of a key deleted together


def _sort_rows(
    found: list[tuple[int, str, float, Any]], now: float
) -> tuple[list[str], list[float], int, int, int]:
    """The queue-and-lease rows of a key as (ticket ids by arrival, cooling expiries
    ascending, leases in flight, lapsed tickets, lapsed leases)."""
    found.sort(key=_by_kind_then_order)
    tickets: list[str] = []
    cooling: list[float] = []
    in_flight = lapsed_tickets = lapsed_leases = 0
    for kind, tid, expires, _ in found:
        if expires <= now:
            if kind:
                lapsed_leases += 1
            else:
                lapsed_tickets += 1
        elif kind == 0:
            tickets.append(tid)
        elif kind == 2:
            cooling.append(expires)
        else:
            in_flight += 1
    return tickets, cooling, in_flight, lapsed_tickets, lapsed_leases


def _by_kind_then_order(row: tuple[int, str, float, float]) -> tuple[int, float]:
    return row[0], row[3]


# Plain "?" twice, not "?1": Python 3.12.1 takes "?1" for a named parameter and warns
# (DeprecationWarning) when it is bound from a sequence.
_READ_QUEUE_AND_LEASES = """
SELECT 0, id, beat, seq FROM ticket WHERE key = ?
UNION ALL
SELECT 1 + cooling, id, expires, expires FROM lease WHERE key = ?
"""  # sorted in Python: a handful of rows, cheaper than SQLite's sorter

# What an acquire transaction answers.
_GRANTED = 1
_WAIT = 0
_REFUSED = -1


class _Busy(Exception):
    """The write lock is taken (inline attempts do not wait for it)."""


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class SqliteLease:
    """One granted slot; `release()` it once the request's answer (or error) arrived."""

    __slots__ = ("_owner", "lease_id", "released")

    def __init__(self, owner: SqliteKeyLimiter, lease_id: str) -> None:
        self._owner = owner
        self.lease_id = lease_id
        self.released = False

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"<SqliteLease {self.lease_id} {state} on {self._owner.key}>"


class SqliteLimiterBackend:
    """Limiter budgets kept in a sqlite file: shared by every process on the host that
    opens the same `path`.

    `path`: an absolute file path (str or path-like); the file is created on first use,
    its directory must exist. `inflight_ttl` (seconds, > 0, default 60): a lease not
    released by then (its holder crashed) lapses. `busy_timeout` (seconds, > 0, default
    1): how long an operation waits for another process's write lock before the call
    fails with LimiterUnavailableError. `ticket_grace` (seconds, > 0, default 2): how long
    a waiter's ticket outlives the try-at it was given. `clock`: wall-clock seconds, the
    same in every process sharing the file (tests pass a virtual one).
    Raises InvalidInputError for a relative path or a bad parameter. Use from one event
    loop; `aclose()` closes the file.
    """

    __slots__ = (
        "_busy_timeout",
        "_clock",
        "_closed",
        "_conn",
        "_counter",
        "_epoch",
        "_flush_queued",
        "_identity",
        "_inflight_ttl",
        "_limiters",
        "_max_pending",
        "_path",
        "_pending",
        "_replaced",
        "_slow",
        "_tasks",
        "_ticket_grace",
        "_token",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_pending: int = MAX_PENDING_PER_KEY,
        inflight_ttl: float = SQLITE_INFLIGHT_TTL,
        busy_timeout: float = SQLITE_BUSY_TIMEOUT,
        ticket_grace: float = SQLITE_TICKET_GRACE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        text = os.fspath(path)
        if not isinstance(text, str) or not os.path.isabs(text):
            raise InvalidInputError(f"the sqlite limiter needs an absolute file path, got {text!r}")
        if max_pending < 0:
            raise InvalidInputError(f"max_pending must be >= 0, got {max_pending!r}")
        for name, value in (
            ("inflight_ttl", inflight_ttl),
            ("busy_timeout", busy_timeout),
            ("ticket_grace", ticket_grace),
        ):
            if not value > 0:
                raise InvalidInputError(f"{name} must be positive, got {value!r}")
        self._path = os.path.normpath(text)
        self._max_pending = max_pending
        self._inflight_ttl = float(inflight_ttl)
        self._busy_timeout = float(busy_timeout)
        self._ticket_grace = float(ticket_grace)
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._epoch: str | None = None
        self._replaced = False
        self._limiters: dict[tuple[LimiterKey, RateLimit], SqliteKeyLimiter] = {}
        self._slow: asyncio.Lock | None = None  # serializes the worker-thread path
        # Releases not yet written: (key, lease id, cooling expiry). Written by the next
        # transaction, which is soon (a callback is queued) and often the next acquire,
        # so a sequential acquire+release costs one transaction, not two.
        self._pending: list[tuple[str, str, float]] = []
        self._flush_queued = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._token = f"{os.getpid()}-{secrets.token_hex(4)}"  # lease ids: <token>:<n>
        self._counter = 0

    @property
    def path(self) -> str:
        return self._path

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._conn is not None else "unopened"
        return f"<SqliteLimiterBackend {self._path} keys={len(self._limiters)} {state}>"

    async def __aenter__(self) -> SqliteLimiterBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def limiter(self, key: LimiterKey, rate: RateLimit) -> SqliteKeyLimiter:
        found = self._limiters.get((key, rate))
        if found is None:
            found = self._limiters[(key, rate)] = SqliteKeyLimiter(self, key, rate)
        return found

    def lane_store(self) -> SqliteLaneStore:
        """Per-currency ordering shared through this file (see `_lane_store`)."""
        return SqliteLaneStore(backend=self)

    async def aclose(self) -> None:
        """Write pending releases and close the file. Leases still held stay in it
        until they lapse."""
        if self._closed:
            return
        if self._pending:
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

    # -- the file ------------------------------------------------------------------

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _new_id(self) -> str:
        self._counter += 1
        return f"{self._token}:{self._counter}"

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
            # WAL: readers never block the writer. NORMAL: no fsync per commit; a budget
            # has to outlive processes, not the machine (a reboot outlasts any window).
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            for statement in (_SCHEMA + LANE_SCHEMA).split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('epoch', ?)", (secrets.token_hex(8),))
            conn.execute("COMMIT")
            st = os.stat(self._path)
            conn.execute("PRAGMA busy_timeout=0")  # inline attempts never wait (see above)
        except BaseException:
            conn.close()
            raise
        self._identity = (st.st_dev, st.st_ino)
        return conn

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

    def _txn(self, fn: Callable[[sqlite3.Connection, float], _T], wait: bool) -> _T:
        """Run `fn(conn, now)` in one BEGIN IMMEDIATE transaction. `wait`: wait up to
        busy_timeout for the write lock (worker thread), else raise _Busy at once."""
        if self._closed:
            raise LimiterUnavailableError("the sqlite limiter was closed")
        try:
            conn = self._conn
            if conn is not None and not self._same_file():
                self._replaced = True  # until a transaction re-registered our leases
                conn = None
            if conn is None:
                self._close_conn()
                conn = self._conn = self._open_when_free(wait)
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
            try:
                now = self._clock()
                row = conn.execute("SELECT value FROM meta WHERE name = 'epoch'").fetchone()
                epoch = row[0] if row else None
                if epoch is None:
                    epoch = secrets.token_hex(8)
                    conn.execute("INSERT INTO meta VALUES ('epoch', ?)", (epoch,))
                # Replaced: re-register in this transaction; remembered only once it
                # commits, so a rolled-back one is redone by the next transaction.
                replaced = self._replaced or epoch != self._epoch
                if replaced and self._epoch is not None:
                    self._reregister(conn, now)
                batch = len(self._pending)
                if batch:
                    conn.executemany(
                        "INSERT OR REPLACE INTO lease VALUES (?, ?, ?, 1)", self._pending[:batch]
                    )
                result = fn(conn, now)
                conn.execute("COMMIT")
                self._epoch, self._replaced = epoch, False
                # Only the loop thread appends, at the end: the written prefix goes.
                del self._pending[:batch]
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        except _Busy:
            raise
        except sqlite3.Error as exc:
            raise LimiterUnavailableError(
                f"the sqlite limiter at {self._path} failed: {exc}"
            ) from None
        return result

    def _reregister(self, conn: sqlite3.Connection, now: float) -> None:
        """The file was replaced: it knows none of this process's leases. Register them
        again, and hold each of our keys one window (other processes' leases are lost)."""
        logger.warning("limiter file %s was replaced; holding its keys one window", self._path)
        for limiter in self._limiters.values():
            limiter._reregister(conn, now)

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

    def _flush(self) -> None:
        """Write pending releases, unless a transaction did already."""
        self._flush_queued = False
        if self._pending and not self._closed:
            self._fire(lambda conn, now: None, "recording releases")

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("sqlite limiter: %s", task.exception())


class _BudgetRows:
    """The transactions on one key's rows of the file (budget, ticket, lease). Each runs
    in the backend's transaction with the file's clock `now` (wall seconds)."""

    __slots__ = ("_backend", "_interval", "_name", "_rate", "_recovery")

    def __init__(self, backend: SqliteLimiterBackend, name: str, rate: RateLimit) -> None:
        self._backend = backend
        self._name = name
        self._rate = rate
        self._interval = rate.window / rate.limit
        self._recovery = RATE_LIMIT_RECOVERY_WINDOWS * rate.window

    def enqueue(
        self, conn: sqlite3.Connection, now: float, *, lease_id: str, try_at: float
    ) -> None:
        """Join the cross-process FIFO; the beat lasts until this process's head asks
        again (which extends it) plus the grace."""
        next_ticket = self.state(conn, now)[4]
        beat = max(now, try_at) + self._backend._ticket_grace
        conn.execute(
            "INSERT OR IGNORE INTO ticket VALUES (?, ?, ?, ?)",
            (self._name, lease_id, next_ticket, beat),
        )
        conn.execute(
            "UPDATE budget SET next_ticket = ? WHERE key = ?", (next_ticket + 1, self._name)
        )

    def state(self, conn: sqlite3.Connection, now: float) -> tuple[float, float, int, float, int]:
        """The budget row at `now` (created if missing), burst recovery applied."""
        name, limit = self._name, self._rate.limit
        row = conn.execute(
            "SELECT tat, held_until, burst, recover_at, next_ticket FROM budget WHERE key = ?",
            (name,),
        ).fetchone()
        if row is None:
            row = (-inf, -inf, limit, inf, 0)
            conn.execute("INSERT INTO budget VALUES (?, ?, ?, ?, ?, ?)", (name, *row))
        tat, held, burst, recover_at, next_ticket = row
        burst, recover_at = recover(
            burst=min(burst, limit),
            max_burst=limit,
            recover_at=recover_at,
            recovery=self._recovery,
            now=now,
        )
        return tat, held, burst, recover_at, next_ticket

    def ask(
        self, conn: sqlite3.Connection, now: float, *, lease_id: str, deadline: float | None
    ) -> tuple[int, float, int, float]:
        """One acquire attempt: (_GRANTED, 0), (_WAIT, seconds) or (_REFUSED, seconds),
        then the burst and the seconds of hold left."""
        name, rate, backend = self._name, self._rate, self._backend
        tat, held, burst, recover_at, next_ticket = self.state(conn, now)
        # One read for tickets (kind 0, by arrival) and leases (1: in flight, 2: cooling;
        # by expiry); lapsed rows are skipped, and deleted only now and then: each
        # statement costs a few µs.
        found = conn.execute(_READ_QUEUE_AND_LEASES, (name, name)).fetchall()
        tickets, cooling, in_flight, lapsed_tickets, lapsed_leases = _sort_rows(found, now)
        if lapsed_tickets:  # a dead process's waiters: they must stop blocking at once
            conn.execute("DELETE FROM ticket WHERE key = ? AND beat <= ?", (name, now))
        if lapsed_leases >= _PURGE_BATCH:
            conn.execute("DELETE FROM lease WHERE key = ? AND expires <= ?", (name, now))
        try:
            ahead = tickets.index(lease_id)
            mine = True
        except ValueError:
            ahead, mine = len(tickets), False
        slot = slot_free_at(
            limit=rate.limit,
            ahead=ahead,
            in_flight=in_flight,
            cooling=cooling,
            now=now,
        )
        paced = gcra_allowed_at(tat=tat, interval=self._interval, burst=burst, now=now, ahead=ahead)
        at = earliest_grant(
            slot_at=slot, window=rate.window, held_until=held, paced_at=paced, now=now
        )
        hold = held - now if held > now else 0.0
        if at <= now:
            conn.execute(
                "INSERT OR REPLACE INTO lease VALUES (?, ?, ?, 0)",
                (name, lease_id, now + backend._inflight_ttl),
            )
            if mine:
                conn.execute("DELETE FROM ticket WHERE key = ? AND id = ?", (name, lease_id))
            tat = gcra_commit(tat=tat, interval=self._interval, now=now)
            conn.execute(
                "UPDATE budget SET tat = ?, burst = ?, recover_at = ? WHERE key = ?",
                (tat, burst, recover_at, name),
            )
            return _GRANTED, 0.0, burst, hold
        if deadline is not None and at >= deadline:
            if mine:
                conn.execute("DELETE FROM ticket WHERE key = ? AND id = ?", (name, lease_id))
            return _REFUSED, at - now, burst, hold
        beat = at + backend._ticket_grace
        if mine:
            conn.execute(
                "UPDATE ticket SET beat = ? WHERE key = ? AND id = ?", (beat, name, lease_id)
            )
        else:
            conn.execute(
                "INSERT INTO ticket VALUES (?, ?, ?, ?)", (name, lease_id, next_ticket, beat)
            )
            next_ticket += 1
        conn.execute(
            "UPDATE budget SET burst = ?, recover_at = ?, next_ticket = ? WHERE key = ?",
            (burst, recover_at, next_ticket, name),
        )
        # The tickets of this process's callers queued behind the head live as long as it
        # does: the head asks again by `at`. Lease ids are "<token>:<n>", so one range.
        token = backend._token
        conn.execute(
            "UPDATE ticket SET beat = ? WHERE key = ? AND id > ? AND id < ? AND beat < ?",
            (beat, name, token + ":", token + ";", beat),
        )
        return _WAIT, at - now, burst, hold


class SqliteKeyLimiter:
    """The budget of one key in the sqlite file (rules: `_rules`; layout: module doc).

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
        "_recovery",
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
        self._recovery = RATE_LIMIT_RECOVERY_WINDOWS * rate.window
        self._rows = _BudgetRows(backend, self._name, rate)
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
                try_at = backend._clock() + max(0.0, self._queue.head_try_at - loop.time())
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
        name = self._name
        self._backend._fire(
            lambda conn, t: conn.execute(
                "DELETE FROM ticket WHERE key = ? AND id = ?", (name, lease_id)
            ),
            "dropping a ticket",
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
                if status == _GRANTED:
                    ticket = False
                    self._live.add(lease_id)
                    return SqliteLease(self, lease_id)
                if status == _REFUSED:  # the transaction dropped any ticket
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
        name, ttl = self._name, self._backend._inflight_ttl
        held = self._rows.state(conn, now)[1]
        # Copies: this may run in the worker thread while the loop thread releases.
        for lease_id in list(self._live):
            conn.execute(
                "INSERT OR IGNORE INTO lease VALUES (?, ?, ?, 0)", (name, lease_id, now + ttl)
            )
        for _, expires, lease_id in list(self._cooling):
            if expires > now:
                conn.execute(
                    "INSERT OR IGNORE INTO lease VALUES (?, ?, ?, 1)", (name, lease_id, expires)
                )
        conn.execute(
            "UPDATE budget SET held_until = ? WHERE key = ?",
            (max(held, now + self._rate.window), name),
        )

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
        if not backend._flush_queued:
            backend._flush_queued = True
            loop.call_soon(backend._flush)
        backend._pending.append((self._name, lease_id, expires))
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def on_rate_limited(self) -> None:
        """OKX said 50011: hold the key one window in every process, halve the burst."""
        loop_now = asyncio.get_running_loop().time()
        self._held_until = max(self._held_until, loop_now + self._rate.window)
        name, window, recovery = self._name, self._rate.window, self._recovery

        def limited(conn: sqlite3.Connection, now: float) -> tuple[int, float]:
            _, held, burst, _, _ = self._rows.state(conn, now)
            burst, held, recover_at = incident(
                burst=burst, held_until=held, now=now, window=window, recovery=recovery
            )
            conn.execute(
                "UPDATE budget SET held_until = ?, burst = ?, recover_at = ? WHERE key = ?",
                (held, burst, recover_at, name),
            )
            return burst, held - now

        try:
            self._learn(*await self._backend._run(limited))
        except LimiterUnavailableError as exc:
            logger.warning("recording a 50011 for %s: %s", self._key, exc)
