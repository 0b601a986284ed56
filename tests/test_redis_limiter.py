"""RedisLimiterBackend against a real redis-server started per test.

Without redis-server these tests skip, unless OKX_ASYNC_REQUIRE_REDIS=1 makes that a
failure (see redis_fixture.py). Times are measured with the loop clock; Redis decides
with its own clock (TIME), so bounds that compare the two allow CLOCK_SKEW.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from okx_async._errors import (
    ClientClosedError,
    DeadlineExceededError,
    LimiterUnavailableError,
    QueueFullError,
)
from okx_async._limits import LimiterKey, RateLimit

sys.path.insert(0, str(Path(__file__).parent))
import redis_fixture
from redis_fixture import (
    CLOCK_SKEW,
    LATE,
    BackendMaker,
    RedisServer,
    burst_then_wait,
    max_overlap,
    now,
    one_user_against_the_simulator,
    require_redis,
    two_backends_take_turns,
)

redis_server = redis_fixture.redis_server  # a fixture: a fresh redis-server per test

KEY = LimiterKey("https://www.okx.com", "uid:42", "/api/v5/account/set-riskOffset-amt")
RATE = RateLimit(10, 0.3, "user")
TAG = "{https://www.okx.com|uid:42}"


@pytest.fixture
async def rc(redis_server: RedisServer) -> AsyncIterator[Any]:
    """A plain client to inspect what the limiter left in Redis."""
    import redis.asyncio as aioredis

    client = aioredis.Redis(unix_socket_path=redis_server.socket_path, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


MakeBackend = Callable[..., Any]


@pytest.fixture
async def make_backend(redis_server: RedisServer) -> AsyncIterator[MakeBackend]:
    make = BackendMaker(redis_server.url)
    try:
        yield make
    finally:
        await make.aclose()


def keys_of(lim: Any) -> dict[str, str]:
    """The limiter's Redis keys by role: leases, queue, beats, state, epoch."""
    roles = ("leases", "queue", "beats", "state", "epoch")
    return dict(zip(roles, lim.redis_keys, strict=True))


async def drain_background(*backends: Any) -> None:
    """Wait for the backends' (or limiters') background clean-ups."""
    for _ in range(100):
        if not any(b._link.busy for b in backends):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("background tasks did not finish")


async def wait_for_probe(backend: Any, limit: float = 5.0) -> None:
    """Until the backend's outage probe is answered."""
    end = now() + limit
    while backend.in_outage:
        assert now() < end, "the probe never ended the outage"
        await asyncio.sleep(0.02)


# --------------------------------------------------------------------------------------


async def test_burst_of_limit_then_next_waits_release_plus_window(make_backend: MakeBackend):
    lim = make_backend().limiter(KEY, RATE)
    t0 = now()
    granted = await burst_then_wait(lim, RATE, idle=0.15)
    assert max(granted) - t0 < RATE.window  # nobody waited for a slot


async def test_two_backends_together_never_hold_more_than_limit(make_backend: MakeBackend):
    events = await two_backends_take_turns(make_backend(), make_backend(), KEY, RATE, workers=20)
    assert len(events) == 120
    assert max_overlap(events, RATE.window) == RATE.limit  # saturated, never over


async def test_on_rate_limited_in_one_backend_holds_the_other(make_backend: MakeBackend):
    a, b = make_backend(), make_backend()
    lim_a, lim_b = a.limiter(KEY, RATE), b.limiter(KEY, RATE)
    before = now()
    await lim_a.on_rate_limited()
    assert lim_a.snapshot().held_until is not None
    lease = await lim_b.acquire()
    waited = now() - before
    assert RATE.window - CLOCK_SKEW <= waited <= RATE.window + LATE
    assert lim_b.snapshot().burst == RATE.limit // 2
    await lim_b.release(lease)


async def test_halved_burst_paces_the_other_backend_and_recovers(make_backend: MakeBackend):
    rate = RateLimit(10, 0.1, "user")  # T = 10 ms; recovery after 10 windows = 1 s
    a, b = make_backend(), make_backend()
    lim_a, lim_b = a.limiter(KEY, rate), b.limiter(KEY, rate)
    await lim_a.on_rate_limited()
    await lim_b.on_rate_limited()  # one overload reported twice, during the hold: halved once
    await asyncio.sleep(rate.window + 0.02)

    async def take() -> tuple[float, Any]:
        lease = await lim_b.acquire()
        return now(), lease

    got = await asyncio.gather(*(take() for _ in range(10)))
    times = sorted(t for t, _ in got)
    assert lim_b.snapshot().burst == 5
    interval = rate.window / rate.limit
    # Five at once, then one per emission interval T: the tenth comes >= 5 T after the
    # first (with the full burst of ten all would come at once).
    assert times[9] - times[0] >= 5 * interval - CLOCK_SKEW
    for _, lease in got:
        await lim_b.release(lease)

    await lim_a.on_rate_limited()  # a window later: a new overload halves again
    assert lim_a.snapshot().burst == 2
    await asyncio.sleep(10 * rate.window + 0.05)  # ten clean windows: doubles once
    await lim_b.release(await lim_b.acquire())
    assert lim_b.snapshot().burst == 4


async def test_lease_of_a_crashed_holder_expires_by_ttl(make_backend: MakeBackend):
    ttl = 0.6
    crashed = make_backend(inflight_ttl=ttl)
    lim = crashed.limiter(KEY, RATE)
    before = now()
    for _ in range(RATE.limit):
        await lim.acquire()
    after = now()
    await crashed.aclose()  # "dies" holding ten leases in flight, never released

    other = make_backend(inflight_ttl=ttl).limiter(KEY, RATE)
    lease = await other.acquire()
    # The first of the ten lapses ttl after its grant, which lies in [before, after].
    assert before + ttl - CLOCK_SKEW <= now() <= after + ttl + LATE
    await other.release(lease)


async def test_deadline_beyond_try_at_is_refused_at_once_consuming_nothing(
    make_backend: MakeBackend, rc: Any
):
    lim = make_backend().limiter(KEY, RATE)
    leases = [await lim.acquire() for _ in range(RATE.limit)]
    keys = keys_of(lim)
    tat = await rc.hget(keys["state"], "tat")

    t0 = now()
    with pytest.raises(DeadlineExceededError):
        await lim.acquire(deadline=t0 + RATE.window / 2)  # in flight: frees >= now + window
    assert now() - t0 < 0.05
    assert await rc.zcard(keys["leases"]) == RATE.limit
    assert await rc.exists(keys["queue"], keys["beats"]) == 0
    assert await rc.hget(keys["state"], "tat") == tat

    # A released lease frees exactly at release + window: a deadline just short of that
    # is refused, one just past it is served.
    released = now()
    await lim.release(leases[0])
    with pytest.raises(DeadlineExceededError):
        await lim.acquire(deadline=released + RATE.window - 0.02)
    lease = await lim.acquire(deadline=released + RATE.window + 0.05)
    assert now() - released >= RATE.window - CLOCK_SKEW
    for x in [*leases[1:], lease]:
        await lim.release(x)
    await drain_background(lim)
    assert await rc.exists(keys["queue"], keys["beats"]) == 0


async def test_deadline_while_queued_locally(make_backend: MakeBackend, rc: Any):
    lim = make_backend().limiter(KEY, RATE)
    leases = [await lim.acquire() for _ in range(RATE.limit)]
    started = now()
    head = asyncio.create_task(lim.acquire())  # all in flight: told to retry in a window
    await asyncio.sleep(0.02)
    keys = keys_of(lim)
    assert await rc.zcard(keys["queue"]) == 1

    t0 = now()
    with pytest.raises(DeadlineExceededError):  # before the head's try-at: refused at once
        await lim.acquire(deadline=t0 + 0.1)
    assert now() - t0 < 0.01

    # Past the head's try-at, so it queues; the head is told to wait again at its try-at
    # (still all in flight), and this caller gives up at its deadline, locally.
    deadline = started + RATE.window + 0.05
    with pytest.raises(DeadlineExceededError):
        await lim.acquire(deadline=deadline)
    assert deadline - CLOCK_SKEW <= now() < deadline + LATE
    assert lim.snapshot().queued == 1
    assert await rc.zcard(keys["queue"]) == 1  # only the head ever had a ticket
    head.cancel()
    with pytest.raises(asyncio.CancelledError):
        await head
    for x in leases:
        await lim.release(x)


async def test_cancelled_waiter_leaves_no_ticket(make_backend: MakeBackend, rc: Any):
    backend = make_backend()
    lim = backend.limiter(KEY, RATE)
    leases = [await lim.acquire() for _ in range(RATE.limit)]
    waiters = [asyncio.create_task(lim.acquire()) for _ in range(3)]
    await asyncio.sleep(0.05)
    keys = keys_of(lim)
    assert await rc.zcard(keys["queue"]) == 1  # one ticket: the local head's
    for w in waiters:
        w.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    await drain_background(backend)
    assert await rc.exists(keys["queue"], keys["beats"]) == 0
    assert await rc.zcard(keys["leases"]) == RATE.limit
    assert lim.snapshot().queued == 0
    for x in leases:
        await lim.release(x)


async def test_cancel_during_the_redis_call_undoes_the_grant(make_backend: MakeBackend, rc: Any):
    backend = make_backend()
    lim = backend.limiter(KEY, RATE)
    # Stall the server so the acquire script is under way when the caller gives up.
    stall = asyncio.create_task(rc.execute_command("DEBUG", "SLEEP", "0.3"))
    await asyncio.sleep(0.05)
    task = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await stall
    await drain_background(backend)
    keys = keys_of(lim)
    assert await rc.hget(keys["state"], "tat") is not None  # Redis did grant it ...
    assert await rc.exists(keys["leases"]) == 0  # ... and the grant was undone
    assert lim.snapshot().in_flight == 0


async def test_keys_share_one_hash_tag(make_backend: MakeBackend, rc: Any):
    from redis.crc import key_slot

    lim = make_backend().limiter(KEY, RATE)
    leases = [await lim.acquire() for _ in range(RATE.limit)]
    waiter = asyncio.create_task(lim.acquire())  # makes the queue keys exist too
    await asyncio.sleep(0.05)
    names = sorted(await rc.keys("*"))
    assert [n.rsplit(":", 1)[1] for n in names] == ["beats", "epoch", "leases", "queue", "state"]
    assert all(n.startswith(f"okx_async:{TAG}:") for n in names)
    assert len({key_slot(n.encode()) for n in names}) == 1
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    for x in leases:
        await lim.release(x)

    odd = LimiterKey("env{1}", "uid:}{", "/p")  # braces must not break the tag
    lim2 = make_backend().limiter(odd, RATE)
    await lim2.release(await lim2.acquire())
    odd_names = [n for n in await rc.keys("*") if n not in names]
    assert odd_names and all("{env%7B1%7D|uid:%7D%7B}" in n for n in odd_names)
    assert len({key_slot(n.encode()) for n in odd_names}) == 1


async def test_idle_keys_expire(make_backend: MakeBackend, rc: Any):
    rate = RateLimit(1, 0.1, "user")
    lim = make_backend(inflight_ttl=0.3, ticket_grace=0.1).limiter(KEY, rate)
    idle = lim._budget.idle_ms / 1000
    assert idle == pytest.approx(0.4)  # max(ttl + window, grace + window)
    lease = await lim.acquire()
    waiter = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0.02)
    released = now()
    await lim.release(lease)
    await lim.release(await waiter)
    epoch = keys_of(lim)["epoch"]
    assert 0.99 * 86_400_000 < await rc.pttl(epoch) <= 86_400_000  # outlives the state
    names = [n for n in await rc.keys("*") if n != epoch]
    assert len(names) == 2  # leases and state; the queue emptied itself
    for name in names:
        assert 0 < await rc.pttl(name) <= idle * 1000
    await asyncio.sleep(rate.window - 0.03)
    assert await rc.zcard(next(n for n in names if n.endswith(":leases"))) >= 1  # cooling
    while [n for n in await rc.keys("*") if n != epoch]:
        assert now() - released < idle + 0.2
        await asyncio.sleep(0.02)


async def test_password_never_shown(redis_exe_tcp_server: RedisServer, caplog: Any):
    from okx_async._redis_limiter import RedisLimiterBackend, mask_url

    server = redis_exe_tcp_server
    password = server.password
    assert password and password in server.url
    caplog.set_level(logging.DEBUG, logger="okx_async")

    good = RedisLimiterBackend(server.url)
    bad = RedisLimiterBackend(server.url.replace(password, "wr0ng-" + password))
    try:
        lim = good.limiter(KEY, RATE)
        await lim.release(await lim.acquire())  # the password works
        assert password not in repr(good) + repr(lim) + good.url
        assert "***" in repr(good)

        with pytest.raises(LimiterUnavailableError) as info:
            await bad.limiter(KEY, RATE).acquire()
        exc: BaseException | None = info.value
        while exc is not None:
            assert password not in str(exc) + repr(exc)
            exc = exc.__cause__ or exc.__context__
        assert password not in repr(bad)
        assert caplog.records  # the outage was logged ...
        assert all(password not in r.getMessage() for r in caplog.records)  # ... masked
    finally:
        await good.aclose()
        await bad.aclose()

    assert (
        mask_url("unix:///run/r.sock?db=2&password=pw9") == "unix:///run/r.sock?db=2&password=***"
    )
    assert mask_url("redis://me:p%40ss@h:1/0") == "redis://me:***@h:1/0"


@pytest.fixture
def redis_exe_tcp_server() -> Iterator[RedisServer]:
    server = RedisServer(require_redis(), tcp=True, password="s3cr3t-Pw")
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


async def test_redis_down_fails_fast(
    make_backend: MakeBackend, redis_server: RedisServer, caplog: Any
):
    backend = make_backend(operation_timeout=0.5)
    lim = backend.limiter(KEY, RATE)
    held = await lim.acquire()
    redis_server.stop()
    caplog.set_level(logging.WARNING, logger="okx_async")

    for _ in range(3):
        t0 = now()
        with pytest.raises(LimiterUnavailableError) as info:
            await lim.acquire()
        assert now() - t0 < 0.5 + LATE
        assert info.value.__cause__ is not None
    await lim.release(held)  # never raises: resent once Redis is back
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1

    redis_server.start()
    await wait_for_probe(backend)  # until then, callers keep failing fast
    lease = await lim.acquire()
    await lim.release(lease)
    assert not backend.in_outage
    await drain_background(backend)
    assert lim._budget.outbox.entries == {}


async def test_slow_redis_is_bounded_by_operation_timeout(make_backend: MakeBackend, rc: Any):
    lim = make_backend(operation_timeout=0.2).limiter(KEY, RATE)
    await lim.release(await lim.acquire())
    stall = asyncio.create_task(rc.execute_command("DEBUG", "SLEEP", "0.8"))
    await asyncio.sleep(0.05)
    t0 = now()
    with pytest.raises(LimiterUnavailableError):
        await lim.acquire()
    assert 0.2 - CLOCK_SKEW <= now() - t0 < 0.2 + LATE
    await stall


async def test_a_client_library_crash_is_reported_as_redis_unavailable(
    make_backend: MakeBackend,
) -> None:
    """redis-py's cluster client can fail with AttributeError when a topology refresh
    closes a connection under a running command: the caller gets the limiter's typed
    error, not the library's internals, and the next call works again."""
    backend = make_backend()
    lim = backend.limiter(KEY, RATE)
    scripts = backend._link._scripts
    working = scripts["acquire"]

    async def crash(**kwargs: Any) -> object:
        raise AttributeError("'NoneType' object has no attribute 'writelines'")

    scripts["acquire"] = crash
    with pytest.raises(LimiterUnavailableError, match="AttributeError") as info:
        await lim.acquire()
    assert isinstance(info.value.__cause__, AttributeError)
    scripts["acquire"] = working
    await wait_for_probe(backend)
    await lim.release(await lim.acquire())
    assert not backend.in_outage


async def test_fallback_share_when_redis_stops(
    make_backend: MakeBackend, redis_server: RedisServer, rc: Any, caplog: Any
):
    pytest.importorskip("okx_async._ratelimit", reason="LocalKeyLimiter not written yet")
    caplog.set_level(logging.WARNING, logger="okx_async")
    backend = make_backend(fallback_share=0.5, operation_timeout=0.3, probe_interval=0.1)
    lim = backend.limiter(KEY, RATE)
    before = await lim.acquire()
    redis_server.stop()
    released_before = now()
    await lim.release(before)

    events: list[tuple[float, float]] = []

    async def call() -> None:
        lease = await lim.acquire()
        granted = now()
        await asyncio.sleep(0.01)
        released = now()
        await lim.release(lease)
        events.append((granted, released))

    await asyncio.gather(*(call() for _ in range(12)))
    assert lim._budget.fallback.limiter is not None
    first = min(g for g, _ in events)
    assert first >= released_before + RATE.window - CLOCK_SKEW  # the Redis lease cooled first
    assert max_overlap(events, RATE.window) == 5  # half the budget, used fully
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING

    # Redis is back: the fallback's leases still cooling are registered there first.
    redis_server.start()
    for _ in range(50):
        if not backend.in_outage:
            break
        await asyncio.sleep(0.05)
    assert not backend.in_outage
    await drain_background(backend)
    keys = keys_of(lim)
    registered = set(await rc.zrange(keys["leases"], 0, -1))
    soon = now() + 0.02
    cooling = {lease_id for until, lease_id in lim._budget.book.cooling if until > soon}
    assert cooling and cooling <= registered
    # The restarted Redis was empty: the key is held for a window before the next grant.
    t0 = now()
    lease = await lim.acquire()
    assert now() - t0 >= RATE.window - 0.1
    await lim.release(lease)


async def test_fairness_a_far_process_is_not_starved(
    make_backend: MakeBackend, redis_server: RedisServer
):
    """A is near Redis and has many callers; B is 20 ms away. Without the cross-process
    queue, A's callers would take every slot the moment it frees (B's ask arrives late)
    and B would wait until A ran out of work. With it, B's ticket keeps its place: it is
    served every round."""
    from okx_async._redis_link import RedisLink

    class FarLink(RedisLink):
        __slots__ = ()

        async def eval(self, *args: Any) -> object:
            await asyncio.sleep(0.02)
            return await super().eval(*args)

    rate = RateLimit(3, 0.2, "user")
    a, c = make_backend(), make_backend()
    b = make_backend()
    b._link.__class__ = FarLink
    try:
        blocker = c.limiter(KEY, rate)
        blocking = [await blocker.acquire() for _ in range(rate.limit)]
        order: list[str] = []

        async def call(name: str, backend: Any) -> None:
            lim = backend.limiter(KEY, rate)
            lease = await lim.acquire()
            order.append(name)
            await lim.release(lease)

        tasks = [asyncio.create_task(call("A", a)) for _ in range(9)]
        tasks += [asyncio.create_task(call("B", b)) for _ in range(3)]
        await asyncio.sleep(0.05)  # both heads hold tickets
        for lease in blocking:
            await blocker.release(lease)
        await asyncio.gather(*tasks)
    finally:
        await b.aclose()
    text = "".join(order)
    assert text.index("B") < 3, text  # served in the first round
    assert text.rindex("B") < 9, text  # and every round after, not after A finished


async def test_queue_full(make_backend: MakeBackend):
    lim = make_backend(max_pending=2).limiter(KEY, RATE)
    leases = [await lim.acquire() for _ in range(RATE.limit)]
    waiting = [asyncio.create_task(lim.acquire()) for _ in range(3)]  # the head + 2
    await asyncio.sleep(0.01)
    with pytest.raises(QueueFullError):
        await lim.acquire()
    for w in waiting:
        w.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    for x in leases:
        await lim.release(x)


async def _evalsha_calls(rc: Any) -> int:
    stats = await rc.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_release_is_idempotent(make_backend: MakeBackend, rc: Any):
    lim = make_backend().limiter(KEY, RATE)
    lease = await lim.acquire()
    await lim.release(lease)
    keys = keys_of(lim)
    score = await rc.zscore(keys["leases"], lease.lease_id)
    calls = await _evalsha_calls(rc)
    await asyncio.sleep(0.05)
    await lim.release(lease)
    assert await _evalsha_calls(rc) == calls  # not even a round trip
    assert await rc.zscore(keys["leases"], lease.lease_id) == score
    assert lim.snapshot().cooling == 1


async def test_acquire_script_is_idempotent_per_lease_id(make_backend: MakeBackend, rc: Any):
    """A retried acquire whose first answer was lost must not take a second slot."""
    lim = make_backend().limiter(KEY, RATE)
    first = await lim._budget.do_acquire("same-id", -1)
    second = await lim._budget.do_acquire("same-id", -1)
    assert first[0] == second[0] == 1
    keys = keys_of(lim)
    assert await rc.zcard(keys["leases"]) == 1


async def test_round_trips_and_cost(make_backend: MakeBackend, rc: Any, capsys: Any):
    lim = make_backend().limiter(KEY, RateLimit(1_000_000, 1.0, "user"))
    await lim.release(await lim.acquire())  # loads the scripts
    await rc.config_resetstat()
    n = 500
    t0 = time.perf_counter()
    for _ in range(n):
        await lim.release(await lim.acquire())
    per_pair = (time.perf_counter() - t0) / n
    assert await _evalsha_calls(rc) == 2 * n  # one round trip each way, nothing else

    # Contended: ten leases per 0.3 s, 30 callers in one process.
    lim2 = make_backend().limiter(LimiterKey("e", "uid:7", "/p"), RATE)
    await rc.config_resetstat()

    async def call() -> None:
        await lim2.release(await lim2.acquire())

    await asyncio.gather(*(call() for _ in range(30)))
    contended = await _evalsha_calls(rc)
    with capsys.disabled():
        print(
            f"\nredis limiter: {per_pair * 1e6:.0f} us per acquire+release (uncontended), "
            f"{contended / 30:.2f} round trips per acquire+release with 30 callers on 10/0.3s"
        )
    assert per_pair < 0.02  # a sanity bound (about 0.4 ms on a unix socket, idle machine)
    assert contended <= 30 * 2 + 30  # at most one extra ask per acquire while waiting


async def test_closed_backend(make_backend: MakeBackend):
    backend = make_backend()
    lim = backend.limiter(KEY, RATE)
    await backend.aclose()
    await backend.aclose()  # idempotent
    with pytest.raises(ClientClosedError):
        await lim.acquire()
    with pytest.raises(ClientClosedError):
        backend.limiter(KEY, RATE)


def test_missing_redis_package_says_how_to_install(monkeypatch: Any):
    from okx_async._redis_limiter import RedisLimiterBackend

    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ImportError, match=r"okx_async\[redis\]"):
        RedisLimiterBackend("redis://localhost")


async def test_three_clients_of_one_user_against_the_simulator(redis_server: RedisServer):
    """Three clients, each with its own RedisLimiterBackend (as if in three processes),
    keys of one user: the simulator, which counts per User ID, never answers 50011."""
    simulator, elapsed = await one_user_against_the_simulator(redis_server.url, clients=3, calls=24)
    sent = [r for r in simulator.records if r.path == "/api/v5/account/set-riskOffset-amt"]
    assert len(sent) == 24
    assert simulator.rate_limited_count() == 0
    assert elapsed >= 2 * 2.0  # 24 sends of one user need at least two more windows


# -- a store that lost its state, an outage ------------------------------------------------


async def test_flushall_holds_the_key_a_window_and_every_process_registers_its_leases(
    make_backend: MakeBackend, rc: Any
):
    a, b = make_backend(), make_backend()
    lim_a, lim_b = a.limiter(KEY, RATE), b.limiter(KEY, RATE)
    held_a = [await lim_a.acquire() for _ in range(2)]
    held_b = [await lim_b.acquire() for _ in range(3)]
    assert await rc.flushall()  # the store forgets all five leases in flight

    t0 = now()
    lease = await lim_a.acquire()  # finds the loss: held one window
    assert RATE.window - CLOCK_SKEW <= now() - t0 <= RATE.window + LATE
    keys = keys_of(lim_a)
    registered = set(await rc.zrange(keys["leases"], 0, -1))
    assert {x.lease_id for x in [*held_a, lease]} <= registered  # a's own, again

    # b never saw the empty store: its next call re-registers its leases, then decides.
    t1 = now()
    other = await lim_b.acquire()
    assert now() - t1 < RATE.window / 2  # the hold is over; no second hold
    registered = set(await rc.zrange(keys["leases"], 0, -1))
    assert {x.lease_id for x in [*held_b, other]} <= registered
    assert await rc.zcard(keys["leases"]) == 7
    for x in [*held_a, lease]:
        await lim_a.release(x)
    for x in [*held_b, other]:
        await lim_b.release(x)


async def test_a_loss_registers_the_leases_still_cooling(make_backend: MakeBackend, rc: Any):
    """After a loss the process registers its cooling leases too, not only those in flight
    (each with what is left of its window)."""
    lim = make_backend().limiter(KEY, RATE)
    cooling, live = await lim.acquire(), await lim.acquire()
    await lim.release(cooling)
    assert await rc.flushall()
    with pytest.raises(DeadlineExceededError):
        # Finds the loss (RESYNC), registers, and is refused: the key is held a window.
        await lim.acquire(deadline=now() + RATE.window * 2 / 3)
    registered = dict(await rc.zrange(keys_of(lim)["leases"], 0, -1, withscores=True))
    assert set(registered) == {cooling.lease_id, live.lease_id}
    assert registered[cooling.lease_id] < registered[live.lease_id]  # cooling, in flight
    await lim.release(live)


async def test_fallback_leases_are_registered_when_redis_answers_again(
    make_backend: MakeBackend, redis_server: RedisServer, rc: Any, caplog: Any
):
    """Redis stalls (its state intact): the fallback grants; once a probe is answered,
    its leases still in flight or cooling are registered in Redis (adopted)."""
    caplog.set_level(logging.WARNING, logger="okx_async")
    rate = RateLimit(10, 2.0, "user")  # the fallback's released lease cools 2 s
    backend = make_backend(fallback_share=0.5, operation_timeout=0.3, probe_interval=0.1)
    lim = backend.limiter(KEY, rate)
    redis_server.pause()
    try:
        released = await lim.acquire()  # times out, then the fallback grants
        await lim.release(released)
        live = await lim.acquire()
        assert released.from_fallback and live.from_fallback
    finally:
        redis_server.resume()
    await wait_for_probe(backend)
    await drain_background(backend)
    registered = dict(await rc.zrange(keys_of(lim)["leases"], 0, -1, withscores=True))
    assert {released.lease_id, live.lease_id} <= set(registered)
    assert registered[released.lease_id] < registered[live.lease_id]  # cooling, in flight
    assert not [r for r in caplog.records if "lost the state" in r.getMessage()]
    await lim.release(live)


async def test_a_new_budget_is_not_held(make_backend: MakeBackend, rc: Any):
    """An empty store is only a loss to a process that saw the budget before."""
    lim = make_backend().limiter(KEY, RATE)
    t0 = now()
    leases = await asyncio.gather(*(lim.acquire() for _ in range(RATE.limit)))
    assert now() - t0 < RATE.window / 2
    assert await rc.hget(keys_of(lim)["state"], "held_until") is None
    for x in leases:
        await lim.release(x)


async def test_a_rolled_back_store_is_detected(make_backend: MakeBackend, rc: Any):
    """A failover to a replica that missed the latest writes: the epoch is the same but
    its sequence number is behind what this process saw."""
    lim = make_backend().limiter(KEY, RATE)
    for _ in range(3):
        await lim.release(await lim.acquire())
    keys = keys_of(lim)
    assert int(await rc.hget(keys["epoch"], "seq")) >= 6
    await rc.delete(keys["leases"], keys["state"])
    await rc.hset(keys["epoch"], "seq", 2)  # the replica saw two scripts of six
    t0 = now()
    lease = await lim.acquire()
    assert RATE.window - CLOCK_SKEW <= now() - t0 <= RATE.window + LATE
    await lim.release(lease)


async def test_an_outage_turns_every_caller_away_at_once_until_a_probe_answers(
    make_backend: MakeBackend, redis_server: RedisServer
):
    rate = RateLimit(10, 2.0, "user")  # the head is told to come back in 2 s
    backend = make_backend(operation_timeout=0.2, probe_interval=0.1)
    lim = backend.limiter(KEY, rate)
    other = backend.limiter(LimiterKey("e", "uid:7", "/p"), rate)
    leases = [await lim.acquire() for _ in range(rate.limit)]
    queued = [asyncio.create_task(lim.acquire()) for _ in range(5)]  # the head + 4
    await asyncio.sleep(0.05)
    redis_server.pause()
    try:
        await lim.release(leases[0])  # its flush times out: the outage begins
        t0 = now()
        results = await asyncio.gather(*queued, return_exceptions=True)
        assert all(isinstance(r, LimiterUnavailableError) for r in results), results
        assert now() - t0 < 0.05  # together, not one timeout after another
        for limiter in (lim, other):
            t1 = now()
            with pytest.raises(LimiterUnavailableError) as info:
                await limiter.acquire()
            assert now() - t1 < 0.01  # no round trip
            assert info.value.__cause__ is not None
    finally:
        redis_server.resume()
    await wait_for_probe(backend)
    await other.release(await other.acquire())
    for x in leases[1:]:
        await lim.release(x)
