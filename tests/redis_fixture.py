"""The `redis_server` fixture shared by the Redis test modules: a throwaway redis-server
per test. Without one the tests skip, unless OKX_ASYNC_REQUIRE_REDIS=1 makes that a
failure. OKX_ASYNC_REDIS_SERVER picks another binary (e.g. /usr/bin/valkey-server)."""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from redis_server import RedisServer, find_redis_cli, find_redis_server

__all__ = [
    "CLOCK_SKEW",
    "LATE",
    "BackendMaker",
    "RedisServer",
    "burst_then_wait",
    "max_overlap",
    "now",
    "one_user_against_the_simulator",
    "redis_server",
    "require_redis",
    "require_redis_cli",
    "two_backends_take_turns",
]

CLOCK_SKEW = 0.003  # Redis wall clock vs loop monotonic clock, plus timer granularity
LATE = 0.06  # how late a woken waiter may be served (scheduling, one round trip)


def require_redis() -> str:
    """The server executable; skips (or fails, see above) when it or redis-py is missing."""
    reason = None
    exe = find_redis_server()
    if exe is None:
        reason = "redis-server not found"
    else:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError:
            reason = "redis-py not installed (pip install 'okx_async[redis]')"
    if reason is None and exe is not None:
        return exe
    _missing(reason or "redis-server not found")


def require_redis_cli(server: str) -> str:
    """The redis-cli for `server` (to create a cluster); skips or fails like above."""
    cli = find_redis_cli(server)
    if cli is None:
        _missing("redis-cli not found")
    return cli


def _missing(reason: str) -> NoReturn:
    if os.environ.get("OKX_ASYNC_REQUIRE_REDIS") == "1":
        pytest.fail(f"{reason}, and OKX_ASYNC_REQUIRE_REDIS=1 requires the Redis tests")
    pytest.skip(f"{reason}; set OKX_ASYNC_REQUIRE_REDIS=1 to fail instead of skipping")


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(require_redis())
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


async def one_user_against_the_simulator(
    redis_url: str, *, clients: int, calls: int
) -> tuple[Any, float]:
    """`clients` OKXClients, each with its own Redis backend at `redis_url` (as if in
    separate processes), on keys of one user, send `calls` sets on distinct currencies
    at once to the simulator (0-50 ms latency). Returns (simulator, seconds taken)."""
    from okx_async import OKXClient
    from okx_async.simulator import (
        DEFAULT_MARGIN_CCYS,
        SimKey,
        Simulator,
        SimulatorConfig,
        SimulatorServer,
        SimUser,
    )

    keys = [SimKey(f"key-{i}", f"secret-{i}-xyz", f"pass-{i}-xyz") for i in range(clients)]
    simulator = Simulator(SimulatorConfig(users=[SimUser(uid="1001", keys=keys)]))
    simulator.latency = (0.0, 0.05)
    ccys = sorted(DEFAULT_MARGIN_CCYS)[:calls]
    assert len(ccys) == calls
    async with SimulatorServer(simulator) as server:
        made = [
            OKXClient(
                api_key=k.api_key,
                secret_key=k.secret_key,
                passphrase=k.passphrase,
                base_url=server.base_url,
                redis_url=redis_url,
            )
            for k in keys
        ]
        try:
            await asyncio.gather(*(c.get_account_config() for c in made))
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await asyncio.gather(
                *(made[i % clients].set_risk_offset_amount(c, str(i)) for i, c in enumerate(ccys))
            )
            elapsed = loop.time() - t0
        finally:
            for c in made:
                await c.close()
    return simulator, elapsed


def now() -> float:
    return asyncio.get_running_loop().time()


class BackendMaker:
    """`make(url=None, **kwargs)`: a RedisLimiterBackend at `url` (default: `default_url`)
    with `defaults` under `kwargs`; `aclose()` closes every one made (the fixtures'
    teardown)."""

    __slots__ = ("default_url", "defaults", "made")

    def __init__(self, default_url: str, **defaults: Any) -> None:
        self.default_url = default_url
        self.defaults = defaults
        self.made: list[Any] = []

    def __repr__(self) -> str:
        return f"<BackendMaker {self.default_url} made={len(self.made)}>"

    def __call__(self, url: str | None = None, **kwargs: Any) -> Any:
        from okx_async import RedisLimiterBackend

        backend = RedisLimiterBackend(url or self.default_url, **{**self.defaults, **kwargs})
        self.made.append(backend)
        return backend

    async def aclose(self) -> None:
        for backend in self.made:
            await backend.aclose()


def max_overlap(events: list[tuple[float, float]], window: float) -> int:
    """The most leases one grant found still counted (granted, not yet release + window)
    including itself: the strict-lease bound says at most `limit`."""
    worst = 0
    for g_i, _ in events:
        count = sum(1 for g_j, r_j in events if g_j <= g_i < r_j + window - CLOCK_SKEW)
        worst = max(worst, count)
    return worst


async def burst_then_wait(lim: Any, rate: Any, *, idle: float) -> list[float]:
    """`limit` leases at once, all in flight; after `idle` s nobody more is granted; one
    more only at release + window. Returns the burst's grant times."""
    granted: list[float] = []

    async def one() -> Any:
        lease = await lim.acquire()
        granted.append(now())
        return lease

    leases = await asyncio.gather(*(one() for _ in range(rate.limit)))
    assert max(granted) - min(granted) < rate.window  # the whole burst at once
    assert lim.snapshot().in_flight == rate.limit
    waiter = asyncio.create_task(lim.acquire())
    await asyncio.sleep(idle)
    assert not waiter.done()  # every lease in flight: no slot, whatever the time
    released = now()
    await lim.release(leases[0])
    extra = await waiter
    waited = now() - released
    assert rate.window - CLOCK_SKEW <= waited <= rate.window + LATE
    for lease in [*leases[1:], extra]:
        await lim.release(lease)
    return granted


async def two_backends_take_turns(
    a: Any, b: Any, key: Any, rate: Any, *, workers: int
) -> list[tuple[float, float]]:
    """`workers` callers per backend, each taking three leases in turn and holding each
    0-50 ms (seeded): every lease's (grant, release) loop times."""
    rng = random.Random(7)
    events: list[tuple[float, float]] = []

    async def worker(backend: Any) -> None:
        lim = backend.limiter(key, rate)
        for _ in range(3):
            lease = await lim.acquire()
            granted = now()
            await asyncio.sleep(rng.uniform(0, 0.05))
            released = now()  # noted before release: Redis releases later, never earlier
            await lim.release(lease)
            events.append((granted, released))

    await asyncio.gather(*(worker(x) for x in (a, b) for _ in range(workers)))
    return events
