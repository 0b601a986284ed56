"""What one process knows about one Redis budget, apart from Redis's answers: its leases,
the reports Redis has yet to hear, and the epoch it last saw.

Vocabulary (one meaning each, here and in `_redis_scripts`):

- release: a lease's holder is done; the lease cools one window from then.
- forget: drop whatever Redis holds under an id (a lease never used, a ticket given up).
- register: make Redis count a lease it does not know (a fallback lease adopted after an
  outage, or this process's leases again after Redis lost its state).
- report: one script call carrying any number of releases, forgets and registrations.
- expire: drop an entry older than the in-flight TTL: Redis let whatever it was lapse.
"""

from __future__ import annotations

import math
from collections import deque

from ._limits import Lease
from ._redis_scripts import REPORT_FORGET, REPORT_IN_FLIGHT

__all__ = ["EpochWatch", "LeaseBook", "Outbox", "RedisLease", "Report"]


class RedisLease:
    """One lease: granted by Redis, or by the local fallback while Redis was away."""

    __slots__ = ("_inner", "adopted", "lease_id", "released", "released_at")

    def __init__(self, lease_id: str, inner: Lease | None = None) -> None:
        self.lease_id = lease_id
        self._inner = inner  # the fallback's lease, if the fallback granted this one
        self.adopted = inner is None  # whether Redis knows about it
        self.released = False
        self.released_at = 0.0  # loop time

    @property
    def from_fallback(self) -> bool:
        return self._inner is not None

    @property
    def inner(self) -> Lease | None:
        """The fallback limiter's lease (None for a lease Redis granted)."""
        return self._inner

    def cooling_us(self, now: float, window: float) -> int:
        """µs this released lease still cools at loop time `now` (0 once cooled)."""
        return cooling_us(self.released_at, now, window)

    def __repr__(self) -> str:
        origin = "fallback" if self._inner is not None else "redis"
        state = "released" if self.released else "in flight"
        return f"<RedisLease {self.lease_id} {origin} {state}>"


def cooling_us(released_at: float, now: float, window: float) -> int:
    """µs a lease released at loop time `released_at` still cools at `now` (>= 0)."""
    return max(0, math.ceil((released_at + window - now) * 1e6))


class Report:
    """The (lease id, value) pairs of one report call, and what they cover: `sent` the
    outbox entries, `adopted` the fallback leases registered, `loss` the loss whose
    re-registration they carry (0: none). Value: µs of cooling (a release),
    REPORT_IN_FLIGHT (register) or REPORT_FORGET."""

    __slots__ = ("adopted", "loss", "pairs", "sent")

    def __init__(self) -> None:
        self.pairs: list[str | int] = []
        self.sent: dict[str, tuple[float, bool]] = {}
        self.adopted: list[RedisLease] = []
        self.loss = 0

    def add(self, lease_id: str, value: int) -> None:
        self.pairs += [lease_id, value]

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def __repr__(self) -> str:
        return (
            f"<Report pairs={len(self.pairs) // 2} sent={len(self.sent)} "
            f"adopted={len(self.adopted)} loss={self.loss}>"
        )


class Outbox:
    """Releases, forgets and a 50011 that Redis has yet to hear from this process (a call
    failed, or was cancelled): sent with the key's next call. An entry is lease id ->
    (loop time, True: released then | False: forget, asked then)."""

    __slots__ = ("entries", "limited")

    def __init__(self) -> None:
        self.entries: dict[str, tuple[float, bool]] = {}
        self.limited = False  # a 50011 Redis has not applied yet

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __repr__(self) -> str:
        return f"<Outbox entries={len(self.entries)} limited={self.limited}>"

    def release(self, lease_id: str, at: float) -> None:
        self.entries[lease_id] = (at, True)

    def forget(self, lease_id: str, at: float) -> None:
        self.entries[lease_id] = (at, False)

    def add_to(self, report: Report, now: float, *, window: float, ttl: float) -> None:
        """Put every entry into `report` (after expiring those older than `ttl`)."""
        for lease_id, (when, _) in list(self.entries.items()):
            if now - when > ttl:
                del self.entries[lease_id]
        report.sent = dict(self.entries)
        for lease_id, (when, released) in report.sent.items():
            report.add(lease_id, cooling_us(when, now, window) if released else REPORT_FORGET)

    def delivered(self, sent: dict[str, tuple[float, bool]]) -> None:
        """Redis heard `sent`: drop the entries not changed since."""
        for lease_id, value in sent.items():
            if self.entries.get(lease_id) == value:
                del self.entries[lease_id]


class LeaseBook:
    """This process's leases of one key: in flight, and released ones still cooling
    (loop time they stop cooling, lease id), oldest first."""

    __slots__ = ("cooling", "in_flight")

    def __init__(self) -> None:
        self.in_flight: set[RedisLease] = set()
        self.cooling: deque[tuple[float, str]] = deque()

    def __repr__(self) -> str:
        return f"<LeaseBook in_flight={len(self.in_flight)} cooling={len(self.cooling)}>"

    def expire(self, now: float) -> int:
        """Drop the leases that stopped cooling by `now`; how many still cool."""
        cooling = self.cooling
        while cooling and cooling[0][0] <= now:
            cooling.popleft()
        return len(cooling)

    def released(self, lease: RedisLease, now: float, window: float) -> None:
        self.in_flight.discard(lease)
        self.expire(now)
        self.cooling.append((now + window, lease.lease_id))

    def register_all(self, report: Report, now: float) -> None:
        """Register every lease still live or cooling (after Redis lost its state)."""
        for lease in self.in_flight:
            report.add(lease.lease_id, REPORT_IN_FLIGHT)
        for until, lease_id in self.cooling:
            if until > now:
                report.add(lease_id, math.ceil((until - now) * 1e6))


class EpochWatch:
    """The epoch (id, seq) Redis last reported for one budget, when, and the losses seen:
    after a loss this process registers its leases again before it is granted."""

    __slots__ = ("_contact", "_id", "_losses", "_registered", "_seq")

    def __init__(self) -> None:
        self._id = ""
        self._seq = 0
        self._contact = 0.0  # loop time of the last answer
        self._losses = 0  # losses seen
        self._registered = 0  # up to which loss this process's leases are registered

    def __repr__(self) -> str:
        return (
            f"<EpochWatch id={self._id or '-'} seq={self._seq} losses={self._losses} "
            f"registered={self._registered}>"
        )

    def known(self, now: float, ttl: float) -> tuple[str, int]:
        """The (id, seq) to send: none once the marker may have expired (not a loss)."""
        if now - self._contact > ttl:
            return "", 0
        return self._id, self._seq

    @property
    def registration_due(self) -> bool:
        return self._losses > self._registered

    def loss_to_register(self) -> int:
        """The loss a report should register for now (0: none due)."""
        return self._losses if self.registration_due else 0

    def observe(self, epoch: list[int], now: float, *, registered_for: int) -> bool:
        """Take the epoch tail of an answer (id, seq, lost); whether it reports a loss.
        `registered_for`: the loss the call's report registered this process's leases for."""
        epoch_id, seq, lost = epoch
        if str(epoch_id) == self._id:
            seq = max(seq, self._seq)
        self._id, self._seq = str(epoch_id), seq
        self._contact = now
        if lost:
            self._losses += 1
        elif registered_for:
            self._registered = max(self._registered, registered_for)
        return bool(lost)
