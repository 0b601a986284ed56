"""The client against OKX's edge cases as the simulator plays them: absent currencies, the
headers OKX requires, 50011 in both its forms, JSON 5xx answers, wrong-region keys."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from sim_support import client_of, served

from okx_async import (
    ENDPOINT_LIMITS,
    AuthenticationError,
    ClientEvent,
    DeadlineExceededError,
    ExchangeBusyError,
    NetworkError,
    OKXClient,
    RateLimitedError,
    RetryPolicy,
)
from okx_async._identity import user_key
from okx_async._ratelimit import LocalLimiterBackend
from okx_async.simulator import (
    RATE_LIMIT_200_TEXT,
    RATE_LIMIT_429_TEXT,
    SET_PATH,
    SimKey,
    Simulator,
    SimUser,
)

KEY = SimKey("edge-key-1", "edge-secret-1-xyz", "edge-pass-1-xyz")
DEMO = SimKey("edge-key-demo", "edge-secret-demo-xyz", "edge-pass-demo-xyz", demo=True)
EEA = SimKey("edge-key-eea", "edge-secret-eea-xyz", "edge-pass-eea-xyz", region="eea")
UID = "5005"
FAST_RETRY = RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_cap=0.02)


@dataclass
class Sim:
    simulator: Simulator
    url: str
    headers: list[tuple[str, str, dict[str, str]]]  # (method, path, headers) per request


Start = Callable[..., Awaitable[Sim]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    async with contextlib.AsyncExitStack() as servers:

        async def _start(**config: Any) -> Sim:
            users = config.pop("users", [SimUser(UID, [KEY, DEMO, EEA], equity={"BTC": "2"})])
            seen: list[tuple[str, str, dict[str, str]]] = []

            @web.middleware
            async def record_headers(
                request: web.Request, handler: web.Handler
            ) -> web.StreamResponse:
                seen.append((request.method, request.path, dict(request.headers)))
                return await handler(request)

            def prepare(simulator: Simulator) -> None:
                simulator.app.middlewares.append(record_headers)

            simulator, url = await servers.enter_async_context(
                served(users, prepare=prepare, **config)
            )
            return Sim(simulator, url, seen)

        yield _start


def client(sim: Sim, key: SimKey = KEY, **kwargs: object) -> OKXClient:
    return client_of(key, sim.url, **kwargs)


async def test_a_currency_without_equity_is_absent(start: Start) -> None:
    sim = await start()
    async with client(sim) as c:
        await c.set_risk_offset_amount("BTC", "0.5")
        await c.set_risk_offset_amount("ETH", "1")  # accepted, but ETH is not held
        amounts = await c.get_risk_offset_amounts(["BTC", "ETH", "NOPE"])
    assert set(amounts) == {"BTC"}
    assert str(amounts["BTC"].user_defined) == "0.5"


@pytest.mark.parametrize("key", [KEY, DEMO], ids=["live", "demo"])
async def test_the_client_sends_every_header_okx_requires(start: Start, key: SimKey) -> None:
    sim = await start()
    async with client(sim, key) as c:
        await c.get_account_config()
        await c.set_risk_offset_amount("BTC", "0.5")
        await c.get_risk_offset_amounts(["BTC"])
    signed = [(m, p, h) for m, p, h in sim.headers if not p.endswith("/public/time")]
    assert [(m, p) for m, p, _ in signed] == [
        ("GET", "/api/v5/account/config"),
        ("POST", SET_PATH),
        ("GET", "/api/v5/account/balance"),
    ]
    for method, _, headers in signed:
        assert headers["OK-ACCESS-KEY"] == key.api_key
        assert headers["OK-ACCESS-PASSPHRASE"] == key.passphrase
        assert re.fullmatch(r"[A-Za-z0-9+/]{43}=", headers["OK-ACCESS-SIGN"])
        stamp = headers["OK-ACCESS-TIMESTAMP"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp), stamp
        assert headers.get("x-simulated-trading") == ("1" if key.demo else None)
        if method == "POST":
            assert headers["Content-Type"] == "application/json"
    assert all(r.code == "0" for r in sim.simulator.records)


RateLimitForm = tuple[str, dict[str, object], int, str]
FORMS: list[RateLimitForm] = [
    ("429 refusal", {"rate_limit_status": 429}, 429, RATE_LIMIT_429_TEXT),
    ("200 refusal", {"rate_limit_status": 200}, 200, RATE_LIMIT_200_TEXT),
    ("200 fault", {}, 200, RATE_LIMIT_200_TEXT),
]


@pytest.mark.parametrize(("form", "config", "status", "text"), FORMS, ids=[f[0] for f in FORMS])
async def test_both_forms_of_50011_hold_the_key_and_lower_the_burst(
    start: Start, form: str, config: dict[str, object], status: int, text: str
) -> None:
    if form.endswith("refusal"):  # the server allows 1 set a minute: the second is refused
        config = {**config, "limits": {SET_PATH: (1, 60.0)}}
    sim = await start(**config)
    if form.endswith("fault"):
        sim.simulator.script_faults([None, "rate_limit_200"])
    backend = LocalLimiterBackend()
    events: list[ClientEvent] = []
    async with client(
        sim, user_id=UID, limiter=backend, retry=RetryPolicy(max_attempts=1), on_event=events.append
    ) as c:
        await c.set_risk_offset_amount("BTC", "1")
        with pytest.raises(RateLimitedError) as caught:
            await c.set_risk_offset_amount("ETH", "1")
        refused_at = asyncio.get_running_loop().time()
        limiter = backend.limiter(user_key(False, UID, SET_PATH), ENDPOINT_LIMITS[SET_PATH])
        snapshot = limiter.snapshot()
        stats = c.stats()
    error = caught.value
    assert (error.code, error.status, error.message) == ("50011", status, text)
    window = ENDPOINT_LIMITS[SET_PATH].window
    assert snapshot.burst == ENDPOINT_LIMITS[SET_PATH].limit // 2  # halved, as for 429
    assert snapshot.held_until is not None
    assert refused_at < snapshot.held_until <= refused_at + window
    assert stats.rate_limited == 1
    assert [e.kind for e in events if e.kind == "rate_limited"] == ["rate_limited"]
    assert sim.simulator.records[-1].code == "50011"


async def test_json_5xx_answers_are_retried_as_busy(start: Start) -> None:
    sim = await start()
    sim.simulator.script_faults(["unavailable_50001", "error_50026"])
    events: list[ClientEvent] = []
    async with client(sim, user_id=UID, retry=FAST_RETRY, on_event=events.append) as c:
        result = await c.set_risk_offset_amount("BTC", "0.7")
    assert str(result.amount) == "0.7"
    sets = [r for r in sim.simulator.records if r.path == SET_PATH]
    assert [(r.status, r.code) for r in sets] == [(503, "50001"), (500, "50026"), (200, "0")]
    retries = [e.error for e in events if e.kind == "retry"]
    assert retries == ["ExchangeBusyError 50001", "ExchangeBusyError 50026"]
    # Without retries left, the same answer surfaces as ExchangeBusyError with OKX's text.
    sim.simulator.script_faults(["unavailable_50001"])
    async with client(sim, user_id=UID, retry=RetryPolicy(max_attempts=1)) as c:
        with pytest.raises(ExchangeBusyError) as caught:
            await c.set_risk_offset_amount("BTC", "0.8")
    assert (caught.value.status, caught.value.code) == (503, "50001")
    assert "temporarily unavailable" in caught.value.message


async def test_a_key_on_the_wrong_regions_host_is_refused_with_50119(start: Start) -> None:
    sim = await start()
    async with client(sim, EEA) as c:
        with pytest.raises(AuthenticationError) as caught:
            await c.get_account_config()
    assert (caught.value.code, caught.value.status) == ("50119", 200)


async def test_a_read_only_key_gets_50120_with_http_200(start: Start) -> None:
    read = SimKey("edge-read", "edge-secret-r-xyz", "edge-pass-r-xyz", permissions="read_only")
    sim = await start(users=[SimUser(UID, [read])])
    async with client(sim, read, user_id=UID) as c:
        with pytest.raises(AuthenticationError) as caught:
            await c.set_risk_offset_amount("BTC", "1")
    assert (caught.value.code, caught.value.status) == ("50120", 200)
    assert not caught.value.retryable


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens: every connection is refused


@pytest.mark.parametrize("user_id", [None, UID], ids=["lookup", "known-uid"])
async def test_a_deadline_error_carries_the_error_that_used_up_the_time(
    user_id: str | None,
) -> None:
    c = client_of(
        KEY,
        closed_port_url(),
        user_id=user_id,
        retry=RetryPolicy(max_attempts=100, backoff_base=0.05, backoff_cap=0.05),
    )
    async with c:
        with pytest.raises(DeadlineExceededError) as caught:
            await c.set_risk_offset_amount("BTC", "1", timeout=0.5)
    assert isinstance(caught.value.__cause__, NetworkError)
    assert "the last attempt failed: NetworkError: connection to OKX failed" in str(caught.value)
