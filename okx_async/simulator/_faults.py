"""Fault injection: which fault a request gets, and what the fault does to its answer.

A request that passed authentication and rate limiting takes, in this order: the next
scripted fault of a set request, else a random one (`Faults.rate`), else the next hold
of its currency, else no fault. Drop, stall and timeout_50004 are ambiguous: the value
may be applied before the fault (`Faults.applied_before_fault`, or the script's choice).
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable, Iterable
from typing import Final

from aiohttp import web

from ._endpoints import FAULT_REPLIES, NO_REPLY, Reply, okx
from ._state import ALL_FAULT_KINDS, SET_PATH, Faults

_AMBIGUOUS: Final = frozenset({"drop", "stall", "timeout_50004"})

# The endpoint's own answer to a request and whether it changed a value; called at most
# once per request, at the moment the simulated exchange applies it.
Process = Callable[[], tuple[Reply, bool]]


class FaultInjector:
    """The simulator's faults: the random ones of `faults`, a script of the next set
    requests' faults, per-currency holds, and the stalls waiting to be released."""

    __slots__ = ("_faults", "_holds", "_rng", "_script", "_stalls")

    def __init__(self, faults: Faults) -> None:
        self._faults = faults
        self._rng = random.Random(faults.seed)
        self._script: deque[tuple[str | None, bool | None]] = deque()
        self._stalls: set[asyncio.Future[None]] = set()
        self._holds: dict[str, deque[float]] = {}  # ccy -> seconds, see hold

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._faults = faults
        self._rng = random.Random(faults.seed)  # same seed, same fault sequence

    def script(self, kinds: Iterable[str | None], applied: bool | None) -> None:
        """Queue one fault (None: none) per kind for the next set requests. Raises
        ValueError for a kind not in ALL_FAULT_KINDS, queueing none of them."""
        queued = []
        for kind in kinds:
            if kind is not None and kind not in ALL_FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}")
            queued.append((kind, applied))
        self._script.extend(queued)

    def hold(self, ccy: str, seconds: float) -> None:
        """Queue a hold of `seconds` (>= 0, else ValueError) for the next set of `ccy`."""
        if not seconds >= 0:
            raise ValueError("seconds must be >= 0")
        self._holds.setdefault(ccy, deque()).append(seconds)

    def release_stalls(self) -> None:
        """Wake every stalled request."""
        for stall in self._stalls:
            if not stall.done():
                stall.set_result(None)

    async def respond(
        self, path: str, parsed: object, request: web.Request, process: Process
    ) -> tuple[str | None, Reply, bool]:
        """(fault, reply, applied) for a request that passed auth and rate limiting:
        the fault's name as recorded ("hold" for a hold, None for none)."""
        fault, applied_first = self._next_fault(path)
        if fault is not None:
            return (fault, *await self._inject(fault, applied_first, request, process))
        hold = self._take_hold(path, parsed)
        if hold is not None:
            return ("hold", *await self._held(hold, request, process))
        return (None, *process())

    def _next_fault(self, path: str) -> tuple[str | None, bool]:
        faults, rng = self._faults, self._rng
        if path == SET_PATH and self._script:
            kind, applied = self._script.popleft()
        elif faults.rate > 0 and rng.random() < faults.rate:
            kind, applied = rng.choice(faults.kinds), None
        else:
            return None, False
        if kind not in _AMBIGUOUS:
            return kind, False
        if applied is None:
            applied = rng.random() < faults.applied_before_fault
        return kind, applied

    def _take_hold(self, path: str, parsed: object) -> float | None:
        ccy = parsed.get("ccy") if path == SET_PATH and isinstance(parsed, dict) else None
        holds = self._holds.get(ccy) if isinstance(ccy, str) else None
        return holds.popleft() if holds else None

    async def _inject(
        self, fault: str, applied_first: bool, request: web.Request, process: Process
    ) -> tuple[Reply, bool]:
        if fault in FAULT_REPLIES:
            return FAULT_REPLIES[fault], False
        if fault == "busy_50013":
            return okx("50013"), False
        if fault == "stall":
            return await self._stalled(applied_first, request, process)
        # drop, timeout_50004
        applied = process()[1] if applied_first else False
        return (NO_REPLY if fault == "drop" else okx("50004")), applied

    async def _stalled(
        self, applied_first: bool, request: web.Request, process: Process
    ) -> tuple[Reply, bool]:
        reply, applied = process() if applied_first else (NO_REPLY, False)
        if await self._stall(self._faults.stall_seconds) or _gone(request):
            return NO_REPLY, applied  # shutting down, or the client gave up: nobody to answer
        return (reply, applied) if applied_first else process()

    async def _held(
        self, seconds: float, request: web.Request, process: Process
    ) -> tuple[Reply, bool]:
        if await self._stall(seconds):
            return NO_REPLY, False  # shutting down: never applied
        reply, applied = process()  # applied late, whoever still waits
        return (NO_REPLY if _gone(request) else reply), applied

    async def _stall(self, seconds: float) -> bool:
        """Sleep `seconds`; True when woken early by `release_stalls`."""
        stall: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stalls.add(stall)
        try:
            await asyncio.wait([stall], timeout=seconds)
        finally:
            self._stalls.discard(stall)
        return stall.done()

    def __repr__(self) -> str:
        holds = sum(len(h) for h in self._holds.values())
        return (
            f"FaultInjector({self._faults!r}, scripted={len(self._script)}, holds={holds}, "
            f"stalled={len(self._stalls)})"
        )


def _gone(request: web.Request) -> bool:
    """Whether the client closed its connection (or it is closing): nobody to answer."""
    transport = request.transport
    return transport is None or transport.is_closing()
