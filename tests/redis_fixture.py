"""The `redis_server` fixture shared by the Redis test modules: a throwaway redis-server
per test. Without one the tests skip, unless OKX_ASYNC_REQUIRE_REDIS=1 makes that a
failure. OKX_ASYNC_REDIS_SERVER picks another binary (e.g. /usr/bin/valkey-server)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from redis_server import RedisServer, find_redis_cli, find_redis_server

__all__ = ["RedisServer", "redis_server", "require_redis", "require_redis_cli"]


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
