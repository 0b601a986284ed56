"""Event loops: the suite runs on the loop OKX_ASYNC_TEST_LOOP selects (see conftest.py),
and what the clients of one loop share is kept per loop (`_shared`), by one rule."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from pathlib import Path
from typing import Any

import pytest
import redis_fixture
from conftest import TEST_LOOP
from redis_fixture import RedisServer
from virtual_time import run_virtual

from okx_async import InvalidInputError, LimiterKey, OKXClient, RateLimit, _shared
from okx_async._pool import NetworkSettings, release_pool
from okx_async._shared import (
    LoopShared,
    acquire_pool,
    default_local_backend,
    for_loop,
    lanes_for_running_loop,
    shared_clock,
)
from okx_async.simulator import (
    SET_PATH,
    SimKey,
    Simulator,
    SimulatorConfig,
    SimulatorServer,
    SimUser,
)


async def test_async_tests_run_on_the_selected_loop() -> None:
    loop = asyncio.get_running_loop()
    if TEST_LOOP == "uvloop":
        import uvloop

        assert isinstance(loop, uvloop.Loop)
    else:
        assert type(loop).__module__.startswith("asyncio.")


# -- what the clients on one loop share (`_shared`) ----------------------------------------


def test_one_shared_object_per_loop_holds_every_shared_part() -> None:
    async def main() -> LoopShared:
        loop = asyncio.get_running_loop()
        shared = for_loop(loop)
        assert for_loop(loop) is shared
        assert lanes_for_running_loop() is shared.lanes
        assert shared_clock(OKX) is shared.clock(OKX) is shared_clock(OKX)
        assert shared_clock("https://eea.okx.com") is not shared_clock(OKX)  # per host
        assert default_local_backend() is shared.local_limiter() is default_local_backend()
        pool = await acquire_pool(loop, SETTINGS)
        assert shared.pools.pools == {SETTINGS: pool} and pool.users == 1
        assert await acquire_pool(loop, SETTINGS) is pool
        await release_pool(pool)
        await release_pool(pool)  # the last user: closed, and gone from the loop's pools
        assert pool.closed and not shared.pools.pools
        assert "clocks=2" in repr(shared) and "local_limiter=keys=0" in repr(shared)
        return shared

    first, second = run_virtual(main), run_virtual(main)
    assert first is not second  # a second loop gets its own: nothing crosses loops


def test_a_closed_loops_entry_goes_when_a_new_loop_registers() -> None:
    """A loop closed without finalizing its async generators leaves its pools, and the
    pools keep the loop alive: nothing else would ever free it."""
    old = asyncio.new_event_loop()

    async def leave_a_pool() -> None:
        pool = await acquire_pool(asyncio.get_running_loop(), SETTINGS)
        await pool.session.close()  # its sockets, not the pool's place in the loop's pools

    old.run_until_complete(leave_a_pool())
    old.close()  # no shutdown_asyncgens(): the pools' keeper never runs
    gone = weakref.ref(old)
    del old
    gc.collect()
    assert gone() is not None  # kept by its pool, through the registry's entry

    async def register() -> None:
        for_loop(asyncio.get_running_loop())

    run_virtual(register)
    gc.collect()
    assert gone() is None


def test_an_entry_keeps_no_loop_alive_by_itself() -> None:
    gone: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        gone.append(weakref.ref(asyncio.get_running_loop()))
        await shared_clock(OKX).ensure_synced(_server_time)
        limiter = default_local_backend().limiter(KEY, RATE)
        await limiter.release(await limiter.acquire())  # leaves a cooldown timer
        assert lanes_for_running_loop().lane("BTC") is not None

    run_virtual(main)
    gc.collect()
    assert gone[0]() is None


def test_a_second_running_loop_warns_only_when_both_use_the_in_process_store(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lanes, clocks and pools per loop are harmless; a budget per loop is not."""
    monkeypatch.setattr(_shared, "_WARNED_SECOND_LOOP", False)
    running, done = threading.Event(), threading.Event()

    async def other_thread() -> None:  # a running loop with lanes and a clock only
        lanes_for_running_loop(), shared_clock(OKX)
        running.set()
        await asyncio.to_thread(done.wait, 10)

    thread = threading.Thread(target=asyncio.run, args=(other_thread(),))
    thread.start()
    try:
        assert running.wait(10)

        async def here() -> None:
            default_local_backend()

        asyncio.run(here())
    finally:
        done.set()
        thread.join(10)
    assert not [r for r in caplog.records if "second running event loop" in r.getMessage()]


# -- a client used on a second loop --------------------------------------------------------


def test_a_client_reused_on_a_second_loop_spends_that_loops_budget() -> None:
    """Client A is used in one loop, then in a second one beside a new client B of the
    same user: both must spend the second loop's in-process budget, so OKX sees at most
    10 set calls per 2 s and never answers 50011. Were A to keep the first loop's store,
    A and B would each get a full budget."""
    config = SimulatorConfig(users=[SimUser(uid=UID, keys=[KEY_A, KEY_B])])
    simulator = Simulator(config)  # the second loop's (an aiohttp app keeps its loop)
    port = 0
    clients: list[OKXClient] = []

    async def first_loop() -> None:
        nonlocal port
        async with SimulatorServer(Simulator(config)) as server:
            port = server.port
            clients.append(_client(KEY_A, server.base_url))
            await clients[0].get_account_config()  # binds A's parts to this loop

    async def second_loop() -> list[BaseException]:
        async with SimulatorServer(simulator, port=port) as server:
            a, b = clients[0], _client(KEY_B, server.base_url)
            sets = [a.set_risk_offset_amount(ccy, "1") for ccy in CCYS[:10]]
            sets += [b.set_risk_offset_amount(ccy, "2") for ccy in CCYS[10:]]
            results = await asyncio.gather(*sets, return_exceptions=True)
            await a.close()
            await b.close()
        return [r for r in results if isinstance(r, BaseException)]

    run_virtual(first_loop)
    assert run_virtual(second_loop) == []
    assert simulator.rate_limited_count(UID) == 0
    assert simulator.max_in_window(UID, SET_PATH) <= 10


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_a_call_from_a_second_thread_while_the_first_has_calls_in_flight_is_refused(
    store: str, tmp_path: Path
) -> None:
    """A client belongs to one loop at a time: a call from another thread's loop while
    the first loop's call is still on the wire fails with a clear InvalidInputError, not
    with asyncio's "attached to a different loop" from deep inside (with a shared store,
    before the store's per-loop locks are touched)."""
    options = {"limiter_url": f"sqlite:///{tmp_path / 'okx.db'}"} if store == "sqlite" else {}
    on_the_wire, done = threading.Event(), threading.Event()
    box: dict[str, OKXClient] = {}

    async def first_thread() -> None:
        arrived = asyncio.Event()

        async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            arrived.set()
            try:
                await reader.read()  # until the client hangs up
            finally:
                writer.close()

        server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = box["client"] = _client(KEY_A, f"http://127.0.0.1:{port}", **options)
        call = asyncio.ensure_future(client.get_account_config())
        await arrived.wait()
        on_the_wire.set()
        await asyncio.to_thread(done.wait, 30)
        call.cancel()
        await client.close()
        await asyncio.gather(call, return_exceptions=True)  # retrieved: no GC-time report
        server.close()
        await server.wait_closed()

    thread = threading.Thread(target=asyncio.run, args=(first_thread(),))
    thread.start()
    try:
        assert on_the_wire.wait(30)
        with pytest.raises(InvalidInputError, match="one event loop at a time"):
            asyncio.run(box["client"].set_risk_offset_amount("BTC", "1", timeout=5))
    finally:
        done.set()
        thread.join(30)


redis_server = redis_fixture.redis_server  # a fixture: a fresh redis-server per test


def test_a_redis_backed_client_reconnects_on_a_second_loop(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The Redis connections of the first `asyncio.run` belong to a closed loop: the
    second run must open its own, not report Redis unreachable ("Event loop is closed"),
    and the first run's connections are closed at its end (no ResourceWarning, which the
    suite turns into an error)."""
    config = SimulatorConfig(users=[SimUser(uid=UID, keys=[KEY_A])])
    port = 0
    clients: list[OKXClient] = []

    async def run(value: str) -> str:
        nonlocal port
        async with SimulatorServer(Simulator(config), port=port) as server:
            port = server.port
            if not clients:
                clients.append(_client(KEY_A, server.base_url, redis_url=redis_server.url))
            result = await clients[0].set_risk_offset_amount("BTC", value, timeout=10)
        return str(result.amount)

    async def close() -> None:
        await clients[0].close()

    assert asyncio.run(run("1")) == "1"
    assert asyncio.run(run("2")) == "2"
    asyncio.run(close())
    assert not [r for r in caplog.records if "unreachable" in r.getMessage()]


def _client(key: SimKey, base_url: str, **options: Any) -> OKXClient:
    return OKXClient(
        api_key=key.api_key,
        secret_key=key.secret_key,
        passphrase=key.passphrase,
        base_url=base_url,
        user_id=UID,
        **options,
    )


async def _server_time() -> float:
    return 1_704_067_200.0


OKX = "https://www.okx.com"
SETTINGS = NetworkSettings(None, None, True)
KEY = LimiterKey("www.okx.com|live", "uid:42", "/api/v5/account/set-riskOffset-amt")
RATE = RateLimit(10, 2.0, "user")
UID = "200001"
KEY_A = SimKey("loop-key-a", "loop-secret-a", "loop-pass")
KEY_B = SimKey("loop-key-b", "loop-secret-b", "loop-pass")
CCYS = [
    "BTC",
    "ETH",
    "SOL",
    "OP",
    "USDC",
    "ETC",
    "FIL",
    "DOGE",
    "LTC",
    "BCH",
    "NEAR",
    "UNI",
    "DOT",
    "APT",
    "TRX",
    "ATOM",
    "OKB",
    "ADA",
    "TON",
    "LINK",
]
