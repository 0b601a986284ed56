"""Helpers shared by the benchmark scripts (run as `python benchmarks/NAME.py`, so this
directory is on sys.path)."""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from okx_async import busiest_window

if TYPE_CHECKING:
    from okx_async.simulator import SimulatorConfig

# The most of the sorted `times` inside any half-open window (t - window, t]: the
# library's own count, under the name the scripts use.
max_in_any_window = busiest_window


def verdict(ok: bool) -> str:
    """The word each script prints before a target's line."""
    return "PASS" if ok else "FAIL"


async def per_op_us(body: Callable[[int], Awaitable[None]], n: int, repeats: int) -> float:
    """Median over `repeats` of the wall time of `body(n)`, in microseconds per op."""
    samples = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        await body(n)
        samples.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(samples)


async def serve_simulator(conn: Connection, config: SimulatorConfig) -> None:
    """A simulator process's life: serve `config` on a free loopback port, send its base
    URL on `conn`, then answer every command received with the simulator's counts
    (`requests`, `rate_limited`) and this process's CPU seconds (`cpu`); return after
    answering "stop"."""
    from okx_async.simulator import Simulator, SimulatorServer

    sim = Simulator(config)
    loop = asyncio.get_running_loop()
    async with SimulatorServer(sim) as server:
        conn.send(server.base_url)
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            conn.send(
                {
                    "requests": len(sim.records),
                    "rate_limited": sim.rate_limited_count(),
                    "cpu": time.process_time(),
                }
            )
            if command == "stop":
                return
