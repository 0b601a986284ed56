"""Per-(user, currency) ordering and coalescing of set-offset updates.

A *lane* holds the updates of one currency of one user. It sends them one at a time, in
submission order, so an older value can never overtake a newer one. With coalescing, a
newer value replaces every older value still waiting: those are never sent, and their
callers learn which value was applied instead. A retry of an older value is dropped
(`SupersededError`) once a newer value waits, for the same reason.

A request whose fate is unknown (timed out, connection dropped, 50004, cancelled on the
wire) may still be applied by the exchange later, after a newer value. The lane remembers
each such request as (value, landing horizon) and, once its newest value has been applied,
sends that value once more (a *re-assert*) after the latest horizon of any other value has
passed: whatever lands late, the newest value lands last. The settling state lives on the
lane (`note_uncertain`, `_record_applied`, `_arm_settle`); with a shared lane store
(`_lane_store`) the sender imports other processes' entries (`import_uncertain`) when it
takes the currency's claim and leaves its own when it gives the claim up.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from decimal import Decimal

from ._models import RiskOffsetResult

__all__ = ["Lane", "LaneRegistry", "SupersededError", "Update"]


class SupersededError(Exception):
    """Internal signal: stop retrying, a newer value for this currency waits. `newest`
    (Decimal | None): set when that value was submitted in another process sharing the
    lane store; this one is then not sent (again) and answers with `newest`."""

    def __init__(self, newest: Decimal | None = None) -> None:
        super().__init__()
        self.newest = newest


_TIMER_SLACK = 1e-6  # seconds; far below any network delay

SendUpdate = Callable[["Update", "Lane"], Awaitable[Decimal]]


class Update:
    """One submitted value and everyone waiting for its outcome."""

    __slots__ = (
        "amount",
        "attempts",
        "ccy",
        "deadline",
        "future",
        "reassert",
        "replaced",
        "send",
        "seq",
        "text",
    )

    def __init__(
        self,
        *,
        ccy: str,
        text: str,
        amount: Decimal,
        deadline: float | None,
        send: SendUpdate,
        future: asyncio.Future[RiskOffsetResult],
    ) -> None:
        self.ccy = ccy
        self.text = text
        self.amount = amount
        self.deadline = deadline
        self.send = send
        self.future = future
        # Older updates whose callers wait on this one; a list only once there are any.
        self.replaced: list[Update] | tuple[()] = ()
        self.attempts = 0  # requests carrying this value that went out (Lane.attempt_sent)
        self.reassert = False  # sent by the lane itself to settle an uncertain outcome
        self.seq = 0  # the shared lane store's sequence number (0: no shared store)

    def again(self) -> Update:
        """A re-assert of this value: nobody awaits it, so its outcome is consumed here."""
        future: asyncio.Future[RiskOffsetResult] = self.future.get_loop().create_future()
        future.add_done_callback(_consume)
        update = Update(
            ccy=self.ccy,
            text=self.text,
            amount=self.amount,
            deadline=None,
            send=self.send,
            future=future,
        )
        update.reassert = True
        update.seq = self.seq  # a newer value of another process supersedes it too
        return update

    def is_wanted(self) -> bool:
        """False when every caller waiting on this value has gone (cancelled, closed)."""
        return not self.future.done() or any(not u.future.done() for u in self.replaced)

    def absorb(self, older: Update) -> None:
        replaced = self.replaced if isinstance(self.replaced, list) else []
        replaced.append(older)
        replaced.extend(older.replaced)
        self.replaced = replaced
        older.replaced = ()

    def resolve(self, applied: Decimal) -> None:
        if not self.future.done():
            self.future.set_result(
                RiskOffsetResult(self.ccy, applied, self.amount, attempts=self.attempts)
            )
        for old in self.replaced:
            if not old.future.done():
                # Superseded only if never sent: a value that went out (and whose retry
                # was dropped for this newer one) may have been applied in between.
                superseded = old.attempts == 0
                old.future.set_result(
                    RiskOffsetResult(self.ccy, applied, old.amount, superseded, old.attempts)
                )

    def resolve_elsewhere(self, newest: Decimal) -> None:
        """Another process submitted `newest` after this value: this one is not sent."""
        for update in (self, *self.replaced):
            if not update.future.done():
                update.future.set_result(
                    RiskOffsetResult(
                        self.ccy, newest, update.amount, update.attempts == 0, update.attempts
                    )
                )

    def fail(self, error: BaseException) -> None:
        for update in (self, *self.replaced):
            if not update.future.done():
                update.future.set_exception(error)

    def __repr__(self) -> str:
        return f"Update({self.ccy} -> {self.text}, waiting={len(self.replaced) + 1})"


class Lane:
    """The queue of one (environment, user, currency); one worker task while busy."""

    __slots__ = (
        "_applied",
        "_current",
        "_queue",
        "_registry",
        "_settle",
        "_uncertain",
        "_worker",
        "key",
        "newer_elsewhere",
    )

    def __init__(self, key: Hashable, registry: dict[Hashable, Lane]) -> None:
        self.key = key
        self._queue: deque[Update] = deque()
        self._current: Update | None = None
        self._worker: asyncio.Task[None] | None = None
        # The registry's dict, which an idle lane leaves (a dict call, not a Python one).
        self._registry = registry
        # (value, landing horizon in loop time) of requests whose fate is unknown and
        # that no later successful send is known to have overwritten.
        self._uncertain: list[tuple[Decimal, float]] = []
        # The newest value known applied, while no later value has failed.
        self._applied: Update | None = None
        self._settle: asyncio.TimerHandle | None = None  # the pending re-assert
        # While a shared lane store holds the claim: whether another process submitted
        # a newer value (set and cleared by the sender).
        self.newer_elsewhere: Callable[[], bool] | None = None

    def submit(self, update: Update, *, coalesce: bool) -> None:
        if coalesce:
            while self._queue:
                update.absorb(self._queue.popleft())
        self._queue.append(update)
        if self._worker is None and self._current is None:
            self._disarm_settle()  # the new value settles the lane instead
            self._worker = asyncio.get_running_loop().create_task(self._run())

    def claim(self, update: Update) -> bool:
        """True when the lane is idle: the caller then sends `update` itself with
        `run_inline`, saving a worker task on the common path."""
        if self._current is not None or self._worker is not None or self._queue:
            return False
        if self._settle is not None:
            self._disarm_settle()
        self._current = update
        return True

    async def run_inline(self, update: Update) -> None:
        """Send a claimed update in the caller's task. Its outcome lands in its future;
        values submitted meanwhile are handed to a worker afterwards."""
        # Only entries older than the send can be pruned by its success; none: no clock.
        started = update.future.get_loop().time() if self._uncertain else 0.0
        try:
            applied = await update.send(update, self)
        except asyncio.CancelledError:
            update.future.cancel()  # the caller went away mid-send; nobody else waits
            self._applied = None  # its fate is unknown: never re-assert an older value
            raise
        except Exception as exc:
            self._after_failure(update, exc)
        else:
            self._record_applied(update, started)
            update.resolve(applied)
        finally:
            self._current = None
            if self._queue:
                self._worker = asyncio.get_running_loop().create_task(self._run())
            else:
                self._leave_registry()

    def has_newer(self) -> bool:
        """True while another value waits behind the one being sent (here, or in another
        process sharing the lane store)."""
        if self._queue:
            return True
        elsewhere = self.newer_elsewhere
        return elsewhere is not None and elsewhere()

    def import_uncertain(self, entries: list[tuple[Decimal, float]]) -> None:
        """Uncertain (value, landing loop time) entries another process left: this lane
        waits them out (re-asserts its newest value after them) like its own."""
        known = set(self._uncertain)
        self._uncertain.extend(entry for entry in entries if entry not in known)

    def uncertain_entries(self) -> list[tuple[Decimal, float]]:
        """This lane's uncertain (value, landing loop time) entries (a copy)."""
        return list(self._uncertain)

    def attempt_sent(self) -> None:
        """The sender put a request for the current value on the wire (counts attempts)."""
        if self._current is not None:
            self._current.attempts += 1

    def note_uncertain(self, landing: float) -> None:
        """The current value's last request ended without a known outcome: the exchange
        may still apply it, up to loop time `landing`."""
        if self._current is not None:
            self._uncertain.append((self._current.amount, landing))

    async def _run(self) -> None:
        try:
            while self._queue:
                update = self._queue.popleft()
                if not update.is_wanted():
                    continue  # all its callers left before it was sent: send nothing
                self._current = update
                started = update.future.get_loop().time() if self._uncertain else 0.0
                try:
                    applied = await update.send(update, self)
                except asyncio.CancelledError:
                    self._applied = None  # as in run_inline
                    update.fail(asyncio.CancelledError())
                    for rest in self._queue:
                        rest.fail(asyncio.CancelledError())
                    self._queue.clear()
                    raise
                except Exception as exc:
                    self._after_failure(update, exc)
                else:
                    self._record_applied(update, started)
                    update.resolve(applied)
                finally:
                    self._current = None
        finally:
            self._worker = None
            if not self._queue:
                self._leave_registry()

    def _leave_registry(self) -> None:
        # Only if it is still the registered one: a caller may hold this lane after the
        # registry dropped it and made a new one, which must stay while it is busy.
        if self._registry.get(self.key) is self and not (self._uncertain and self._arm_settle()):
            # (A lane that must settle stays registered: a re-assert is due, or its
            # uncertain entries must outlive it for the next value to wait them out.)
            del self._registry[self.key]

    def _after_failure(self, update: Update, error: Exception) -> None:
        # Sent inline by run_inline and by the worker alike, without a coroutine of its
        # own: each waiting call keeps its coroutines alive.
        if isinstance(error, SupersededError) and error.newest is not None:
            # Not sent; the other process's newer value is the lane's last word.
            update.resolve_elsewhere(error.newest)
            self._applied = None  # re-asserting an older value here would undo it
        elif not isinstance(error, SupersededError):
            update.fail(error)
            # The newest value was not applied: re-asserting an older one could undo it
            # if it lands late, so the lane settles again only after a later success.
            self._applied = None
        elif self._queue:  # a newer value waits; it answers for this one too
            self._queue[0].absorb(update)
        else:  # the newer one was withdrawn meanwhile: ours is the latest again
            self._queue.appendleft(update)

    # -- settling uncertain outcomes --------------------------------------------------

    def _record_applied(self, update: Update, started: float) -> None:
        self._applied = update
        if self._uncertain:
            # Whatever landed before this value's first request went out was overwritten.
            # The slack: the loop runs a timer up to its clock resolution early, and a
            # re-assert started by its timer must settle the entry it was timed for.
            cutoff = started + _TIMER_SLACK
            self._uncertain = [entry for entry in self._uncertain if entry[1] > cutoff]

    def settle_due(self) -> float | None:
        """Loop time at which the newest applied value must be sent again, or None."""
        applied = self._applied
        if applied is None or not self._uncertain:
            return None
        # Requests of the newest value itself may land whenever: they write that value.
        return max(
            (landing for amount, landing in self._uncertain if amount != applied.amount),
            default=None,
        )

    def _arm_settle(self) -> bool:
        """Called when the lane goes idle: True (and a timer set) while it must stay
        registered, for a re-assert or until its uncertain entries have expired."""
        due = self.settle_due()
        loop = asyncio.get_running_loop()
        if due is None:
            now = loop.time()
            self._uncertain = [entry for entry in self._uncertain if entry[1] > now]
            if not self._uncertain:
                return False
            # Harmless now, but a newer value would have to wait them out: keep them.
            due = max(landing for _, landing in self._uncertain)
        self._disarm_settle()
        self._settle = loop.call_at(due, self._on_settle_timer)
        return True

    def _disarm_settle(self) -> None:
        if self._settle is not None:
            self._settle.cancel()
            self._settle = None

    def _on_settle_timer(self) -> None:
        self._settle = None
        if self._current is not None or self._worker is not None:
            return  # busy: the lane re-arms when it is idle again
        applied = self._applied
        if applied is not None and self.settle_due() is not None:
            self._queue.append(applied.again())
            self._worker = asyncio.get_running_loop().create_task(self._run())
        else:
            self._leave_registry()

    def stop_settling(self, send: SendUpdate) -> bool:
        """Drop the pending re-assert if `send` would send it (its client closes).
        True when one was pending: that lane's late landings stay uncertain."""
        applied = self._applied
        if applied is None or applied.send != send:
            return False
        pending = self._settle is not None
        self._disarm_settle()
        self._applied = None
        if self._current is None and self._worker is None and not self._queue:
            self._leave_registry()
        return pending

    def __repr__(self) -> str:
        busy = "sending" if self._current is not None else "idle"
        settle = ", settling" if self._settle is not None else ""
        return f"Lane({self.key!r}, {busy}, waiting={len(self._queue)}{settle})"


class LaneRegistry:
    """Lanes by key; idle lanes are dropped so the registry does not grow without bound."""

    __slots__ = ("_lanes",)

    def __init__(self) -> None:
        self._lanes: dict[Hashable, Lane] = {}

    def lane(self, key: Hashable) -> Lane:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = Lane(key, self._lanes)
        return lane

    def stop_settling(self, send: SendUpdate) -> int:
        """Stop every pending re-assert that `send` would send; how many were pending."""
        return sum(lane.stop_settling(send) for lane in list(self._lanes.values()))

    def __len__(self) -> int:
        return len(self._lanes)

    def __repr__(self) -> str:
        return f"LaneRegistry(lanes={len(self._lanes)})"


def _consume(future: asyncio.Future[RiskOffsetResult]) -> None:
    # A re-assert's failure is reported through the client's stats and events, not here.
    if not future.cancelled():
        future.exception()
