"""The Redis store replays the shared timeline of test_sqlite_store (acquire / release /
50011 / clock events) and must grant exactly what the memory store grants.

Redis decides with its own clock (TIME); here the backend's test clock hook sends the
virtual loop's time with every script call instead, and the virtual loop holds its clock
still while a call to redis-server is under way, so a round trip takes no virtual time and
the grant times are exact, whatever the machine's load.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import redis_fixture
from redis_fixture import RedisServer
from test_sqlite_store import TIMELINE, Step, memory_store, replay
from virtual_time import run_virtual

redis_server = redis_fixture.redis_server  # a fixture: a fresh redis-server per test


class RedisReplay:
    """Redis backends on the running virtual loop's clock; `busy()` tells the loop to
    hold its clock while any of them has a call under way."""

    __slots__ = ("backends", "url")

    def __init__(self, url: str) -> None:
        self.url = url
        self.backends: list[Any] = []

    def __repr__(self) -> str:
        return f"<RedisReplay {self.url} backends={len(self.backends)}>"

    def busy(self) -> bool:
        return any(b._link.calls_under_way for b in self.backends)

    @asynccontextmanager
    async def store(self, _: object = None) -> AsyncIterator[Any]:
        from okx_async import RedisLimiterBackend

        backend = RedisLimiterBackend(self.url, clock=asyncio.get_running_loop().time)
        self.backends.append(backend)
        async with backend:
            yield backend

    def run(self, timeline: list[Step]) -> list[tuple[str, str]]:
        async def main() -> list[tuple[str, str]]:
            async with self.store() as backend:
                return await replay(backend, timeline)

        return run_virtual(main, hold=self.busy)


def memory_grants(timeline: list[Step]) -> list[tuple[str, str]]:
    async def main() -> list[tuple[str, str]]:
        async with memory_store(Path()) as backend:
            return await replay(backend, timeline)

    return run_virtual(main)


def test_the_shared_timeline_gives_the_same_grants_in_redis(redis_server: RedisServer) -> None:
    expected = memory_grants(TIMELINE)
    assert ("late", "refused@1.100000") in expected
    got = RedisReplay(redis_server.url).run(TIMELINE)
    assert got == expected
