"""OKXClient against the real simulator on port 0: signing, clock, typed errors, limits."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from okx_async import (
    AccountModeError,
    AuthenticationError,
    ClientClosedError,
    ClientEvent,
    DeadlineExceededError,
    InvalidInputError,
    OKXClient,
)
from okx_async.simulator import (
    DEFAULT_MARGIN_CCYS,
    SimKey,
    Simulator,
    SimulatorConfig,
    SimulatorServer,
    SimUser,
)

SET = "/api/v5/account/set-riskOffset-amt"
KEYS = [SimKey(f"key-{i}", f"secret-{i}-xyz", f"pass-{i}-xyz") for i in range(4)]
DEMO_KEY = SimKey("demo-key", "demo-secret-xyz", "demo-pass-xyz", demo=True)
USERS = [
    SimUser(uid="1001", keys=[*KEYS, DEMO_KEY]),
    SimUser(uid="2002", keys=[SimKey("spot-key", "spot-secret-xyz", "spot-pass-xyz")], acct_lv="1"),
]


@pytest.fixture
async def sim() -> AsyncIterator[tuple[Simulator, str]]:
    simulator = Simulator(SimulatorConfig(users=USERS))
    async with SimulatorServer(simulator) as server:
        yield simulator, server.base_url


def client_for(base_url: str, key: SimKey = KEYS[0], **kwargs: object) -> OKXClient:
    return OKXClient(
        api_key=key.api_key,
        secret_key=key.secret_key,
        passphrase=key.passphrase,
        base_url=base_url,
        demo=key.demo,
        **kwargs,
    )  # type: ignore[arg-type]


def posts(simulator: Simulator) -> list[object]:
    return [r for r in simulator.records if r.path == SET]


async def test_set_get_and_config(sim: tuple[Simulator, str]) -> None:
    simulator, url = sim
    async with client_for(url) as client:
        result = await client.set_risk_offset_amount("BTC", "0.5")
        assert (result.ccy, result.amount, result.superseded) == ("BTC", Decimal("0.5"), False)
        assert result.attempts == 1  # the lane counted the one request that carried it
        stats = client.stats()  # one set sent and answered; the server time and config looked up
        assert (stats.sent, stats.succeeded, stats.in_flight, stats.lookups) == (1, 1, 0, 2)
        config = await client.get_account_config()
        assert (config.uid, config.is_portfolio_margin, config.can_trade) == ("1001", True, True)
        amounts = await client.get_risk_offset_amounts(["BTC", "ETH"])
        assert amounts["BTC"].user_defined == Decimal("0.5")
        assert set(amounts) == {"BTC", "ETH"}
    assert simulator.values("1001")["BTC"] == "0.5"
    assert all(r.signature_ok for r in simulator.records)


async def test_five_sequential_and_twenty_concurrent_calls(sim: tuple[Simulator, str]) -> None:
    simulator, url = sim
    ccys = ["BTC", "ETH", "USDT", "USDC", "SOL"]
    async with client_for(url) as client:
        for i, ccy in enumerate(ccys):
            assert (await client.set_risk_offset_amount(ccy, f"{i}.25")).amount == Decimal(
                f"{i}.25"
            )
        results = await asyncio.gather(
            *(client.set_risk_offset_amount(ccys[i % 5], Decimal(i) / 8) for i in range(20)),
        )
    assert all(
        not r.superseded or r.amount == Decimal(15 + i % 5) / 8 for i, r in enumerate(results)
    )
    sent = posts(simulator)
    assert all(r.signature_ok and r.code == "0" for r in sent)
    assert simulator.rate_limited_count() == 0
    assert simulator.max_in_window("1001", SET) <= 10
    for i, ccy in enumerate(ccys):
        assert Decimal(simulator.values("1001")[ccy]) == Decimal(15 + i) / 8


async def test_server_clock_45_seconds_off_does_not_fail(sim: tuple[Simulator, str]) -> None:
    simulator, url = sim
    simulator.clock_offset = 45.0
    async with client_for(url) as client:
        assert (await client.set_risk_offset_amount("BTC", "1")).amount == Decimal(1)
        # The server clock jumps again: 50102, one resync, one retry.
        simulator.clock_offset = -50.0
        assert (await client.set_risk_offset_amount("BTC", "2")).amount == Decimal(2)
    codes = [r.code for r in posts(simulator)]
    assert codes == ["0", "50102", "0"]


async def test_demo_header_must_match_the_key(sim: tuple[Simulator, str]) -> None:
    _, url = sim
    async with client_for(url, DEMO_KEY) as client:
        assert (await client.set_risk_offset_amount("ETH", "3")).amount == Decimal(3)
    wrong = OKXClient(
        api_key=DEMO_KEY.api_key,
        secret_key=DEMO_KEY.secret_key,
        passphrase=DEMO_KEY.passphrase,
        base_url=url,
        demo=False,
        user_id="1001",
    )
    async with wrong:
        with pytest.raises(AuthenticationError) as info:
            await wrong.set_risk_offset_amount("ETH", "4")
    assert info.value.code == "50101"


async def test_account_mode_error_is_typed_and_not_retried(sim: tuple[Simulator, str]) -> None:
    simulator, url = sim
    spot = USERS[1].keys[0]
    async with client_for(url, spot) as client:
        with pytest.raises(AccountModeError) as info:
            await client.set_risk_offset_amount("BTC", "1")
    assert info.value.code == "51010" and info.value.path == SET
    assert len(posts(simulator)) == 1


async def test_wrong_passphrase_is_an_authentication_error(sim: tuple[Simulator, str]) -> None:
    simulator, url = sim
    bad = SimKey(KEYS[0].api_key, KEYS[0].secret_key, "not-the-passphrase")
    async with client_for(url, bad, user_id="1001") as client:
        with pytest.raises(AuthenticationError):
            await client.set_risk_offset_amount("BTC", "1")
    assert len(posts(simulator)) == 1


async def test_bad_input_is_refused_before_any_request(sim: tuple[Simulator, str]) -> None:
    simulator, url = sim
    async with client_for(url) as client:
        for ccy, amount in [("", "1"), ("BTC", 0.5), ("BTC", "-1"), ("B-TC", "1"), ("BTC", True)]:
            with pytest.raises(InvalidInputError):
                await client.set_risk_offset_amount(ccy, amount)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            await client.set_risk_offset_amount("BTC", "1", timeout=0)
    assert simulator.records == []


async def test_closed_client_refuses_new_calls(sim: tuple[Simulator, str]) -> None:
    _, url = sim
    client = client_for(url)
    await client.set_risk_offset_amount("BTC", "1")
    await client.close()
    await client.close()  # idempotent
    with pytest.raises(ClientClosedError, match="closed"):
        await client.set_risk_offset_amount("BTC", "2")
    with pytest.raises(ClientClosedError):
        await client.get_account_config()


async def test_from_env(sim: tuple[Simulator, str], monkeypatch: pytest.MonkeyPatch) -> None:
    simulator, url = sim
    monkeypatch.setenv("OKX_API_KEY", KEYS[1].api_key)
    monkeypatch.setenv("OKX_SECRET_KEY", KEYS[1].secret_key)
    monkeypatch.setenv("OKX_PASSPHRASE", KEYS[1].passphrase)
    monkeypatch.setenv("OKX_BASE_URL", url)
    monkeypatch.setenv("OKX_DEMO", "0")
    async with OKXClient.from_env() as client:
        await client.set_risk_offset_amount("SOL", "7")
    assert simulator.values("1001")["SOL"] == "7"
    monkeypatch.delenv("OKX_PASSPHRASE")
    with pytest.raises(InvalidInputError, match="OKX_PASSPHRASE"):
        OKXClient.from_env()


async def test_deadline_that_cannot_be_met_sends_nothing(sim: tuple[Simulator, str]) -> None:
    simulator, url = sim
    async with client_for(url, user_id="1001") as client:
        ccys = sorted(DEFAULT_MARGIN_CCYS - {"BTC"})[:10]
        await asyncio.gather(*(client.set_risk_offset_amount(c, "1") for c in ccys))
        before = len(posts(simulator))
        # All 10 slots are held for 2 s after their responses: 0.3 s cannot be met.
        with pytest.raises(DeadlineExceededError):
            await client.set_risk_offset_amount("BTC", "5", timeout=0.3)
    assert len(posts(simulator)) == before


async def test_a_caller_cancelled_mid_send_frees_its_currency(
    sim: tuple[Simulator, str],
) -> None:
    simulator, url = sim
    simulator.latency = (0.1, 0.1)
    sent = asyncio.Event()

    def on_event(event: ClientEvent) -> None:
        if event.kind == "sent" and event.path == SET:
            sent.set()

    async with client_for(url, on_event=on_event) as client:
        first = asyncio.ensure_future(client.set_risk_offset_amount("BTC", "1"))
        await sent.wait()  # the caller sends its own value: it is on the wire now
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        # The next value of the currency is sent at once, not queued behind the one gone.
        second = await asyncio.wait_for(client.set_risk_offset_amount("BTC", "2"), 5)
        assert second.amount == Decimal(2) and not second.superseded
    assert simulator.values("1001")["BTC"] == "2"


async def test_several_keys_of_one_user_share_one_budget(sim: tuple[Simulator, str]) -> None:
    simulator, url = sim
    simulator.latency = (0.0, 0.02)
    clients = [client_for(url, key) for key in KEYS[:3]]
    # Learn the User ID first: then each call reaches its lane in the order it is made.
    await asyncio.gather(*(c.get_account_config() for c in clients))
    rng = random.Random(7)
    last: dict[str, str] = {}
    calls = []
    for i in range(30):
        ccy = rng.choice(["BTC", "ETH", "USDT", "SOL", "XRP"])
        value = str(i)
        last[ccy] = value
        calls.append(clients[i % 3].set_risk_offset_amount(ccy, value))
    try:
        results = await asyncio.gather(*calls)
    finally:
        for c in clients:
            await c.close()
    assert simulator.rate_limited_count() == 0
    assert simulator.max_in_window("1001", SET) <= 10
    assert all(r.amount == Decimal(last[r.ccy]) for r in results if r.superseded)
    assert {k: simulator.values("1001")[k] for k in last} == last


async def test_no_secret_in_logs_reprs_or_errors(
    sim: tuple[Simulator, str], caplog: pytest.LogCaptureFixture
) -> None:
    simulator, url = sim
    caplog.set_level(logging.DEBUG)
    key = KEYS[2]
    texts: list[str] = []
    signatures: list[str] = []
    from okx_async import Credentials

    original = Credentials.request_headers  # every signature is made in request_headers()

    def spy(self: Credentials, *args: object) -> object:
        made = original(self, *args)  # type: ignore[arg-type]
        signatures.append(dict(made)["OK-ACCESS-SIGN"])
        return made

    Credentials.request_headers = spy  # type: ignore[method-assign,assignment]
    try:
        client = client_for(url, key)
        texts.append(repr(client))
        await client.set_risk_offset_amount("BTC", "1")
        simulator.script_faults(["http_500", "html_502", "busy_50013"])
        await client.set_risk_offset_amount("BTC", "2")
        for bad in [("BTC", 0.1), ("", "1")]:
            try:
                await client.set_risk_offset_amount(*bad)  # type: ignore[arg-type]
            except Exception as exc:
                texts += [str(exc), repr(exc)]
        spot = USERS[1].keys[0]
        async with client_for(url, spot) as other:
            try:
                await other.set_risk_offset_amount("BTC", "1")
            except Exception as exc:
                texts += [str(exc), repr(exc), repr(other)]
        texts.append(repr(client.stats()))
        await client.close()
    finally:
        Credentials.request_headers = original  # type: ignore[method-assign]
    texts += [r.getMessage() for r in caplog.records]
    assert signatures
    blob = "\n".join(texts)
    for secret in [key.secret_key, key.passphrase, *signatures, USERS[1].keys[0].secret_key]:
        assert secret not in blob


async def test_timeout_bounds_the_clock_sync_and_user_id_lookup() -> None:
    import socket
    import time

    with socket.socket() as s:  # a port with nobody listening: every attempt is refused
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    async with client_for(dead) as client:
        for call in (
            lambda: client.get_account_config(timeout=0.5),
            lambda: client.set_risk_offset_amount("BTC", "1", timeout=0.5),
        ):
            started = time.monotonic()
            with pytest.raises(DeadlineExceededError):
                await call()
            assert time.monotonic() - started < 1.5


async def test_many_clients_share_one_clock_sync(sim: tuple[Simulator, str]) -> None:
    simulator, url = sim
    clients = [
        client_for(url, KEYS[i % 4], user_id="1001") for i in range(len(DEFAULT_MARGIN_CCYS))
    ]
    try:
        await asyncio.gather(
            *(
                c.set_risk_offset_amount(ccy, "1")
                for c, ccy in zip(clients, sorted(DEFAULT_MARGIN_CCYS), strict=True)
            )
        )
    finally:
        for c in clients:
            await c.close()
    assert [r.path for r in simulator.records].count("/api/v5/public/time") == 1
