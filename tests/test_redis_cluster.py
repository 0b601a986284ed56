"""RedisLimiterBackend against a real local Redis Cluster of three masters (one per
module: starting it takes a few seconds; every test starts on empty nodes).

Without redis-server or redis-cli these tests skip, unless OKX_ASYNC_REQUIRE_REDIS=1
makes that a failure (see redis_fixture.py). Times are measured with the loop clock;
Redis decides with its own clock (TIME), so bounds that compare the two allow CLOCK_SKEW.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from okx_async._errors import InvalidInputError, LimiterUnavailableError
from okx_async._limits import LimiterKey, RateLimit
from okx_async._redis_scripts import budget_keys

sys.path.insert(0, str(Path(__file__).parent))
from redis_fixture import one_user_against_the_simulator, require_redis, require_redis_cli
from redis_server import RedisClusterServers, _free_port

CLOCK_SKEW = 0.003  # Redis wall clock vs loop monotonic clock, plus timer granularity
LATE = 0.06  # how late a woken waiter may be served (scheduling, one round trip)
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
    from okx_async._redis_limiter import RedisLimiterBackend

    made: list[RedisLimiterBackend] = []

    def make(url: str | None = None, **kwargs: Any) -> RedisLimiterBackend:
        # These tests are about slots and scripts, not timeouts: three nodes on a loaded
        # 2-core machine once took longer than the default 1 s for one command.
        kwargs.setdefault("operation_timeout", 5.0)
        backend = RedisLimiterBackend(url or cluster.url, key_prefix=PREFIX, **kwargs)
        made.append(backend)
        return backend

    try:
        yield make
    finally:
        for backend in made:
            await backend.aclose()


def now() -> float:
    return asyncio.get_running_loop().time()


def max_overlap(events: list[tuple[float, float]], window: float) -> int:
    """The most leases one grant found still counted (granted, not yet release + window)
    including itself: the strict-lease bound says at most `limit`."""
    worst = 0
    for g_i, _ in events:
        count = sum(1 for g_j, r_j in events if g_j <= g_i < r_j + window - CLOCK_SKEW)
        worst = max(worst, count)
    return worst


async def burst_then_wait(lim: Any, rate: RateLimit) -> None:
    """`limit` leases at once; one more only at release + window."""
    granted: list[float] = []

    async def one() -> Any:
        lease = await lim.acquire()
        granted.append(now())
        return lease

    leases = await asyncio.gather(*(one() for _ in range(rate.limit)))
    # The whole burst at once: granted within a window of each other. (Not timed from the
    # call: a new backend's first calls also open connections to three nodes and load the
    # scripts, which on a loaded 2-core machine took longer than a 0.3 s window.)
    assert max(granted) - min(granted) < rate.window
    assert lim.snapshot().in_flight == rate.limit
    waiter = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0.1)
    assert not waiter.done()  # every lease in flight: no slot
    released = now()
    await lim.release(leases[0])
    extra = await waiter
    waited = now() - released
    assert rate.window - CLOCK_SKEW <= waited <= rate.window + LATE
    for lease in [*leases[1:], extra]:
        await lim.release(lease)


# --------------------------------------------------------------------------------------


async def test_burst_of_limit_then_next_waits_release_plus_window(
    make_backend: MakeBackend,
) -> None:
    backend = make_backend()
    assert backend.url.startswith("redis+cluster://127.0.0.1:")
    await burst_then_wait(backend.limiter(KEY, RATE), RATE)


async def test_cluster_flag_with_a_plain_url(
    make_backend: MakeBackend, cluster: RedisClusterServers
) -> None:
    backend = make_backend(f"redis://127.0.0.1:{cluster.ports[1]}/0", cluster=True)
    lim = backend.limiter(KEY, RATE)
    await lim.release(await lim.acquire())  # a plain client would get MOVED for 2/3 of keys


async def test_two_backends_together_never_hold_more_than_limit(make_backend: MakeBackend) -> None:
    a, b = make_backend(), make_backend()
    rng = random.Random(7)
    events: list[tuple[float, float]] = []

    async def worker(backend: Any) -> None:
        lim = backend.limiter(KEY, RATE)
        for _ in range(3):
            lease = await lim.acquire()
            granted = now()
            await asyncio.sleep(rng.uniform(0, 0.05))
            released = now()  # noted before release: Redis releases later, never earlier
            await lim.release(lease)
            events.append((granted, released))

    await asyncio.gather(*(worker(x) for x in (a, b) for _ in range(10)))
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
        *(burst_then_wait(a.limiter(LimiterKey(ENV, s, PATH), rate), rate) for s in everyone)
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
