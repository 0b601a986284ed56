"""An event loop whose clock is virtual: waiting costs no real time.

`VirtualTimeLoop.time()` returns a virtual clock. When the loop would block in
`select(timeout)`, the selector polls the real file descriptors without waiting and, if
none is ready, moves the virtual clock forward by `timeout` instead of sleeping. So timers
fire in the right order at exactly their virtual time, and a test of a 2 s window runs in
microseconds. If the loop would wait forever (no timer, no ready fd), that is a deadlock
in the code under test and `select` raises `VirtualDeadlockError` instead of hanging.

The clock stands still while callbacks run. Code that relies on the clock creeping
forward between loop iterations (aiolimiter re-arms a timer at "now" for a float residue
of 1e-15 and waits for time to pass it) would spin forever at one instant: give it
`tick`, virtual seconds added on every loop iteration. A loop that spins `spin_limit`
iterations without the clock moving raises `VirtualLivelockError` rather than hanging.

Anything that reaches the loop's exception handler (an error raised inside a timer or
`call_soon` callback, an unretrieved task exception) would otherwise only be logged, and
the test would pass. `run_virtual` collects those reports and raises
`VirtualCallbackError` once the coroutine is done, so such a bug fails its test.

Real I/O still works when the peer answers within the same loop (loopback sockets whose
data is already readable). Threads (`run_in_executor`, `getaddrinfo`) need `io_wait`: real
seconds to wait for an fd before the virtual clock moves on. A server in another process
(redis-server) needs `hold`: while `hold()` is true (say, a call to it is under way) the
loop waits for real I/O, up to `hold_wait` real seconds, and the clock stands still, so
the call takes no virtual time whatever the machine's load.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

__all__ = [
    "VirtualCallbackError",
    "VirtualDeadlockError",
    "VirtualLivelockError",
    "VirtualTimeLoop",
    "run_virtual",
]

T = TypeVar("T")

_Events = list[tuple[selectors.SelectorKey, int]]


class VirtualDeadlockError(RuntimeError):
    """The loop would wait forever: nothing is scheduled and no fd can become ready."""


class VirtualLivelockError(RuntimeError):
    """The loop kept running callbacks at one virtual instant without end."""


class VirtualCallbackError(AssertionError):
    """Something reached the loop's exception handler during the run (see the module
    docstring); `contexts` holds the handler's context dicts, the first cause chained."""

    def __init__(self, contexts: list[dict[str, Any]]) -> None:
        lines = [f"{c.get('message', '')}: {c.get('exception')!r}" for c in contexts]
        super().__init__(
            f"{len(contexts)} error(s) reached the loop's exception handler:\n" + "\n".join(lines)
        )
        self.contexts = contexts


class _VirtualSelector(selectors.BaseSelector):
    """Delegates to a real selector; turns waiting into advancing the virtual clock."""

    def __init__(
        self,
        loop: VirtualTimeLoop,
        io_wait: float,
        tick: float,
        spin_limit: int,
        hold: Callable[[], bool] | None = None,
        hold_wait: float = 10.0,
    ) -> None:
        self._inner = selectors.DefaultSelector()
        self._hold = hold
        self._hold_wait = hold_wait
        self._loop = loop
        self._io_wait = io_wait
        self._tick = tick
        self._spin_limit = spin_limit
        self._spins = 0
        self._last = loop.time()

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()

    def select(self, timeout: float | None = None) -> _Events:
        if self._tick:
            self._loop.advance(self._tick)
            if timeout is not None:
                timeout = max(timeout - self._tick, 0.0)
        now = self._loop.time()
        if now != self._last:
            self._last, self._spins = now, 0
        self._spins += 1
        if self._spins > self._spin_limit:
            raise VirtualLivelockError(
                f"{self._spin_limit} loop iterations at virtual time {now!r} without the "
                "clock moving"
            )
        ready = self._inner.select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if self._hold is not None and self._hold():
            ready = self._inner.select(self._hold_wait)
            if not ready:
                raise VirtualDeadlockError(f"held for I/O, none came in {self._hold_wait}s")
            return ready
        if self._io_wait > 0:
            wait = self._io_wait if timeout is None else min(self._io_wait, timeout)
            ready = self._inner.select(wait)
            if ready:
                return ready
        if timeout is None:
            raise VirtualDeadlockError(
                f"virtual time {self._loop.time():.6f}: nothing is scheduled and no fd is "
                "ready, so the loop would wait forever"
            )
        self._loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop on a virtual clock that starts at `start`."""

    def __init__(
        self,
        *,
        start: float = 0.0,
        io_wait: float = 0.0,
        tick: float = 0.0,
        spin_limit: int = 100_000,
        hold: Callable[[], bool] | None = None,
    ) -> None:
        self._virtual_now = start
        super().__init__(_VirtualSelector(self, io_wait, tick, spin_limit, hold))

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move the virtual clock forward (the selector does this instead of sleeping)."""
        if seconds < 0:
            raise ValueError("virtual time only moves forward")
        self._virtual_now += seconds


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception in a task left at run_virtual's end",
                    "exception": task.exception(),
                    "task": task,
                }
            )


def run_virtual(
    coro_fn: Callable[[], Coroutine[Any, Any, T]],
    *,
    start: float = 0.0,
    io_wait: float = 0.0,
    tick: float = 0.0,
    spin_limit: int = 100_000,
    hold: Callable[[], bool] | None = None,
) -> T:
    """Run `coro_fn()` to completion on a fresh VirtualTimeLoop, then close it cleanly
    (cancelling leftover tasks, like asyncio.run)."""
    loop = VirtualTimeLoop(
        start=start, io_wait=io_wait, tick=tick, spin_limit=spin_limit, hold=hold
    )
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        result = loop.run_until_complete(coro_fn())
    finally:
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
    if reported:
        error = VirtualCallbackError(reported)
        first = reported[0].get("exception")
        if isinstance(first, BaseException):
            raise error from first
        raise error
    return result
