"""The callers of one process waiting for one key of a shared store (sqlite, Redis).

Only the head of the queue talks to the store; the others wait their turn in FIFO
order, so one process asks the store once per grant, not once per waiting caller. The
admission rules are the same for every shared store: a caller whose deadline falls
before the head's next try cannot be served in time, and at most `max_pending` callers
wait behind the head.
"""

from __future__ import annotations

import asyncio
from collections import deque

from .._errors import DeadlineExceededError, QueueFullError
from .._limits import LimiterKey

__all__ = ["HeadQueue"]


class HeadQueue:
    """FIFO of turns (futures resolved when a caller becomes the head). `head_try_at`:
    the loop time the head waits for (0.0 when it is not waiting); nobody behind it can
    be granted earlier."""

    __slots__ = ("_turns", "head_try_at")

    def __init__(self) -> None:
        self._turns: deque[asyncio.Future[None]] = deque()
        self.head_try_at = 0.0

    def __len__(self) -> int:
        return len(self._turns)

    def join(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        key: LimiterKey,
        deadline: float | None,
        max_pending: int,
    ) -> asyncio.Future[None]:
        """A new turn at the back (already done when the queue was empty). Raises
        DeadlineExceededError or QueueFullError when the caller cannot be admitted."""
        if deadline is not None and loop.time() >= deadline:
            raise DeadlineExceededError(f"deadline passed before asking for a slot of {key}")
        if self._turns and deadline is not None and deadline <= self.head_try_at:
            raise DeadlineExceededError(f"the caller ahead waits for {key} until past the deadline")
        # The head (talking to the store) does not count: `max_pending` callers may wait.
        if len(self._turns) > max_pending:
            raise QueueFullError(
                f"{len(self._turns) - 1} calls already wait for {key} (max_pending={max_pending})"
            )
        turn: asyncio.Future[None] = loop.create_future()
        self._turns.append(turn)
        if len(self._turns) == 1:
            turn.set_result(None)
        return turn

    async def wait(
        self,
        turn: asyncio.Future[None],
        loop: asyncio.AbstractEventLoop,
        *,
        key: LimiterKey,
        deadline: float | None,
    ) -> None:
        """Until `turn` is the head's; DeadlineExceededError if `deadline` comes first."""
        if turn.done():
            return
        timeout = None if deadline is None else deadline - loop.time()
        await asyncio.wait((turn,), timeout=timeout)
        if not turn.done():
            raise DeadlineExceededError(f"deadline passed while queued locally for {key}")

    def leave(self, turn: asyncio.Future[None]) -> None:
        """Take `turn` out (granted, failed or cancelled); the next one becomes the head."""
        turns = self._turns
        if turns and turns[0] is turn:
            turns.popleft()
            if turns:
                turns[0].set_result(None)
        else:
            turns.remove(turn)

    def __repr__(self) -> str:
        return f"HeadQueue(waiting={len(self._turns)}, head_try_at={self.head_try_at:.3f})"
