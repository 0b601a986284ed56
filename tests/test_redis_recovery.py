"""The Redis limiter when Redis loses its state or stalls, against a real redis-server and
the simulator (which counts per User ID and answers 50011 past 10 sets per 2 s).

- Redis killed and restarted empty, or FLUSHALLed, between two bursts of one user: the
  second burst must not be granted the slots the first spent (no 50011, never more than
  10 arrivals in any 2 s).
- Redis stopped (SIGSTOP) with 20 callers queued: all fail within 2 s, or with a
  fallback share all proceed on the local share.

Skips without redis-server unless OKX_ASYNC_REQUIRE_REDIS=1 (see redis_fixture.py).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from okx_async import LimiterUnavailableError, OKXClient
from okx_async.simulator import (
    SET_PATH,
    SimKey,
    Simulator,
    SimulatorConfig,
    SimulatorServer,
    SimUser,
)

sys.path.insert(0, str(Path(__file__).parent))
import redis_fixture
from redis_fixture import RedisServer

redis_server = redis_fixture.redis_server  # a fixture: a fresh redis-server per test

UID = "3001"
LIMIT, WINDOW = 10, 2.0  # OKX's set-riskOffset-amt budget per User ID
CCYS = [f"C{i:03d}" for i in range(40)]  # distinct: no per-currency ordering waits


def most_arrivals_in_a_window(simulator: Simulator) -> int:
    """The most set requests (admitted or refused) that arrived in any (t - 2 s, t]."""
    times = sorted(r.arrival for r in simulator.records if r.path == SET_PATH)
    worst, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - WINDOW:
            lo += 1
        worst = max(worst, hi - lo + 1)
    return worst


class Setup:
    def __init__(self, simulator: Simulator, base_url: str, redis_url: str) -> None:
        self.simulator = simulator
        self.base_url = base_url
        self.redis_url = redis_url

    def client(self, n: int = 0, **kwargs: Any) -> OKXClient:
        return OKXClient(
            api_key=f"rk-{n}",
            secret_key=f"rs-{n}-xyz",
            passphrase=f"rp-{n}-xyz",
            base_url=self.base_url,
            user_id=UID,
            redis_url=self.redis_url,
            **kwargs,
        )


@pytest.fixture
async def setup(redis_server: RedisServer) -> AsyncIterator[Setup]:
    keys = [SimKey(f"rk-{i}", f"rs-{i}-xyz", f"rp-{i}-xyz") for i in range(2)]
    user = SimUser(uid=UID, keys=keys, margin_ccys=frozenset(CCYS))
    simulator = Simulator(SimulatorConfig(users=[user], latency=(0.0, 0.02)))
    async with SimulatorServer(simulator) as server:
        yield Setup(simulator, server.base_url, redis_server.url)


async def burst(client: OKXClient, ccys: list[str], tag: int) -> None:
    await asyncio.gather(
        *(client.set_risk_offset_amount(c, str(tag * 100 + i + 1)) for i, c in enumerate(ccys))
    )


async def two_bursts(setup: Setup, between: Callable[[], Awaitable[None]]) -> None:
    """Two clients (two API keys of the user, as two processes would be): the first burst
    spends the user's ten, `between` runs, the second burst follows at once."""
    a, b = setup.client(0), setup.client(1)
    try:
        await asyncio.gather(*(c.get_risk_offset_amounts([CCYS[0]]) for c in (a, b)))
        await asyncio.gather(burst(a, CCYS[0:5], 1), burst(b, CCYS[5:10], 1))
        await between()
        await asyncio.gather(burst(a, CCYS[10:15], 2), burst(b, CCYS[15:20], 2))
    finally:
        await a.close()
        await b.close()
    sent = [r for r in setup.simulator.records if r.path == SET_PATH]
    print(
        f"\n{len(sent)} sets: {setup.simulator.rate_limited_count()} x 50011, "
        f"at most {most_arrivals_in_a_window(setup.simulator)} in any 2 s"
    )
    assert setup.simulator.rate_limited_count() == 0
    assert most_arrivals_in_a_window(setup.simulator) <= LIMIT
    assert len([r for r in sent if r.code == "0"]) == 20


async def test_redis_killed_and_restarted_empty_between_two_bursts(
    setup: Setup, redis_server: RedisServer
) -> None:
    async def restart() -> None:
        redis_server.kill()
        redis_server.start()

    await two_bursts(setup, restart)


async def test_flushall_between_two_bursts(setup: Setup, redis_server: RedisServer) -> None:
    import redis.asyncio as aioredis

    async def flush() -> None:
        rc = aioredis.Redis(unix_socket_path=redis_server.socket_path)
        try:
            assert await rc.flushall()
        finally:
            await rc.aclose()

    await two_bursts(setup, flush)


async def stall_with_20_queued(
    setup: Setup, redis_server: RedisServer, **kwargs: Any
) -> tuple[list[BaseException | None], float, float]:
    """Ten sets are sent (their answers come 0.3 s later), twenty more queue behind them,
    then Redis stops answering. Returns each queued call's outcome (None: succeeded),
    when the last one ended and when the stall began (loop time)."""
    setup.simulator.latency = (0.15, 0.15)  # each way
    client = setup.client(0, **kwargs)
    loop = asyncio.get_running_loop()
    try:
        await client.get_risk_offset_amounts([CCYS[0]])
        first = [
            asyncio.create_task(client.set_risk_offset_amount(c, str(i + 1)))
            for i, c in enumerate(CCYS[:10])
        ]
        for _ in range(500):  # until the warm-up read plus ten sets arrived
            if len(setup.simulator.records) >= 11:
                break
            await asyncio.sleep(0.01)
        ended: list[float] = []

        async def queued(ccy: str, n: int) -> BaseException | None:
            try:
                await client.set_risk_offset_amount(ccy, str(n), timeout=60)
                return None
            except Exception as exc:
                return exc
            finally:
                ended.append(loop.time())

        later = [asyncio.create_task(queued(c, 100 + i)) for i, c in enumerate(CCYS[10:30])]
        # Until all twenty wait for a slot: each has taken its place in its currency's
        # order in Redis by then (a fixed sleep was too short on a loaded machine, and a
        # call still ordering itself when Redis stalls fails: lanes have no fallback).
        for _ in range(1000):
            if client.stats().queued == 20:
                break
            await asyncio.sleep(0.01)
        assert client.stats().queued == 20
        await asyncio.sleep(0.05)  # the head was told to come back in a window
        redis_server.pause()
        stalled = loop.time()
        try:
            outcomes = await asyncio.gather(*later)
            await asyncio.gather(*first)  # answered; their releases never raise
        finally:
            redis_server.resume()
    finally:
        await client.close()
    return outcomes, max(ended), stalled


async def test_stalled_redis_fails_every_queued_caller_within_two_seconds(
    setup: Setup, redis_server: RedisServer
) -> None:
    outcomes, last, stalled = await stall_with_20_queued(setup, redis_server)
    assert all(isinstance(o, LimiterUnavailableError) for o in outcomes), outcomes
    print(f"\n20 queued callers behind a stopped Redis: the last failed {last - stalled:.2f}s in")
    assert last - stalled < 2.0
    assert setup.simulator.rate_limited_count() == 0
    assert len([r for r in setup.simulator.records if r.path == SET_PATH]) == 10


async def test_stalled_redis_with_a_fallback_share_runs_the_queue_on_the_share(
    setup: Setup, redis_server: RedisServer
) -> None:
    outcomes, _, _ = await stall_with_20_queued(setup, redis_server, redis_fallback_share=0.5)
    assert outcomes == [None] * 20
    assert setup.simulator.rate_limited_count() == 0
    assert most_arrivals_in_a_window(setup.simulator) <= LIMIT
    after = sorted(r.arrival for r in setup.simulator.records if r.path == SET_PATH)[10:]
    assert len(after) == 20
    # Five per window (half the budget), one window after this process's last Redis lease.
    assert all(b - a >= WINDOW - 0.05 for a, b in zip(after, after[5:], strict=False))
