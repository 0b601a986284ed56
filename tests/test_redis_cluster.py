"""RedisLimiterBackend against a real local Redis Cluster of three masters (one per
module: starting it takes a few seconds; every test starts on empty nodes).

Without redis-server or redis-cli these tests skip, unless OKX_ASYNC_REQUIRE_REDIS=1
makes that a failure (see redis_fixture.py). Times are measured with the loop clock;
Redis decides with its own clock (TIME), so bounds that compare the two allow CLOCK_SKEW.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from okx_async._errors import InvalidInputError, LimiterUnavailableError
from okx_async._limits import LimiterKey, RateLimit
from okx_async._redis_scripts import budget_keys

sys.path.insert(0, str(Path(__file__).parent))
from redis_fixture import (
    CLOCK_SKEW,
    BackendMaker,
    burst_then_wait,
    max_overlap,
    one_user_against_the_simulator,
    require_redis,
    require_redis_cli,
    two_backends_take_turns,
)
from redis_server import RedisClusterServers, _free_port

ENV = "https://www.okx.com"
PATH = "/api/v5/account/set-riskOffset-amt"
KEY = LimiterKey(ENV, "uid:42", PATH)
RATE = RateLimit(10, 0.3, "user")
PREFIX = "okx"


@pytest.fixture(scope="module")
def redis_cluster_servers() -> Iterator[RedisClusterServers]:
    exe = require_redis()
    servers = RedisClusterServers(exe, require_redis_cli(exe))
    try:
        servers.start()
        yield servers
    finally:
        servers.cleanup()  # every node, even when start() or a test failed


@pytest.fixture
def cluster(redis_cluster_servers: RedisClusterServers) -> RedisClusterServers:
    """The module's cluster, emptied for this test."""
    for port in redis_cluster_servers.ports:
        assert redis_cluster_servers.cli_call(port, "FLUSHALL") == "OK"
    return redis_cluster_servers


@pytest.fixture
async def nodes(cluster: RedisClusterServers) -> AsyncIterator[dict[int, Any]]:
    """A plain (non-cluster) client per node, by port, to see what each node holds."""
    import redis.asyncio as aioredis

    clients = {
        port: aioredis.Redis(host="127.0.0.1", port=port, decode_responses=True)
        for port in cluster.ports
    }
    try:
        yield clients
    finally:
        for client in clients.values():
            await client.aclose()


MakeBackend = Callable[..., Any]


@pytest.fixture
async def make_backend(cluster: RedisClusterServers) -> AsyncIterator[MakeBackend]:
    # These tests are about slots and scripts, not timeouts: three nodes on a loaded
    # 2-core machine once took longer than the default 1 s for one command.
    make = BackendMaker(cluster.url, key_prefix=PREFIX, operation_timeout=5.0)
    try:
        yield make
    finally:
        await make.aclose()


# --------------------------------------------------------------------------------------


async def test_burst_of_limit_then_next_waits_release_plus_window(
    make_backend: MakeBackend,
) -> None:
    backend = make_backend()
    assert backend.url.startswith("redis+cluster://127.0.0.1:")
    # Not timed from the call: a new backend's first calls also open connections to three
    # nodes and load the scripts, which on a loaded 2-core machine took longer than a
    # 0.3 s window.
    await burst_then_wait(backend.limiter(KEY, RATE), RATE, idle=0.1)


async def test_cluster_flag_with_a_plain_url(
    make_backend: MakeBackend, cluster: RedisClusterServers
) -> None:
    backend = make_backend(f"redis://127.0.0.1:{cluster.ports[1]}/0", cluster=True)
    lim = backend.limiter(KEY, RATE)
    await lim.release(await lim.acquire())  # a plain client would get MOVED for 2/3 of keys


async def test_two_backends_together_never_hold_more_than_limit(make_backend: MakeBackend) -> None:
    events = await two_backends_take_turns(make_backend(), make_backend(), KEY, RATE, workers=10)
    assert len(events) == 60
    assert max_overlap(events, RATE.window) == RATE.limit  # saturated, never over


async def test_subjects_on_different_nodes_each_work(
    make_backend: MakeBackend, cluster: RedisClusterServers, nodes: dict[int, Any]
) -> None:
    """Each budget's scripts run on the node owning its hash tag's slot, on every node,
    and are loaded again after SCRIPT FLUSH (NOSCRIPT -> SCRIPT LOAD -> EVALSHA)."""
    owned: dict[int, list[tuple[int, int]]] = {}  # port -> its slot ranges
    for port, client in nodes.items():
        myself = next(
            line
            for line in (await client.execute_command("CLUSTER", "NODES")).splitlines()
            if "myself" in line
        )
        ranges = [part.split("-") for part in myself.split()[8:] if part[0].isdigit()]
        owned[port] = [(int(r[0]), int(r[-1])) for r in ranges]
    assert all(owned.values())

    def owner(slot: int) -> int:
        return next(p for p, rs in owned.items() if any(lo <= slot <= hi for lo, hi in rs))

    probe = nodes[cluster.ports[0]]
    subjects: dict[int, list[str]] = {port: [] for port in cluster.ports}  # 2 per node
    i = 0
    while any(len(s) < 2 for s in subjects.values()):
        subject = f"uid:{1000 + i}"
        i += 1
        slots = {
            await probe.execute_command("CLUSTER", "KEYSLOT", name)
            for name in budget_keys(PREFIX, LimiterKey(ENV, subject, PATH))
        }
        assert len(slots) == 1  # one hash tag: the four keys share a slot
        node = owner(slots.pop())
        if len(subjects[node]) < 2:
            subjects[node].append(subject)

    rate = RateLimit(3, 0.3, "user")
    a, b = make_backend(), make_backend()
    everyone = [subject for group in subjects.values() for subject in group]
    await asyncio.gather(
        *(
            burst_then_wait(a.limiter(LimiterKey(ENV, s, PATH), rate), rate, idle=0.1)
            for s in everyone
        )
    )

    for client in nodes.values():
        assert await client.script_flush()
    # The other backend (own script objects) after the flush, then the first again.
    for backend in (b, a):
        for subject in everyone:
            lim = backend.limiter(LimiterKey(ENV, subject, PATH), rate)
            await lim.release(await lim.acquire())
        assert not backend.in_outage

    for port, client in nodes.items():
        held = set(await client.keys("*"))
        expected = {
            name
            for subject in subjects[port]
            for name in budget_keys(PREFIX, LimiterKey(ENV, subject, PATH))
        }
        assert held <= expected  # only this node's subjects' keys ...
        for subject in subjects[port]:  # ... and every one of them left its state here
            assert budget_keys(PREFIX, LimiterKey(ENV, subject, PATH))[3] in held


async def test_unreachable_cluster_fails_fast_and_masks_the_password(
    make_backend: MakeBackend,
) -> None:
    from okx_async._redis_limiter import mask_url

    url = f"redis+cluster://me:s3cr3t-Pw@127.0.0.1:{_free_port()}"
    backend = make_backend(url, operation_timeout=0.5)
    assert "s3cr3t" not in repr(backend) + backend.url
    assert backend.url.startswith("redis+cluster://me:***@127.0.0.1:")
    with pytest.raises(LimiterUnavailableError) as info:
        await backend.limiter(KEY, RATE).acquire()
    exc: BaseException | None = info.value
    while exc is not None:
        assert "s3cr3t" not in str(exc) + repr(exc)
        exc = exc.__cause__ or exc.__context__
    assert mask_url("rediss+cluster://:pw@h:1/0?password=x") == (
        "rediss+cluster://:***@h:1/0?password=***"
    )


async def test_a_new_backends_first_calls_all_go_to_their_slots_node(
    make_backend: MakeBackend, nodes: dict[int, Any]
) -> None:
    """A new backend's first calls, all at once, each reach the node that owns its slot:
    no node answers MOVED. (Calls redis-py routes before its slot map is loaded go to a
    random master; after a few MOVEDs it closes every connection, in use or not.)"""
    for client in nodes.values():
        assert await client.config_resetstat()
    rate = RateLimit(3, 0.3, "user")
    backend = make_backend()
    limiters = [backend.limiter(LimiterKey(ENV, f"uid:{2000 + i}", PATH), rate) for i in range(24)]
    leases = await asyncio.gather(*(lim.acquire() for lim in limiters))
    await asyncio.gather(*(lim.release(lease) for lim, lease in zip(limiters, leases, strict=True)))
    for port, client in nodes.items():
        errors = await client.info("errorstats")
        assert "errorstat_MOVED" not in errors, (port, errors)
    assert not backend.in_outage


def test_invalid_cluster_urls() -> None:
    require_redis()
    from okx_async._redis_limiter import RedisLimiterBackend

    with pytest.raises(InvalidInputError, match="invalid Redis URL"):
        RedisLimiterBackend("redis+cluster://127.0.0.1:7000/3")  # a cluster has db 0 only
    with pytest.raises(InvalidInputError, match="invalid Redis URL"):
        RedisLimiterBackend("unix:///tmp/r.sock", cluster=True)


async def test_two_clients_of_one_user_against_the_simulator(cluster: RedisClusterServers) -> None:
    """Two clients, each with its own cluster backend (as if in two processes), keys of
    one user: 20 sends take a second window and the simulator never answers 50011."""
    simulator, elapsed = await one_user_against_the_simulator(cluster.url, clients=2, calls=20)
    sent = [r for r in simulator.records if r.path == PATH]
    assert len(sent) == 20
    assert simulator.rate_limited_count() == 0
    assert elapsed >= 2.0 - CLOCK_SKEW  # 20 sends of one user (limit 10) need a second window
