"""One user, one budget: however the host is spelled, and before the User ID is known."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sim_support import client_of, served

from okx_async import GLOBAL_URL, OPENAPI_URL, OKXClient
from okx_async._identity import canonical_host, cold_start_key, host_key, user_key
from okx_async.simulator import CONFIG_PATH, SET_PATH, SimKey, Simulator, SimUser

UID = "7001"
KEYS = [SimKey(f"id-key-{i}", f"id-secret-{i}-xyz", f"id-pass-{i}-xyz") for i in range(8)]
CCYS = ["BTC", "ETH", "USDT", "USDC", "SOL", "XRP", "ADA", "DOGE", "TRX", "LTC"]


@pytest.fixture
async def sim() -> AsyncIterator[tuple[Simulator, int]]:
    async with served([SimUser(uid=UID, keys=KEYS)]) as (simulator, url):
        yield simulator, int(url.rsplit(":", 1)[1])


def client(base_url: str, key: SimKey, **kwargs: object) -> OKXClient:
    return client_of(key, base_url, **kwargs)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("http://127.0.0.1:8080", "http://localhost:8080/"),
        ("http://127.0.0.1:8080", "HTTP://LOCALHOST:8080"),
        ("http://[::1]:8080", "http://127.0.0.2:8080"),
        ("https://www.okx.com", "https://www.okx.com:443"),
        ("https://www.okx.com", "https://WWW.OKX.COM./"),
        (GLOBAL_URL, OPENAPI_URL),
    ],
)
def test_spellings_of_one_server_are_one_host(one: str, other: str) -> None:
    assert canonical_host(one) == canonical_host(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8081"),
        ("https://www.okx.com", "https://eea.okx.com"),
        ("https://www.okx.com", "http://www.okx.com"),  # port 443 against port 80
    ],
)
def test_different_servers_stay_apart(one: str, other: str) -> None:
    assert canonical_host(one) != canonical_host(other)


def test_user_budgets_ignore_the_host_and_split_live_from_demo() -> None:
    assert user_key(False, "1", SET_PATH) == user_key(False, "1", SET_PATH)
    assert user_key(False, "1", SET_PATH) != user_key(True, "1", SET_PATH)
    assert cold_start_key(False, "http://localhost:1", CONFIG_PATH) == cold_start_key(
        False, "http://127.0.0.1:1/", CONFIG_PATH
    )
    assert host_key("https://www.okx.com") == host_key("https://openapi.okx.com:443")


async def test_clients_spelling_the_host_differently_share_the_users_budget(
    sim: tuple[Simulator, int],
) -> None:
    simulator, port = sim
    spellings = [f"http://127.0.0.1:{port}", f"HTTP://LOCALHOST:{port}/"]
    clients = [client(url, KEYS[i], user_id=UID) for i, url in enumerate(spellings)]
    try:
        await asyncio.gather(*(c.set_risk_offset_amount(ccy, "1") for c in clients for ccy in CCYS))
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    assert len([r for r in simulator.records if r.path == SET_PATH]) == 2 * len(CCYS)
    assert simulator.rate_limited_count() == 0
    assert simulator.max_in_window(UID, SET_PATH) <= 10


async def test_many_keys_waking_up_at_once_share_the_lookup_budget(
    sim: tuple[Simulator, int],
) -> None:
    """8 keys of one user without user_id=: their 8 User ID lookups must not exceed the
    config endpoint's 5 per 2 s, which no per-key budget can promise."""
    simulator, port = sim
    clients = [client(f"http://127.0.0.1:{port}", key) for key in KEYS]
    try:
        await asyncio.gather(
            *(c.set_risk_offset_amount("BTC", str(i)) for i, c in enumerate(clients))
        )
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    lookups = [r for r in simulator.records if r.path == CONFIG_PATH]
    assert len(lookups) == len(KEYS)
    assert simulator.rate_limited_count() == 0
    assert simulator.max_in_window(UID, CONFIG_PATH) <= 5


def test_a_second_running_loop_on_the_memory_store_is_warned_about(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two threads, each with its own running loop, on the default memory:// store: each
    loop has its own budget. That cannot be shared, so it must at least be said."""
    import threading

    from okx_async import _shared

    monkeypatch.setattr(_shared, "_WARNED_SECOND_LOOP", False)
    first_running = threading.Event()
    second_done = threading.Event()

    async def first() -> None:
        _shared.default_local_backend()
        first_running.set()
        await asyncio.to_thread(second_done.wait, 10)  # running until the second is done

    thread = threading.Thread(target=asyncio.run, args=(first(),))
    thread.start()
    try:
        assert first_running.wait(10)

        async def second() -> None:
            _shared.default_local_backend()

        asyncio.run(second())
    finally:
        second_done.set()
        thread.join(10)
    warned = [r for r in caplog.records if "second running event loop" in r.getMessage()]
    assert len(warned) == 1 and "sqlite:///" in warned[0].getMessage()

    async def third() -> None:  # one loop at a time: no warning
        _shared.default_local_backend()

    caplog.clear()
    monkeypatch.setattr(_shared, "_WARNED_SECOND_LOOP", False)
    asyncio.run(third())
    assert not [r for r in caplog.records if "second running event loop" in r.getMessage()]
