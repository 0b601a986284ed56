"""The sqlite store's file layout and the transactions on one key's rows.

Tables (`SCHEMA`; `PRAGMA user_version` is `LAYOUT_VERSION`):

    meta    `epoch`: a random id written when the file is initialised (a changed epoch
            means the file was wiped or replaced); `created`: the wall time the file was
            initialised, when its keys start held (`BudgetRows.read`).
    budget  one row per budget (a `LimiterKey`): tat (GCRA theoretical arrival time),
            held_until, burst, recover_at, next_ticket (arrival counter), queued (how
            many ticket rows the key has: the ticket table is read only when it has
            some), and the
            leases: in flight, `live_ids` (space-separated lease ids) and `live_until`
            (grant + inflight_ttl each, so a crashed holder's slot lapses by itself),
            and `cooling`, the expiries (release + window) of released leases,
            ascending. Expiries are native doubles and ids plain text: both parse in
            single C calls, where JSON costs microseconds per lease. Leases live in the
            budget row so that an acquire dirties one page: a commit writes every dirty
            page to the WAL, and a second table doubles that write. Lapsed leases are
            dropped on every write.
    ticket  the cross-process FIFO of waiting callers: seq (arrival) and beat (the try-at
            its process's head was answered + grace, so a dead process's tickets lapse
            and stop blocking).

Every function here runs inside the backend's `BEGIN IMMEDIATE` transaction, given the
file's clock `now` (wall seconds). Rules: `_rules`.
"""

from __future__ import annotations

import sqlite3
from array import array
from bisect import bisect_right, insort
from math import inf
from typing import TYPE_CHECKING, Final

from .._defaults import RATE_LIMIT_RECOVERY_WINDOWS
from .._limits import RateLimit
from ._rules import earliest_grant, gcra_allowed_at, gcra_commit, incident, recover, slot_free_at

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "GRANTED",
    "LAYOUT_VERSION",
    "REFUSED",
    "SCHEMA",
    "WAIT",
    "BudgetRows",
    "EpochChangedError",
    "Settings",
]

LAYOUT_VERSION: Final = 2  # 1: leases in a table of their own (dropped when found)

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS budget (
    key TEXT PRIMARY KEY, tat REAL NOT NULL, held_until REAL NOT NULL,
    burst INTEGER NOT NULL, recover_at REAL NOT NULL, next_ticket INTEGER NOT NULL,
    queued INTEGER NOT NULL, live_ids TEXT NOT NULL, live_until BLOB NOT NULL, cooling BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ticket (
    key TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, beat REAL NOT NULL,
    PRIMARY KEY (key, id)
) WITHOUT ROWID;
"""

# Layout 1 kept leases in a `lease` table; its rows cannot be carried over exactly, so
# a file of that layout is treated as new (its keys start held, see `read`). Dropped
# only once `_sqlite_layout` recognised the file as exactly that layout.
DROP_LAYOUT_1: Final = "DROP TABLE IF EXISTS lease; DROP TABLE IF EXISTS budget"
# Layout 1's tables that differ from layout 2's (its user_version was 0).
LAYOUT_1_COLUMNS: Final = {
    "budget": ("key", "tat", "held_until", "burst", "recover_at", "next_ticket"),
    "lease": ("key", "id", "expires", "cooling"),
}

# Set when a store that holds new files initialised the file (see `BudgetRows.read`).
READ_CREATED: Final = "SELECT value FROM meta WHERE name = 'created'"
# The file's epoch comes with the row (no row at all: the epoch is gone), so the check
# that the file was not wiped costs no statement of its own.
READ_BUDGET: Final = """
SELECT m.value, b.tat, b.held_until, b.burst, b.recover_at, b.next_ticket, b.queued,
    b.live_ids, b.live_until, b.cooling
FROM meta AS m LEFT JOIN budget AS b ON b.key = ? WHERE m.name = 'epoch'
"""
# An UPDATE rewrites the row in place; INSERT OR REPLACE (a delete and an insert) costs
# twice as much per transaction.
ADD_BUDGET: Final = "INSERT INTO budget VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
WRITE_BUDGET: Final = """
UPDATE budget SET tat = ?, held_until = ?, burst = ?, recover_at = ?, next_ticket = ?,
    queued = ?, live_ids = ?, live_until = ?, cooling = ?
WHERE key = ?
"""
# Sorted by arrival in Python: a handful of rows, cheaper than SQLite's sorter.
READ_TICKETS: Final = "SELECT id, beat, seq FROM ticket WHERE key = ?"
ADD_TICKET: Final = "INSERT OR IGNORE INTO ticket VALUES (?, ?, ?, ?)"
DROP_TICKET: Final = "DELETE FROM ticket WHERE key = ? AND id = ?"
UNQUEUE: Final = "UPDATE budget SET queued = max(queued - 1, 0) WHERE key = ?"
DROP_LAPSED_TICKETS: Final = "DELETE FROM ticket WHERE key = ? AND beat <= ?"
BEAT_TICKET: Final = "UPDATE ticket SET beat = ? WHERE key = ? AND id = ?"
# The tickets of one process queued behind its head: lease ids are "<token>:<n>".
BEAT_PROCESS_TICKETS: Final = (
    "UPDATE ticket SET beat = ? WHERE key = ? AND id > ? AND id < ? AND beat < ?"
)

# What an acquire transaction answers.
GRANTED: Final = 1
WAIT: Final = 0
REFUSED: Final = -1


class EpochChangedError(Exception):
    """The file's epoch is not the one this transaction expected: it was wiped. The
    backend redoes the transaction after re-registering this process's leases."""


class Settings:
    """What every key's transactions need from the backend."""

    __slots__ = ("epoch", "inflight_ttl", "ticket_grace", "token", "touched")

    def __init__(self, *, inflight_ttl: float, ticket_grace: float, token: str) -> None:
        self.inflight_ttl = inflight_ttl
        self.ticket_grace = ticket_grace
        self.token = token  # this process's lease ids are "<token>:<n>"
        # The rows the open transaction read (their `taken` is resolved at its end).
        self.touched: list[BudgetRows] = []
        self.epoch: str | None = None  # the epoch the open transaction expects

    def __repr__(self) -> str:
        return f"Settings(token={self.token!r}, inflight_ttl={self.inflight_ttl:g})"


class Budget:
    """One budget row, read into Python; `write` puts it back (lapsed leases dropped)."""

    __slots__ = (
        "burst",
        "cooling",
        "held_until",
        "live",
        "new",
        "next_ticket",
        "queued",
        "recover_at",
        "tat",
    )

    def __init__(
        self, row: tuple[float, float, int, float, int, int, str, bytes, bytes], *, new: bool
    ) -> None:
        self.new = new  # not in the file yet
        self.tat, self.held_until, self.burst, self.recover_at = row[:4]
        self.next_ticket, self.queued = row[4:6]
        until = array("d")
        until.frombytes(row[7])
        self.live: dict[str, float] = dict(zip(row[6].split(), until, strict=True))
        self.cooling = array("d")  # expiries, ascending
        self.cooling.frombytes(row[8])

    def bound(self, now: float, *, window: float, inflight_ttl: float, recovery: float) -> None:
        """No stored time further ahead of `now` than its rule ever puts it: a cooling
        slot, a hold and the pacer's TAT at most a window, a live lease its TTL, a
        recovery its span. Only a wall clock stepped back makes one further, and the
        true remainder is never more than that span, so bounding it is never early."""
        cooling = self.cooling
        if cooling and cooling[-1] > now + window:
            self.cooling = array("d", (min(t, now + window) for t in cooling))
        self.held_until = min(self.held_until, now + window)
        self.tat = min(self.tat, now + window)
        if now + recovery < self.recover_at < inf:  # inf: nothing to recover
            self.recover_at = now + recovery
        live = self.live
        if any(t > now + inflight_ttl for t in live.values()):
            self.live = {k: min(t, now + inflight_ttl) for k, t in live.items()}

    def __repr__(self) -> str:
        return (
            f"Budget(tat={self.tat:g}, held_until={self.held_until:g}, burst={self.burst}, "
            f"live={len(self.live)}, cooling={len(self.cooling)})"
        )


class BudgetRows:
    """The transactions on one key's rows. `pending`: this process's releases not yet
    written, (lease id, cooling expiry); only the loop thread appends, and a
    transaction removes the prefix it wrote once it committed (`taken`)."""

    __slots__ = ("_interval", "_recovery", "name", "pending", "rate", "settings", "taken")

    def __init__(self, name: str, rate: RateLimit, settings: Settings) -> None:
        self.name = name
        self.rate = rate
        self.settings = settings
        self._interval = rate.window / rate.limit
        self._recovery = RATE_LIMIT_RECOVERY_WINDOWS * rate.window
        self.pending: list[tuple[str, float]] = []
        self.taken = -1  # how many of `pending` the open transaction wrote (-1: none)

    def __repr__(self) -> str:
        return f"BudgetRows({self.name!r}, pending={len(self.pending)})"

    # -- the row -----------------------------------------------------------------------

    def read(self, conn: sqlite3.Connection, now: float) -> Budget:
        """The budget row at `now`, burst recovery and this process's pending releases
        applied. A missing row starts empty, held until one window after the file's
        `created` when the file was initialised by a store that holds new files.
        Raises EpochChangedError when the file's epoch is not `settings.epoch`."""
        row = conn.execute(READ_BUDGET, (self.name,)).fetchone()
        if row is None or row[0] != self.settings.epoch:
            raise EpochChangedError(self.name)
        if row[1] is None:
            created = conn.execute(READ_CREATED).fetchone()
            held = float(created[0]) + self.rate.window if created else -inf
            budget = Budget((-inf, held, self.rate.limit, inf, 0, 0, "", b"", b""), new=True)
        else:
            budget = Budget(row[1:], new=False)
            budget.bound(
                now,
                window=self.rate.window,
                inflight_ttl=self.settings.inflight_ttl,
                recovery=self._recovery,
            )
        budget.burst, budget.recover_at = recover(
            burst=min(budget.burst, self.rate.limit),
            max_burst=self.rate.limit,
            recover_at=budget.recover_at,
            recovery=self._recovery,
            now=now,
        )
        if self.taken < 0:
            self.settings.touched.append(self)
        taken = self.taken = len(self.pending)
        if taken:
            live, cooling = budget.live, budget.cooling
            for lease_id, expires in self.pending[:taken]:
                live.pop(lease_id, None)
                insort(cooling, expires)
        return budget

    def write(self, conn: sqlite3.Connection, now: float, budget: Budget) -> None:
        live = budget.live
        if any(v <= now for v in live.values()):
            live = {k: v for k, v in live.items() if v > now}
        cooling = budget.cooling
        lapsed = bisect_right(cooling, now)
        values = (
            budget.tat,
            budget.held_until,
            budget.burst,
            budget.recover_at,
            budget.next_ticket,
            budget.queued,
            " ".join(live),
            array("d", live.values()).tobytes(),
            cooling[lapsed:].tobytes() if lapsed else cooling.tobytes(),
        )
        if budget.new:
            conn.execute(ADD_BUDGET, (self.name, *values))
            budget.new = False
        else:
            conn.execute(WRITE_BUDGET, (*values, self.name))

    def flush(self, conn: sqlite3.Connection, now: float) -> None:
        """Write this process's pending releases."""
        self.write(conn, now, self.read(conn, now))

    # -- acquire -----------------------------------------------------------------------

    def enqueue(
        self, conn: sqlite3.Connection, now: float, *, lease_id: str, try_at: float
    ) -> None:
        """Join the cross-process FIFO; the beat lasts until this process's head asks
        again (which extends it) plus the grace. `try_at` is the head's try-at, or `now`
        while the head is between answers: its next answer is at most a window away
        (a slot in flight, a hold and the pacer all free within one)."""
        budget = self.read(conn, now)
        beat = max(now + self.rate.window, try_at) + self.settings.ticket_grace
        added = conn.execute(ADD_TICKET, (self.name, lease_id, budget.next_ticket, beat))
        budget.queued += added.rowcount
        budget.next_ticket += 1
        self.write(conn, now, budget)

    def drop_ticket(self, conn: sqlite3.Connection, now: float, *, lease_id: str) -> None:
        """A waiter gave up (cancelled, failed, past its deadline)."""
        if conn.execute(DROP_TICKET, (self.name, lease_id)).rowcount:
            conn.execute(UNQUEUE, (self.name,))

    def _tickets(self, conn: sqlite3.Connection, now: float, budget: Budget) -> list[str]:
        """Live ticket ids by arrival; lapsed ones (a dead process's) deleted. A new row
        counts what the ticket table holds (a wiped file may keep its tickets)."""
        if not budget.queued and not budget.new:
            return []
        found = conn.execute(READ_TICKETS, (self.name,)).fetchall()
        found.sort(key=_by_seq)
        if any(beat <= now for _, beat, _ in found):
            conn.execute(DROP_LAPSED_TICKETS, (self.name, now))
        tickets = [tid for tid, beat, _ in found if beat > now]
        budget.queued = len(tickets)
        return tickets

    def ask(
        self, conn: sqlite3.Connection, now: float, *, lease_id: str, deadline: float | None
    ) -> tuple[int, float, int, float]:
        """One acquire attempt: (GRANTED, grant time `now`), (WAIT, seconds to the
        try-at) or (REFUSED, seconds), then the burst and the seconds of hold left."""
        name, rate = self.name, self.rate
        budget = self.read(conn, now)
        tickets = self._tickets(conn, now, budget)
        mine = lease_id in tickets
        # This process's place in the FIFO is its oldest ticket: the head's, or a local
        # follower's (the head took a ticket only once it had to wait, so a follower's
        # may be older). Local followers never count as ahead of their own head: they
        # cannot ask before it, so counting them could keep every head waiting.
        own = self.settings.token + ":"
        ahead = next((i for i, tid in enumerate(tickets) if tid.startswith(own)), len(tickets))
        cooling = budget.cooling[bisect_right(budget.cooling, now) :]
        in_flight = sum(1 for e in budget.live.values() if e > now)
        slot = slot_free_at(
            limit=rate.limit, ahead=ahead, in_flight=in_flight, cooling=cooling, now=now
        )
        paced = gcra_allowed_at(
            tat=budget.tat, interval=self._interval, burst=budget.burst, now=now, ahead=ahead
        )
        held = budget.held_until
        at = earliest_grant(
            slot_at=slot, window=rate.window, held_until=held, paced_at=paced, now=now
        )
        hold = held - now if held > now else 0.0
        if at <= now:
            budget.live[lease_id] = now + self.settings.inflight_ttl
            budget.tat = gcra_commit(tat=budget.tat, interval=self._interval, now=now)
            if mine:
                conn.execute(DROP_TICKET, (name, lease_id))
                budget.queued -= 1
            self.write(conn, now, budget)
            return GRANTED, now, budget.burst, hold
        if deadline is not None and at >= deadline:
            if mine:
                conn.execute(DROP_TICKET, (name, lease_id))
                budget.queued -= 1
            self.write(conn, now, budget)
            return REFUSED, at - now, budget.burst, hold
        if budget.burst < rate.limit and now < budget.recover_at < at:
            at = budget.recover_at  # the burst widens the pacer's tolerance: ask again then
        beat = at + self.settings.ticket_grace
        if mine:
            conn.execute(BEAT_TICKET, (beat, name, lease_id))
        else:
            conn.execute(ADD_TICKET, (name, lease_id, budget.next_ticket, beat))
            budget.next_ticket += 1
            budget.queued += 1
        self.write(conn, now, budget)
        # The tickets of this process's callers queued behind the head live as long as it
        # does: the head asks again by `at`.
        token = self.settings.token
        conn.execute(BEAT_PROCESS_TICKETS, (beat, name, token + ":", token + ";", beat))
        return WAIT, at - now, budget.burst, hold

    # -- 50011, a replaced file --------------------------------------------------------

    def limited(self, conn: sqlite3.Connection, now: float) -> tuple[int, float]:
        """OKX said 50011: (burst, seconds held) after the incident."""
        budget = self.read(conn, now)
        budget.burst, budget.held_until, budget.recover_at = incident(
            burst=budget.burst,
            held_until=budget.held_until,
            now=now,
            window=self.rate.window,
            recovery=self._recovery,
        )
        self.write(conn, now, budget)
        return budget.burst, budget.held_until - now

    def reregister(
        self,
        conn: sqlite3.Connection,
        now: float,
        *,
        live: Iterable[str],
        cooling: Iterable[float],
    ) -> None:
        """The file was replaced: put this process's leases back and hold the key one
        window (other processes' leases are lost with the old file)."""
        budget = self.read(conn, now)
        expires = now + self.settings.inflight_ttl
        for lease_id in live:
            budget.live.setdefault(lease_id, expires)
        for until in cooling:
            if until > now:
                insort(budget.cooling, until)
        budget.held_until = max(budget.held_until, now + self.rate.window)
        self.write(conn, now, budget)


def _by_seq(row: tuple[str, float, int]) -> int:
    return row[2]
