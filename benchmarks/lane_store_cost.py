"""What ordering across processes costs per set call, against the limiter's own cost in
the same store, measured in the same run.

Per set call a client with a shared store does, besides the limiter's acquire+release:
take a sequence number (`submitted`), take the currency's claim (`claim`, which also
starts the renewal task) and give it up (`release`). This loops both, uncontended, one
process, on one key:

    limiter   await acquire(); await release()         (huge limit, 2 ms window)
    lanes     await submitted(); await claim(); await release(claim, [])

for sqlite (a file in a temp dir) and Redis when redis-server is installed (started
like tests/redis_server.py). Prints µs per loop and the ratio lanes / limiter.

Run:   python benchmarks/lane_store_cost.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from okx_async import LimiterKey, RateLimit, SqliteLimiterBackend  # noqa: E402

KEY = "live:42:BTC"


async def limiter_loop(backend: Any, n: int) -> float:
    limiter = backend.limiter(
        LimiterKey("bench", "uid:1", "set"), RateLimit(1_000_000, 0.002, "user")
    )
    for _ in range(20):
        await limiter.release(await limiter.acquire())
    t0 = time.perf_counter()
    for _ in range(n):
        await limiter.release(await limiter.acquire())
    return (time.perf_counter() - t0) / n * 1e6


async def lane_loop(backend: Any, n: int) -> float:
    store = backend.lane_store()

    async def once() -> None:
        seq = await store.submitted(KEY, "1")
        claim = await store.claim(KEY, seq=seq, value="1", deadline=None, horizon=30.0)
        await store.release(claim, [])

    for _ in range(20):
        await once()
    t0 = time.perf_counter()
    for _ in range(n):
        await once()
    return (time.perf_counter() - t0) / n * 1e6


async def measure(name: str, make: Any, n: int) -> None:
    backend = make()
    try:
        limiter = await limiter_loop(backend, n)
        lanes = await lane_loop(backend, n)
    finally:
        await backend.aclose()
    print(
        f"{name:7s} limiter acquire+release {limiter:8.1f} µs   "
        f"lanes submit+claim+release {lanes:8.1f} µs   ratio {lanes / limiter:4.2f}"
    )


async def main(quick: bool) -> None:
    n = 500 if quick else 2000
    with tempfile.TemporaryDirectory() as tmp:
        await measure("sqlite", lambda: SqliteLimiterBackend(Path(tmp) / "bench.db"), n)
    try:
        from redis_server import RedisServer, find_redis_server
    except ImportError:
        return
    exe = find_redis_server()
    if exe is None:
        print("redis   (redis-server not installed: skipped)")
        return
    from okx_async import RedisLimiterBackend

    server = RedisServer(exe)
    server.start()
    try:
        await measure("redis", lambda: RedisLimiterBackend(server.url), n)
    finally:
        server.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))
