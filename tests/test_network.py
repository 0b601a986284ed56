"""Network options: proxies (a real tinyproxy and a real SOCKS5 server), shared
connection pools, the source address, a caller's own session, other event loops, and
running out of file descriptors."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from proxy_servers import SocksProxy, TinyProxy, require_tinyproxy, running
from sim_support import client_of

from okx_async import (
    ClientClosedError,
    InvalidInputError,
    NetworkError,
    OKXClient,
    RetryPolicy,
    TooManyOpenFilesError,
    _pool,
    _shared,
)
from okx_async.simulator import SimKey, Simulator, SimulatorConfig, SimulatorServer, SimUser

KEYS = [SimKey(f"net-key-{i}", f"net-secret-{i}", f"net-pass-{i}") for i in range(20)]
USERS = [SimUser(uid=str(5000 + i), keys=[key]) for i, key in enumerate(KEYS)]
PROXY_PASSWORD = "pr0xy-pa55word"


class Peers:
    """What the simulator saw of each request: peer address and port, and headers."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str]] = []  # (address, port, Via header)
        self.desk_headers: list[str] = []

    async def on_prepare(self, request: web.Request, _response: web.StreamResponse) -> None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        host, port = (peer[0], peer[1]) if peer else ("", 0)
        self.seen.append((host, port, request.headers.get("Via", "")))
        self.desk_headers.append(request.headers.get("X-Desk", ""))

    def connections(self) -> set[tuple[str, int]]:
        return {(host, port) for host, port, _ in self.seen}


@pytest.fixture
async def sim() -> AsyncIterator[tuple[Simulator, SimulatorServer, Peers]]:
    simulator = Simulator(SimulatorConfig(users=USERS))
    peers = Peers()
    simulator.app.on_response_prepare.append(peers.on_prepare)
    async with SimulatorServer(simulator) as server:
        yield simulator, server, peers


def client_for(i: int, url: str, **kwargs: Any) -> OKXClient:
    return client_of(KEYS[i], url, user_id=USERS[i].uid, **kwargs)


@pytest.fixture
def tinyproxy() -> Iterator[TinyProxy]:
    with running(TinyProxy(require_tinyproxy())) as proxy:
        yield proxy


@pytest.fixture
def tinyproxy_with_auth() -> Iterator[TinyProxy]:
    with running(TinyProxy(require_tinyproxy(), user="desk", password=PROXY_PASSWORD)) as proxy:
        yield proxy


# -- proxies ------------------------------------------------------------------------------


async def test_requests_go_through_the_http_proxy(
    sim: tuple[Simulator, SimulatorServer, Peers], tinyproxy: TinyProxy
) -> None:
    simulator, server, peers = sim
    async with client_for(0, server.base_url, proxy=tinyproxy.url) as client:
        result = await client.set_risk_offset_amount("BTC", "1.5")
    assert str(result.amount) == "1.5" and simulator.values("5000") == {"BTC": "1.5"}
    # tinyproxy logged the request, and the simulator saw the proxy's Via header.
    assert "/api/v5/account/set-riskOffset-amt" in tinyproxy.log()
    assert peers.seen and all("tinyproxy" in via for _, _, via in peers.seen)


async def test_proxy_credentials_work_and_never_show(
    sim: tuple[Simulator, SimulatorServer, Peers],
    tinyproxy_with_auth: TinyProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    simulator, server, _ = sim
    caplog.set_level(logging.DEBUG)
    async with client_for(0, server.base_url, proxy=tinyproxy_with_auth.url) as client:
        await client.set_risk_offset_amount("BTC", "2")
        shown = repr(client) + repr(client._transport)
    assert simulator.values("5000") == {"BTC": "2"}
    assert PROXY_PASSWORD not in shown and "***@127.0.0.1" in shown

    wrong = tinyproxy_with_auth.url.replace(PROXY_PASSWORD, "wrong-" + PROXY_PASSWORD)
    async with client_for(1, server.base_url, proxy=wrong) as client:
        with pytest.raises(NetworkError) as caught:
            await client.set_risk_offset_amount("BTC", "3")
        shown = repr(client) + repr(client._transport)
        stats = client.stats()
    # Typed as the proxy's refusal, saying what to check; nothing reached OKX, not retried.
    assert "proxy refused" in str(caught.value) and "user name and password" in str(caught.value)
    assert caught.value.sent is False and not caught.value.retryable
    assert stats.retried == 0
    texts = [str(caught.value), repr(caught.value), shown, caplog.text]
    assert not any(PROXY_PASSWORD in text for text in texts)


def test_bad_proxy_urls_are_refused_without_their_password() -> None:
    for bad in (
        f"ftp://user:{PROXY_PASSWORD}@127.0.0.1:21",
        f"http://user:{PROXY_PASSWORD}@:8080",
        f"socks5://user:{PROXY_PASSWORD}@127.0.0.1",  # no port
        f"http://user:{PROXY_PASSWORD}@127.0.0.1:99999",
    ):
        with pytest.raises(InvalidInputError) as caught:
            client_for(0, "http://127.0.0.1:1", proxy=bad)
        assert PROXY_PASSWORD not in str(caught.value), bad
        assert "***@" in str(caught.value), bad


async def test_trust_env_honours_http_proxy_and_no_proxy(
    sim: tuple[Simulator, SimulatorServer, Peers],
    tinyproxy: TinyProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, server, peers = sim
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", tinyproxy.url)
    async with client_for(0, server.base_url, trust_env=True) as client:
        await client.set_risk_offset_amount("BTC", "1")
    assert "set-riskOffset-amt" in tinyproxy.log()
    assert all("tinyproxy" in via for _, _, via in peers.seen)
    async with client_for(1, server.base_url) as client:  # trust_env off: direct
        peers.seen.clear()
        await client.set_risk_offset_amount("BTC", "1")
    assert peers.seen and not any(via for _, _, via in peers.seen)

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    peers.seen.clear()
    async with client_for(2, server.base_url, trust_env=True) as client:
        await client.set_risk_offset_amount("BTC", "1")
    assert peers.seen and not any(via for _, _, via in peers.seen)


async def test_socks5_proxy(sim: tuple[Simulator, SimulatorServer, Peers]) -> None:
    simulator, server, _ = sim
    with running(SocksProxy(user="desk", password=PROXY_PASSWORD)) as socks:
        # Wrong credentials first (pproxy trusts an address once it has authenticated): a
        # typed error, not retried (the proxy will not change its mind).
        wrong = socks.url.replace(PROXY_PASSWORD, "wrong")
        async with client_for(1, server.base_url, proxy=wrong) as client:
            with pytest.raises(NetworkError, match="SOCKS proxy refused") as refused:
                await client.set_risk_offset_amount("ETH", "5")
            assert client.stats().retried == 0
        async with client_for(0, server.base_url, proxy=socks.url) as client:
            await client.set_risk_offset_amount("ETH", "4")
            assert PROXY_PASSWORD not in repr(client._transport)
        log = socks.log()
    assert simulator.values("5000") == {"ETH": "4"}
    assert not simulator.values("5001")
    assert f"127.0.0.1:{server.port}" in log  # pproxy -v logs each tunnel's target
    # The proxy gone: a typed, retried network error that does not show the password.
    retry = RetryPolicy(max_attempts=2, backoff_base=0.001, backoff_cap=0.001)
    async with client_for(2, server.base_url, proxy=socks.url, retry=retry) as client:
        with pytest.raises(NetworkError, match="SOCKS proxy failed") as down:
            await client.set_risk_offset_amount("ETH", "6")
        assert client.stats().retried == 1
    for error in (refused.value, down.value):
        assert PROXY_PASSWORD not in str(error) + repr(error)


# -- shared pools ---------------------------------------------------------------------------


async def test_clients_on_one_loop_share_one_pool(
    sim: tuple[Simulator, SimulatorServer, Peers],
) -> None:
    simulator, server, peers = sim
    clients = [client_for(i, server.base_url) for i in range(20)]
    for client in clients:  # one after another: each finds the last one's idle connection
        await client.set_risk_offset_amount("BTC", "1")
    assert len(simulator.records) == 21  # 20 sets and one clock sync for all
    assert len(peers.connections()) == 1
    # Other network settings, another pool.
    async with client_for(0, server.base_url, local_addr="127.0.0.2") as other:
        await other.set_risk_offset_amount("BTC", "2")
    assert len(peers.connections()) == 2
    for client in clients:
        await client.close()
    pools = _shared.for_loop(asyncio.get_running_loop()).pools.pools
    assert not any(pools)  # the last one closed it


async def test_a_full_pool_makes_calls_wait_not_fail(
    sim: tuple[Simulator, SimulatorServer, Peers], monkeypatch: pytest.MonkeyPatch
) -> None:
    simulator, server, peers = sim
    monkeypatch.setattr(_pool, "CONNECTION_LIMIT", 2)
    simulator.latency = (0.02, 0.02)  # each request holds its connection a while
    clients = [client_for(i, server.base_url) for i in range(12)]
    results = await asyncio.gather(*(c.set_risk_offset_amount("BTC", "7") for c in clients))
    assert all(str(r.amount) == "7" for r in results)
    assert len(peers.connections()) <= 2  # 12 concurrent users, 2 connections
    for client in clients:
        await client.close()


def test_a_client_works_from_a_second_event_loop() -> None:
    """Two asyncio.run calls with one client: each loop gets its own pool, and the first
    loop's connections are closed when it ends (no unclosed-transport warnings)."""
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def serve() -> None:
        async def main() -> None:
            simulator = Simulator(SimulatorConfig(users=USERS))
            async with SimulatorServer(simulator) as server:
                holder["url"], holder["sim"] = server.base_url, simulator
                holder["stop"] = stop = asyncio.Event()
                holder["loop"] = asyncio.get_running_loop()
                ready.set()
                await stop.wait()

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            client = client_for(0, holder["url"])
            first = asyncio.run(client.set_risk_offset_amount("BTC", "1"))
            second = asyncio.run(client.set_risk_offset_amount("BTC", "2"))

            async def more_than_a_burst(value: str) -> list[Any]:
                # 12 calls of one user: the last 2 wait for slots of this loop's limiter.
                ccys = ["ETH", "SOL", "XRP", "DOGE", "ADA", "LTC"]
                ccys += ["DOT", "LINK", "ATOM", "AVAX", "TRX", "TON"]
                return await asyncio.gather(
                    *(client.set_risk_offset_amount(c, value) for c in ccys)
                )

            async def finish() -> None:
                await asyncio.wait_for(more_than_a_burst("4"), 10)
                await client.close()

            asyncio.run(more_than_a_burst("3"))
            asyncio.run(finish())
            gc.collect()
        assert (str(first.amount), str(second.amount)) == ("1", "2")
        values = holder["sim"].values("5000")
        assert values.pop("BTC") == "2" and set(values.values()) == {"4"}
        leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
        assert not leaks, [str(w.message) for w in leaks]
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(10)


# -- source address, own session --------------------------------------------------------------


async def test_local_addr_sets_the_source_address(
    sim: tuple[Simulator, SimulatorServer, Peers],
) -> None:
    _, server, peers = sim
    async with client_for(0, server.base_url, local_addr="127.0.0.2") as client:
        await client.set_risk_offset_amount("BTC", "1")
    async with client_for(1, server.base_url, local_addr=("127.0.0.3", 0)) as client:
        await client.set_risk_offset_amount("BTC", "1")
    assert {host for host, _, _ in peers.seen} == {"127.0.0.2", "127.0.0.3"}
    for bad in ("not-an-ip", ("127.0.0.1",), ("127.0.0.1", 70000), 7):
        with pytest.raises(InvalidInputError):
            client_for(0, server.base_url, local_addr=bad)


async def test_an_injected_session_is_used_and_never_closed(
    sim: tuple[Simulator, SimulatorServer, Peers],
) -> None:
    _, server, peers = sim
    async with aiohttp.ClientSession(headers={"X-Desk": "ours"}) as session:
        client = client_for(0, server.base_url, session=session)
        await client.set_risk_offset_amount("BTC", "5")
        await client.close()
        assert peers.desk_headers and set(peers.desk_headers) == {"ours"}  # via our session
        assert not session.closed
        async with session.get(server.base_url + "/api/v5/public/time") as response:
            assert response.status == 200
        other = client_for(1, server.base_url, session=session)
    with pytest.raises(ClientClosedError, match="session= was closed"):
        await other.set_risk_offset_amount("BTC", "5")
    await other.close()
    with pytest.raises(InvalidInputError):
        client_for(0, server.base_url, session=session, proxy="http://127.0.0.1:1")


# -- file descriptors ---------------------------------------------------------------------------

_EMFILE_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, os, resource, sys
    from okx_async import OKXClient, TooManyOpenFilesError
    from okx_async.simulator import SimKey, Simulator, SimulatorConfig, SimulatorServer, SimUser

    KEY = SimKey("fd-key", "fd-secret", "fd-pass")

    async def main():
        simulator = Simulator(SimulatorConfig(users=[SimUser(uid="77", keys=[KEY])]))
        async with SimulatorServer(simulator) as server:
            def make(**kwargs):
                return OKXClient(api_key=KEY.api_key, secret_key=KEY.secret_key,
                                 passphrase=KEY.passphrase, base_url=server.base_url,
                                 user_id="77", **kwargs)
            # Warm up through another pool: the clock is synced, every module imported.
            async with make(local_addr="127.0.0.2") as warm:
                await warm.set_risk_offset_amount("BTC", "0")
            received = len(simulator.records)
            client = make()  # its pool needs a new socket
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
            hoard = []
            try:
                while True:
                    hoard.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                pass
            try:
                await client.set_risk_offset_amount("BTC", "1")
                outcome = "succeeded"
            except TooManyOpenFilesError as exc:
                outcome = type(exc).__name__ + ": " + str(exc)
            except Exception as exc:
                outcome = "other " + type(exc).__name__ + ": " + str(exc)
            for fd in hoard:
                os.close(fd)
            stats = client.stats()
            await client.close()
            print(json.dumps({"outcome": outcome, "sent": stats.sent, "retried": stats.retried,
                              "received": len(simulator.records) - received}))

    asyncio.run(main())
    """
)


def test_too_many_open_files_is_typed_and_not_retried() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _EMFILE_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["outcome"].startswith("TooManyOpenFilesError: too many open files"), report
    assert (report["sent"], report["retried"], report["received"]) == (1, 0, 0), report
    assert not TooManyOpenFilesError.retryable


# -- the command line ----------------------------------------------------------------------


async def test_cli_proxy_flag_and_profile_field(
    sim: tuple[Simulator, SimulatorServer, Peers],
    tinyproxy: TinyProxy,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from okx_async.cli import main

    simulator, server, peers = sim
    for name in [n for n in os.environ if n.startswith("OKX_")]:
        monkeypatch.delenv(name)
    key = KEYS[0]
    config = tmp_path / "config.toml"
    config.write_text(
        f'[profiles.desk]\napi_key = "{key.api_key}"\nsecret_key = "{key.secret_key}"\n'
        f'passphrase = "{key.passphrase}"\nbase_url = "{server.base_url}"\n'
        f'proxy = "{tinyproxy.url}"\n'
    )
    config.chmod(0o600)
    base = ["--config", str(config), "--profile", "desk"]
    assert await asyncio.to_thread(main, ["set", "BTC", "1", *base]) == 0
    assert "set-riskOffset-amt" in tinyproxy.log()  # the profile's proxy
    peers.seen.clear()
    assert (
        await asyncio.to_thread(
            main, ["set", "BTC", "2", *base, "--proxy", "http://127.0.0.1:1", "--timeout", "0.5"]
        )
        == 1
    )
    assert not peers.seen  # --proxy won over the profile's: nothing reached the simulator
    capsys.readouterr()
    bad = f"ftp://u:{PROXY_PASSWORD}@127.0.0.1:1"
    assert await asyncio.to_thread(main, ["set", "BTC", "2", *base, "--proxy", bad]) == 2
    captured = capsys.readouterr()
    assert PROXY_PASSWORD not in captured.out + captured.err and "proxy" in captured.err
    assert simulator.values("5000") == {"BTC": "1"}
