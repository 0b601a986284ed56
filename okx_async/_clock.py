"""Server-corrected timestamps: OKX refuses requests more than 30 s off its clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from ._auth import format_timestamp

__all__ = ["ServerClock"]

FetchServerTime = Callable[[], Awaitable[float]]  # returns the server's Unix time in seconds


class ServerClock:
    """Offset between OKX's clock and ours, synced once and again after a 50102.

    Concurrent first calls share one sync request: they all await the same future.
    """

    __slots__ = ("_offset", "_sync", "synced")

    def __init__(self) -> None:
        self._offset = 0.0
        # Read before every signed request: a plain attribute, not a property call.
        self.synced = False  # read-only outside this class
        self._sync: asyncio.Future[None] | None = None

    @property
    def offset(self) -> float:
        return self._offset

    def timestamp(self) -> str:
        return format_timestamp(time.time() + self._offset)

    async def ensure_synced(self, fetch: FetchServerTime) -> None:
        if not self.synced:
            await self.resync(fetch)

    async def resync(self, fetch: FetchServerTime) -> None:
        """Measure the offset again; joins a sync already under way."""
        if self._sync is None:
            self._sync = asyncio.ensure_future(self._measure(fetch))
            # If every waiter was cancelled, nobody reads a failure: mark it read.
            self._sync.add_done_callback(_consume_exception)
        sync = self._sync
        try:
            # shield: one caller's cancellation must not cancel the others' sync.
            await asyncio.shield(sync)
        finally:
            if sync.done() and self._sync is sync:
                self._sync = None

    async def _measure(self, fetch: FetchServerTime) -> None:
        before = time.time()
        server = await fetch()
        after = time.time()
        # The server read its clock somewhere in between; the midpoint halves the error.
        self._offset = server - (before + after) / 2
        self.synced = True

    def __repr__(self) -> str:
        state = f"offset={self._offset:+.3f}s" if self.synced else "not synced"
        return f"ServerClock({state})"


def _consume_exception(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
