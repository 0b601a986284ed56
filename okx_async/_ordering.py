"""Per-(user, currency) ordering and coalescing of set-offset updates.

A *lane* holds the updates of one currency of one user. It sends them one at a time, in
submission order, so an older value can never overtake a newer one. With coalescing, a
newer value replaces every older value still waiting: those are never sent, and their
callers learn which value was applied instead. A retry of an older value is dropped
(`SupersededError`) once a newer value waits, for the same reason.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from decimal import Decimal
from weakref import WeakKeyDictionary

from ._models import RiskOffsetResult

__all__ = ["Lane", "LaneRegistry", "SupersededError", "Update", "lanes_for_running_loop"]


class SupersededError(Exception):
    """Internal signal: stop retrying, a newer value for this currency waits."""


SendUpdate = Callable[["Update", "Lane"], Awaitable[Decimal]]


class Update:
    """One submitted value and everyone waiting for its outcome."""

    __slots__ = ("amount", "ccy", "deadline", "future", "replaced", "send", "text")

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
            self.future.set_result(RiskOffsetResult(self.ccy, applied, self.amount))
        for old in self.replaced:
            if not old.future.done():
                old.future.set_result(RiskOffsetResult(self.ccy, applied, old.amount, True))

    def fail(self, error: BaseException) -> None:
        for update in (self, *self.replaced):
            if not update.future.done():
                update.future.set_exception(error)

    def __repr__(self) -> str:
        return f"Update({self.ccy} -> {self.text}, waiting={len(self.replaced) + 1})"


class Lane:
    """The queue of one (environment, user, currency); one worker task while busy."""

    __slots__ = ("_current", "_queue", "_registry", "_worker", "key")

    def __init__(self, key: Hashable, registry: dict[Hashable, Lane]) -> None:
        self.key = key
        self._queue: deque[Update] = deque()
        self._current: Update | None = None
        self._worker: asyncio.Task[None] | None = None
        # The registry's dict, which an idle lane leaves (a dict call, not a Python one).
        self._registry = registry

    def submit(self, update: Update, *, coalesce: bool) -> None:
        if coalesce:
            while self._queue:
                update.absorb(self._queue.popleft())
        self._queue.append(update)
        if self._worker is None and self._current is None:
            self._worker = asyncio.get_running_loop().create_task(self._run())

    def claim(self, update: Update) -> bool:
        """True when the lane is idle: the caller then sends `update` itself with
        `run_inline`, saving a worker task on the common path."""
        if self._current is not None or self._worker is not None or self._queue:
            return False
        self._current = update
        return True

    async def run_inline(self, update: Update) -> None:
        """Send a claimed update in the caller's task. Its outcome lands in its future;
        values submitted meanwhile are handed to a worker afterwards."""
        try:
            applied = await update.send(update, self)
        except asyncio.CancelledError:
            update.future.cancel()  # the caller went away mid-send; nobody else waits
            raise
        except Exception as exc:
            self._settle_failure(update, exc)
        else:
            update.resolve(applied)
        finally:
            self._current = None
            if self._queue:
                self._worker = asyncio.get_running_loop().create_task(self._run())
            else:
                self._leave_registry()

    def has_newer(self) -> bool:
        """True while another value waits behind the one being sent."""
        return bool(self._queue)

    async def _run(self) -> None:
        try:
            while self._queue:
                update = self._queue.popleft()
                if not update.is_wanted():
                    continue  # all its callers left before it was sent: send nothing
                self._current = update
                try:
                    applied = await update.send(update, self)
                except asyncio.CancelledError:
                    update.fail(asyncio.CancelledError())
                    for rest in self._queue:
                        rest.fail(asyncio.CancelledError())
                    self._queue.clear()
                    raise
                except Exception as exc:
                    self._settle_failure(update, exc)
                else:
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
        if self._registry.get(self.key) is self:
            del self._registry[self.key]

    def _settle_failure(self, update: Update, error: Exception) -> None:
        # Sent inline by run_inline and by the worker alike, without a coroutine of its
        # own: each waiting call keeps its coroutines alive.
        if not isinstance(error, SupersededError):
            update.fail(error)
        elif self._queue:  # a newer value waits; it answers for this one too
            self._queue[0].absorb(update)
        else:  # the newer one was withdrawn meanwhile: ours is the latest again
            self._queue.appendleft(update)

    def __repr__(self) -> str:
        busy = "sending" if self._current is not None else "idle"
        return f"Lane({self.key!r}, {busy}, waiting={len(self._queue)})"


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

    def __len__(self) -> int:
        return len(self._lanes)

    def __repr__(self) -> str:
        return f"LaneRegistry(lanes={len(self._lanes)})"


_REGISTRIES: WeakKeyDictionary[asyncio.AbstractEventLoop, LaneRegistry] = WeakKeyDictionary()


def lanes_for_running_loop() -> LaneRegistry:
    """One registry per event loop: every client of a user in this loop shares its lanes."""
    loop = asyncio.get_running_loop()
    registry = _REGISTRIES.get(loop)
    if registry is None:
        registry = _REGISTRIES[loop] = LaneRegistry()
    return registry
