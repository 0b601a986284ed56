"""Per-(user, currency) ordering shared by every process on a host: the sqlite lane store.

Within one process a `Lane` already sends one value of a currency at a time, newest
last. With a shared store the same rules hold across processes, through three facts per
lane key (mode, uid, ccy) kept in the limiter's sqlite file (table `lane`):

    seq, owner, value   a sequence number taken by every submitted value (the store's
                        order), and the newest one's process token and value text
    holder, fence,      the *claim*: the process sending for this key now, a fencing
    expires             token (incremented per grant) and the lease's expiry; renewed
                        while its request is in flight, so a crashed holder's claim
                        lapses after `ttl` seconds
    sending             the value the holder has on the wire

A process sends a value only while it holds the claim. A value whose seq is older than
the newest submitted by *another* process is never sent (superseded): the newer value
will be sent after it, or is already. Values of one process keep its own in-process
order (coalescing or not). A claim taken over from a crashed holder reports its
`sending` value as uncertain until `lapsed + landing horizon`, and so do the uncertain
outcomes other holders left in table `lane_uncertain`: the new holder's lane re-asserts
its value after them, as it does for its own uncertain requests.

Waiting: a process that finds the claim held sleeps until the lease's expiry and tries
again (the holder renews it every ttl/3 while sending, so a waiter re-checks at most
every ttl). Nothing polls faster than that; sqlite has no cross-process wake-up.

Times in the file are wall-clock seconds (the only clock processes share); waits run on
the event loop's clock. Each operation is one short transaction of the limiter backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sqlite3
from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple

from ._defaults import LANE_CLAIM_TTL
from ._errors import DeadlineExceededError, InvalidInputError, LimiterUnavailableError

if TYPE_CHECKING:
    from ._limiter._sqlite import SqliteLimiterBackend

__all__ = [
    "LANE_SCHEMA",
    "ClaimAnswer",
    "LaneClaim",
    "LaneStoreBase",
    "SqliteLaneStore",
    "SupersededElsewhereError",
    "process_token",
]

logger = logging.getLogger("okx_async.lanes")

LANE_SCHEMA = """
CREATE TABLE IF NOT EXISTS lane (
    key TEXT PRIMARY KEY, seq INTEGER NOT NULL, owner TEXT NOT NULL, value TEXT NOT NULL,
    holder TEXT, fence INTEGER NOT NULL, expires REAL NOT NULL, sending TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lane_uncertain (
    key TEXT NOT NULL, owner TEXT NOT NULL, n INTEGER NOT NULL, value TEXT NOT NULL,
    landing REAL NOT NULL, PRIMARY KEY (key, owner, n)
) WITHOUT ROWID;
"""

_TOKEN: tuple[int, str] | None = None


def process_token() -> str:
    """This process's identity in the store (a forked child gets its own)."""
    global _TOKEN
    pid = os.getpid()
    if _TOKEN is None or _TOKEN[0] != pid:
        _TOKEN = (pid, f"{pid}-{secrets.token_hex(4)}")
    return _TOKEN[1]


class SupersededElsewhereError(Exception):
    """Internal signal: another process submitted a newer value of this currency;
    `value` (str) is that value's text. The value asking for the claim is not sent."""

    def __init__(self, value: str) -> None:
        super().__init__(value)
        self.value = value


class ClaimAnswer(NamedTuple):
    """One claim attempt's answer. `kind`: "granted" (with `fence` and the uncertain
    entries `(value text, landing wall time)` of other processes), "superseded" (with
    the newest `value`) or "wait" (until wall time `until`)."""

    kind: str
    fence: int = 0
    value: str = ""
    until: float = 0.0
    uncertain: tuple[tuple[str, float], ...] = ()


# -- the rules, as transactions on (conn, wall-clock now) --------------------------------


def submit_txn(conn: sqlite3.Connection, now: float, key: str, owner: str, value: str) -> int:
    """Take the next sequence number of `key` for `value`; it becomes the newest."""
    del now
    # Plain statements, not an upsert with RETURNING: that needs sqlite 3.35.
    conn.execute("INSERT OR IGNORE INTO lane VALUES (?, 0, '', '', NULL, 0, 0, NULL)", (key,))
    conn.execute(
        "UPDATE lane SET seq = seq + 1, owner = ?, value = ? WHERE key = ?", (owner, value, key)
    )
    row = conn.execute("SELECT seq FROM lane WHERE key = ?", (key,)).fetchone()
    return int(row[0])


def claim_txn(
    conn: sqlite3.Connection,
    now: float,
    key: str,
    *,
    seq: int,
    owner: str,
    holder: str,
    sending: str,
    ttl: float,
    horizon: float,
) -> ClaimAnswer:
    """Grant `key`'s claim to `holder` for the value `sending` (sequence `seq`), unless
    a newer value of another process exists (superseded) or a live claim is held
    (wait). A lapsed claim is taken over; its `sending` value is then uncertain until
    `lapse + horizon`."""
    row = conn.execute(
        "SELECT seq, owner, value, holder, fence, expires, sending FROM lane WHERE key = ?",
        (key,),
    ).fetchone()
    if row is None:  # a store created after the value was submitted (file replaced)
        conn.execute(
            "INSERT INTO lane VALUES (?, ?, ?, ?, NULL, 0, 0, NULL)", (key, seq, owner, sending)
        )
        row = (seq, owner, sending, None, 0, 0.0, None)
    newest, newest_owner, newest_value, current, fence, expires, crashed = row
    if newest > seq and newest_owner != owner:
        return ClaimAnswer("superseded", value=newest_value)
    if current is not None and current != holder and expires > now:
        return ClaimAnswer("wait", until=expires)
    if current is not None and current != holder and crashed is not None:
        # Its holder stopped renewing mid-send: that request may still land.
        conn.execute(
            "INSERT OR REPLACE INTO lane_uncertain VALUES (?, ?, 0, ?, ?)",
            (key, current, crashed, expires + horizon),
        )
    fence += 1
    conn.execute(
        "UPDATE lane SET holder = ?, fence = ?, expires = ?, sending = ? WHERE key = ?",
        (holder, fence, now + ttl, sending, key),
    )
    conn.execute("DELETE FROM lane_uncertain WHERE key = ? AND landing <= ?", (key, now))
    rows = conn.execute(
        "SELECT value, landing FROM lane_uncertain WHERE key = ? AND owner != ?", (key, owner)
    ).fetchall()
    return ClaimAnswer("granted", fence=fence, uncertain=tuple((v, float(t)) for v, t in rows))


def renew_txn(conn: sqlite3.Connection, now: float, key: str, fence: int, ttl: float) -> bool:
    """Extend the claim `fence` of `key`; False when it is no longer ours (it lapsed and
    was taken over)."""
    cur = conn.execute(
        "UPDATE lane SET expires = ? WHERE key = ? AND fence = ? AND holder IS NOT NULL",
        (now + ttl, key, fence),
    )
    return cur.rowcount == 1


def release_txn(
    conn: sqlite3.Connection,
    now: float,
    key: str,
    fence: int,
    owner: str,
    uncertain: list[tuple[str, float]],
) -> None:
    """End the claim `fence` of `key` and replace this process's uncertain entries of
    `key` with `uncertain` (value text, landing wall time)."""
    conn.execute(
        "UPDATE lane SET holder = NULL, sending = NULL, expires = 0 WHERE key = ? AND fence = ?",
        (key, fence),
    )
    conn.execute("DELETE FROM lane_uncertain WHERE key = ? AND owner = ?", (key, owner))
    conn.executemany(
        "INSERT INTO lane_uncertain VALUES (?, ?, ?, ?, ?)",
        [(key, owner, n, v, t) for n, (v, t) in enumerate(uncertain, 1) if t > now],
    )


def newer_txn(conn: sqlite3.Connection, now: float, key: str, seq: int, owner: str) -> bool:
    """True when another process submitted a value of `key` after sequence `seq`."""
    del now
    row = conn.execute("SELECT seq, owner FROM lane WHERE key = ?", (key,)).fetchone()
    return row is not None and row[0] > seq and row[1] != owner


# -- the store -----------------------------------------------------------------------


class LaneClaim:
    """A granted claim: renewed in the background until `LaneStoreBase.release`."""

    __slots__ = ("_renewer", "fence", "key", "newer", "uncertain")

    def __init__(self, *, key: str, fence: int, uncertain: list[tuple[Decimal, float]]) -> None:
        self.key = key
        self.fence = fence
        self.uncertain = uncertain  # (value, landing loop time) other processes left
        self.newer = False  # a newer value of another process seen by a renewal (Redis)
        self._renewer: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"LaneClaim({self.key!r}, fence={self.fence})"


class LaneStoreBase:
    """What every shared lane store does alike: wait for a claim, renew it while the
    request is in flight, give it up. Subclasses provide one round trip per rule.

    Operations raise LimiterUnavailableError when the store cannot be reached."""

    __slots__ = ("_counter", "_ttl")

    def __init__(self, *, ttl: float) -> None:
        if not ttl > 0:
            raise InvalidInputError(f"ttl must be positive, got {ttl!r}")
        self._ttl = float(ttl)
        self._counter = 0

    async def submitted(self, key: str, value: str) -> int:
        """The store's sequence number for a newly submitted `value` of `key`."""
        raise NotImplementedError

    async def _claim_once(
        self, key: str, seq: int, holder: str, value: str, horizon: float
    ) -> tuple[ClaimAnswer, float]:
        """One claim attempt and the store's wall clock when it ran."""
        raise NotImplementedError

    async def _renew_once(self, claim: LaneClaim) -> bool:
        raise NotImplementedError

    async def _release_once(self, claim: LaneClaim, uncertain: list[tuple[str, float]]) -> None:
        """End `claim`; `uncertain`: (value text, seconds from now until it may land)."""
        raise NotImplementedError

    def newer_elsewhere(self, key: str, seq: int) -> bool:
        """True when another process submitted a value of `key` after `seq` (best
        effort; False when not known at once)."""
        raise NotImplementedError

    async def claim(
        self, key: str, *, seq: int, value: str, deadline: float | None, horizon: float
    ) -> LaneClaim:
        """Wait for `key`'s claim and take it for `value` (sequence `seq`). `deadline`
        (loop time) bounds the wait: DeadlineExceededError after it. Raises
        SupersededElsewhereError when another process submitted a newer value."""
        self._counter += 1
        holder = f"{process_token()}:{self._counter}"
        loop = asyncio.get_running_loop()
        while True:
            found, now = await self._claim_once(key, seq, holder, value, horizon)
            if found.kind == "granted":
                at = loop.time() - now  # wall time -> loop time
                uncertain = [(Decimal(v), t + at) for v, t in found.uncertain]
                claim = LaneClaim(key=key, fence=found.fence, uncertain=uncertain)
                claim._renewer = loop.create_task(self._renew(claim))
                return claim
            if found.kind == "superseded":
                raise SupersededElsewhereError(found.value)
            # Held by a live process: sleep until its lease would lapse, then look again
            # (it may have been released, renewed or taken over meanwhile).
            wake = loop.time() + max(found.until - now, 0.0)
            if deadline is not None and wake >= deadline:
                await asyncio.sleep(max(deadline - loop.time(), 0.0))
                raise DeadlineExceededError(
                    f"another request kept {key.rsplit(':', 1)[-1]} busy past the deadline"
                )
            await asyncio.sleep(wake - loop.time())

    async def release(self, claim: LaneClaim, uncertain: list[tuple[Decimal, float]]) -> None:
        """Give the claim up, recording this process's uncertain entries of its key as
        (value, landing in loop time). Never raises: an unreleased claim lapses."""
        renewer, claim._renewer = claim._renewer, None
        if renewer is not None:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        loop_now = asyncio.get_running_loop().time()
        entries = [(str(v), t - loop_now) for v, t in uncertain if t > loop_now]
        try:
            await self._release_once(claim, entries)
        except LimiterUnavailableError as exc:
            logger.warning("releasing the claim of %s: %s", claim.key, exc)

    async def _renew(self, claim: LaneClaim) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            try:
                ours = await self._renew_once(claim)
            except LimiterUnavailableError as exc:
                logger.warning("renewing the claim of %s: %s", claim.key, exc)
                continue
            if not ours:
                logger.warning("the claim of %s lapsed while its request was in flight", claim.key)
                return


class SqliteLaneStore(LaneStoreBase):
    """Lane claims and sequence numbers in a `SqliteLimiterBackend`'s file.

    `ttl` (seconds, > 0, default LANE_CLAIM_TTL = 2): a claim not renewed for this long
    (its holder crashed or hangs) lapses. Use from the backend's event loop.
    """

    __slots__ = ("_backend",)

    def __init__(self, *, backend: SqliteLimiterBackend, ttl: float = LANE_CLAIM_TTL) -> None:
        super().__init__(ttl=ttl)
        self._backend = backend

    def __repr__(self) -> str:
        return f"<SqliteLaneStore {self._backend.path} ttl={self._ttl:g}s>"

    async def submitted(self, key: str, value: str) -> int:
        owner = process_token()
        return await self._backend._run(lambda c, now: submit_txn(c, now, key, owner, value))

    async def _claim_once(
        self, key: str, seq: int, holder: str, value: str, horizon: float
    ) -> tuple[ClaimAnswer, float]:
        owner, ttl = process_token(), self._ttl

        def attempt(conn: sqlite3.Connection, now: float) -> tuple[ClaimAnswer, float]:
            answer = claim_txn(
                conn,
                now,
                key,
                seq=seq,
                owner=owner,
                holder=holder,
                sending=value,
                ttl=ttl,
                horizon=horizon,
            )
            return answer, now

        return await self._backend._run(attempt)

    async def _renew_once(self, claim: LaneClaim) -> bool:
        return await self._backend._run(
            lambda c, now: renew_txn(c, now, claim.key, claim.fence, self._ttl)
        )

    async def _release_once(self, claim: LaneClaim, uncertain: list[tuple[str, float]]) -> None:
        owner = process_token()

        def write(conn: sqlite3.Connection, now: float) -> None:
            entries = [(v, now + after) for v, after in uncertain]
            release_txn(conn, now, claim.key, claim.fence, owner, entries)

        await self._backend._run(write)

    def newer_elsewhere(self, key: str, seq: int) -> bool:
        # Synchronous: a read when the file is free at once, else False (the claim still
        # keeps the order; this only spares sending a value that is already stale).
        owner = process_token()
        try:
            found = self._backend._try_now(lambda c, now: newer_txn(c, now, key, seq, owner))
        except LimiterUnavailableError:
            return False
        return found is True
