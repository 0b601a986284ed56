"""The `redis_server` fixture shared by the Redis test modules: a throwaway redis-server
per test. Without one the tests skip, unless OKX_ASYNC_REQUIRE_REDIS=1 makes that a
failure. OKX_ASYNC_REDIS_SERVER picks another binary (e.g. /usr/bin/valkey-server)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from redis_server import RedisServer, find_redis_cli, find_redis_server

__all__ = [
    "RedisServer",
    "one_user_against_the_simulator",
    "redis_server",
    "require_redis",
    "require_redis_cli",
]


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
