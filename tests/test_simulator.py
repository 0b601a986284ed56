"""The OKX simulator, driven over real HTTP with hand-signed requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from yarl import URL

from okx_async import format_timestamp, parse_timestamp, sign
from okx_async.simulator import (
    ALL_FAULT_KINDS,
    BALANCE_PATH,
    CONFIG_PATH,
    DEFAULT_FAULT_KINDS,
    RATE_LIMIT_200_TEXT,
    SET_PATH,
    SIMULATOR_KEY,
    TIME_PATH,
    Faults,
    Record,
    SimKey,
    Simulator,
    SimulatorConfig,
    SimulatorServer,
    SimUser,
    create_app,
    demo_config,
    serve,
)

A1 = SimKey("key-a1", "secret-a1", "pass-a1")
A2 = SimKey("key-a2", "secret-a2", "pass-a2")
DEMO = SimKey("key-demo", "secret-demo", "pass-demo", demo=True)
READ = SimKey("key-read", "secret-read", "pass-read", permissions="read_only")
B = SimKey("key-b", "secret-b", "pass-b")
SPOT = SimKey("key-spot", "secret-spot", "pass-spot")
EEA = SimKey("key-eea", "secret-eea", "pass-eea", region="eea")
NO_OFFSET = SimKey("key-nooff", "secret-nooff", "pass-nooff")


def make_users() -> list[SimUser]:
    return [
        SimUser(
            "1001",
            [A1, A2, DEMO, READ, EEA],
            values={"ETH": "2"},
            equity={"BTC": "3", "ETH": "12", "SOL": "60", "XRP": "0", "USDT": "500"},
            spot_in_use={"ETH": "1.5", "SOL": "3"},
            max_spot_in_use={"ETH": "10", "SOL": "50"},
            min_values={"USDT": "100"},
        ),
        SimUser("2002", [B], main_uid="1001"),
        SimUser("3003", [SPOT], acct_lv="1"),
        SimUser("4004", [NO_OFFSET], risk_offset_mode=False),
    ]


@dataclass
class Answer:
    status: int
    content_type: str
    text: str

    @property
    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.text)
        return parsed

    @property
    def code(self) -> str:
        code: str = self.json["code"]
        return code


@dataclass
class Env:
    sim: Simulator
    url: str
    session: aiohttp.ClientSession
    server: SimulatorServer
    stack: contextlib.AsyncExitStack = field(repr=False)

    async def call(
        self,
        method: str,
        path: str,
        *,
        key: SimKey | None = A1,
        body: bytes | dict[str, Any] | None = None,
        signed_body: bytes | None = None,
        ts: str | None = None,
        headers: dict[str, str] | None = None,
        omit: tuple[str, ...] = (),
        timeout: float | None = None,
    ) -> Answer:
        """Send one request signed like OKX wants (unless told otherwise)."""
        raw = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
        sent: dict[str, str] = {"Content-Type": "application/json"}
        if key is not None:
            stamp = ts if ts is not None else format_timestamp(self.sim.now())
            signature = sign(
                key.secret_key, stamp, method, path, raw if signed_body is None else signed_body
            )
            sent |= {
                "OK-ACCESS-KEY": key.api_key,
                "OK-ACCESS-SIGN": signature,
                "OK-ACCESS-TIMESTAMP": stamp,
                "OK-ACCESS-PASSPHRASE": key.passphrase,
            }
            if key.demo:
                sent["x-simulated-trading"] = "1"
        for name in omit:
            sent.pop(name, None)
        sent |= headers or {}
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        async with self.session.request(
            method, URL(self.url + path, encoded=True), data=raw, headers=sent,
            timeout=client_timeout,
        ) as response:  # fmt: skip
            return Answer(response.status, response.content_type, await response.text())

    async def set(self, ccy: str, amount: str, key: SimKey = A1, **kwargs: Any) -> Answer:
        return await self.call(
            "POST", SET_PATH, key=key, body={"ccy": ccy, "clSpotInUseAmt": amount}, **kwargs
        )


Start = Callable[..., Awaitable[Env]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    async with contextlib.AsyncExitStack() as stack:

        async def _start(**config: Any) -> Env:
            config.setdefault("users", make_users())
            sim = Simulator(SimulatorConfig(**config))
            server = await stack.enter_async_context(SimulatorServer(sim))
            session = await stack.enter_async_context(aiohttp.ClientSession())
            return Env(sim, server.base_url, session, server, stack)

        yield _start


@pytest.fixture
async def env(start: Start) -> Env:
    return await start()


# --- success paths ------------------------------------------------------------------------


async def test_set_answers_like_okx_and_is_recorded(env: Env) -> None:
    answer = await env.set("BTC", "0.5")
    assert (answer.status, answer.content_type) == (200, "application/json")
    assert answer.json == {
        "code": "0",
        "msg": "",
        "data": [{"ccy": "BTC", "clSpotInUseAmt": "0.5"}],
    }
    assert env.sim.values("1001") == {"ETH": "2", "BTC": "0.5"}
    assert env.sim.values("2002") == {}
    [record] = env.sim.records
    assert record == Record(
        arrival=record.arrival,
        method="POST",
        path=SET_PATH,
        api_key="key-a1",
        uid="1001",
        body={"ccy": "BTC", "clSpotInUseAmt": "0.5"},
        status=200,
        code="0",
        signature_ok=True,
        fault=None,
        applied=True,
    )
    assert 0 < record.arrival <= asyncio.get_running_loop().time()


async def test_config_reports_user_key_and_sub_account(env: Env) -> None:
    main = (await env.call("GET", CONFIG_PATH)).json["data"][0]
    assert (main["uid"], main["mainUid"], main["acctLv"]) == ("1001", "1001", "4")
    assert main["perm"] == "read_only,trade" and main["posMode"] == "net_mode"
    sub = (await env.call("GET", CONFIG_PATH, key=B)).json["data"][0]
    assert (sub["uid"], sub["mainUid"]) == ("2002", "1001")
    read = (await env.call("GET", CONFIG_PATH, key=READ)).json["data"][0]
    assert read["perm"] == "read_only"
    spot = (await env.call("GET", CONFIG_PATH, key=SPOT)).json["data"][0]
    assert spot["acctLv"] == "1"


async def test_balance_shows_set_values(env: Env) -> None:
    await env.set("BTC", "1.25")
    answer = await env.call("GET", BALANCE_PATH + "?ccy=BTC,ETH,SOL")
    details = answer.json["data"][0]["details"]
    assert [d["ccy"] for d in details] == ["BTC", "ETH", "SOL"]
    assert [d["clSpotInUseAmt"] for d in details] == ["1.25", "2", ""]
    assert [d["spotInUseAmt"] for d in details] == ["", "1.5", "3"]
    assert [d["maxSpotInUse"] for d in details] == ["", "10", "50"]
    everything = (await env.call("GET", BALANCE_PATH)).json["data"][0]["details"]
    assert [d["ccy"] for d in everything] == ["BTC", "ETH", "SOL", "USDT"]
    # As OKX does: a currency with no equity (0, or never held) is left out.
    answer = await env.call("GET", BALANCE_PATH + "?ccy=XRP,BTC,DOGE")
    assert [d["ccy"] for d in answer.json["data"][0]["details"]] == ["BTC"]
    none = await env.call("GET", BALANCE_PATH + "?ccy=DOGE", key=B)  # equity None: margin ccys
    assert [d["ccy"] for d in none.json["data"][0]["details"]] == ["DOGE"]
    absent = await env.call("GET", BALANCE_PATH + "?ccy=NOPE", key=B)
    assert absent.json["data"][0]["details"] == []
    too_many = ",".join(f"C{i}" for i in range(21))
    refused = await env.call("GET", BALANCE_PATH + "?ccy=" + too_many)
    assert (refused.status, refused.code) == (400, "51000")


async def test_balance_alternative_max_field_name(start: Start) -> None:
    env = await start(max_field_name="maxSpotInUseAmt")
    [detail] = (await env.call("GET", BALANCE_PATH + "?ccy=ETH")).json["data"][0]["details"]
    assert detail["maxSpotInUseAmt"] == "10" and "maxSpotInUse" not in detail


async def test_public_time_follows_clock_offset(start: Start) -> None:
    env = await start(clock_offset=3600.0)
    answer = await env.call("GET", TIME_PATH, key=None)
    server_ms = int(answer.json["data"][0]["ts"])
    assert abs(server_ms / 1000 - (time.time() + 3600)) < 5
    env.sim.clock_offset = -3600.0
    answer = await env.call("GET", TIME_PATH, key=None)
    assert abs(int(answer.json["data"][0]["ts"]) / 1000 - (time.time() - 3600)) < 5
    [first, _] = env.sim.records
    assert (first.uid, first.api_key, first.signature_ok) == (None, None, True)


async def test_clock_offset_rejects_a_client_that_ignores_it(start: Start) -> None:
    env = await start(clock_offset=45.0)
    local = await env.set("BTC", "1", ts=format_timestamp(time.time()))
    assert (local.status, local.code) == (401, "50102")
    server_ts = int((await env.call("GET", TIME_PATH, key=None)).json["data"][0]["ts"])
    synced = await env.set("BTC", "1", ts=format_timestamp(server_ts / 1000))
    assert synced.code == "0"
    assert env.sim.records[0].signature_ok  # well signed, just too old


async def test_other_clients_signature_vectors_are_accepted(start: Start) -> None:
    """Signatures computed by other clients (test_auth.py checks the same vectors), with
    the simulator clock set to their timestamp: independent of okx_async.sign."""
    key = SimKey("test-api-key", "test-secret", "test-passphrase")
    stamp = "2024-01-01T00:00:00.000Z"
    env = await start(
        users=[SimUser("9", [key])], clock_offset=parse_timestamp(stamp) - time.time()
    )
    vectors = [
        (b'{"ccy":"BTC","clSpotInUseAmt":"0.5"}', "2CI8XCOU2pHM23625tKRmiwaO+vzRD7bcXH7dS1m6xA="),
        (
            b'{"ccy": "BTC", "clSpotInUseAmt": "0.5"}',
            "PfSsL3dZf6qVg99ebWrM3siFfInCRNUJQsZEOX1gMH8=",
        ),
    ]
    base = {"OK-ACCESS-KEY": key.api_key, "OK-ACCESS-TIMESTAMP": stamp}
    base["OK-ACCESS-PASSPHRASE"] = key.passphrase
    for body, signature in vectors:
        headers = base | {"OK-ACCESS-SIGN": signature}
        answer = await env.call("POST", SET_PATH, key=None, body=body, headers=headers)
        assert answer.code == "0"
    get = base | {"OK-ACCESS-SIGN": "HizPQSXiSU9q4kYm42z9KJQTLQGoM38nn8Q5rbWXqKo="}
    assert (await env.call("GET", BALANCE_PATH + "?ccy=BTC", key=None, headers=get)).code == "0"
    swapped = base | {"OK-ACCESS-SIGN": vectors[0][1]}
    wrong = await env.call("POST", SET_PATH, key=None, body=vectors[1][0], headers=swapped)
    assert wrong.code == "50113"


async def test_signature_covers_the_exact_bytes(env: Env) -> None:
    spaced = b'{ "ccy" : "ETH",  "clSpotInUseAmt":"3" }'
    assert (await env.call("POST", SET_PATH, body=spaced)).code == "0"
    compact = b'{"ccy":"ETH","clSpotInUseAmt":"4"}'
    mis_signed = await env.call(
        "POST", SET_PATH, body=compact.replace(b":", b": "), signed_body=compact
    )
    assert (mis_signed.status, mis_signed.code) == (401, "50113")
    assert env.sim.values("1001")["ETH"] == "3"
    assert [r.signature_ok for r in env.sim.records] == [True, False]
    # The query string is part of what is signed.
    query = await env.call("GET", BALANCE_PATH + "?ccy=ETH", headers={})
    assert query.code == "0"
    stamp = format_timestamp(env.sim.now())
    bad = {"OK-ACCESS-SIGN": sign(A1.secret_key, stamp, "GET", BALANCE_PATH)}
    unsigned_query = await env.call("GET", BALANCE_PATH + "?ccy=ETH", ts=stamp, headers=bad)
    assert unsigned_query.code == "50113"


# --- refusals -----------------------------------------------------------------------------

AUTH_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("no key", {"omit": ("OK-ACCESS-KEY",)}, "50103"),
    ("no passphrase", {"omit": ("OK-ACCESS-PASSPHRASE",)}, "50104"),
    ("no signature", {"omit": ("OK-ACCESS-SIGN",)}, "50106"),
    ("no timestamp", {"omit": ("OK-ACCESS-TIMESTAMP",)}, "50107"),
    ("unknown key", {"key": SimKey("nobody", "secret-a1", "pass-a1")}, "50111"),
    ("wrong passphrase", {"key": SimKey("key-a1", "secret-a1", "nope")}, "50105"),
    ("bad timestamp", {"ts": "1700000000"}, "50112"),
    ("old timestamp", {"ts_shift": -31.0}, "50102"),
    ("future timestamp", {"ts_shift": 31.0}, "50102"),
    ("bad signature", {"key": SimKey("key-a1", "other-secret", "pass-a1")}, "50113"),
    ("demo header, live key", {"headers": {"x-simulated-trading": "1"}}, "50101"),
    ("demo key, no header", {"key": DEMO, "headers": {"x-simulated-trading": "0"}}, "50101"),
    ("read-only key", {"key": READ}, "50120"),
    ("key of another region", {"key": EEA}, "50119"),
    ("timestamp with 6 fractional digits", {"ts": "2024-01-01T00:00:00.000000Z"}, "50112"),
    ("timestamp with 1 fractional digit", {"ts": "2024-01-01T00:00:00.0Z"}, "50112"),
    ("timestamp without Z", {"ts": "2024-01-01T00:00:00.000"}, "50112"),
]
PERMISSION_CODES = ("50119", "50120")  # HTTP 200 unless permission_status is 401


@pytest.mark.parametrize(("case", "kwargs", "code"), AUTH_CASES, ids=[c[0] for c in AUTH_CASES])
async def test_authentication_refusals(
    env: Env, case: str, kwargs: dict[str, Any], code: str
) -> None:
    if "ts_shift" in kwargs:  # relative to the moment of sending
        kwargs = {"ts": format_timestamp(env.sim.now() + kwargs["ts_shift"])}
    answer = await env.set("BTC", "9", **kwargs)
    status = 200 if code in PERMISSION_CODES else 401
    assert (answer.status, answer.content_type) == (status, "application/json")
    assert answer.json == {"code": code, "msg": answer.json["msg"], "data": []}
    assert answer.json["msg"]
    assert "BTC" not in env.sim.values("1001")
    [record] = env.sim.records
    assert (record.code, record.status, record.applied) == (code, status, False)
    assert record.uid == (None if code in ("50103", "50111") else "1001")
    assert env.sim.max_in_window("1001", SET_PATH) == 0  # refusals are not counted


async def test_permission_status_switch_and_region(start: Start) -> None:
    env = await start(permission_status=401)
    assert ((a := await env.set("BTC", "1", key=READ)).status, a.code) == (401, "50120")
    assert ((a := await env.set("BTC", "1", key=EEA)).status, a.code) == (401, "50119")
    env.sim.region = "eea"  # now the EEA host: its key works, the global ones do not
    assert (await env.set("BTC", "1", key=EEA)).code == "0"
    assert (await env.set("BTC", "1")).code == "50119"
    assert (await env.call("GET", TIME_PATH, key=None)).code == "0"  # public: no key
    with pytest.raises(ValueError, match="region"):
        SimKey("k", "s", "p", region="mars")
    with pytest.raises(ValueError, match="region"):
        Simulator(SimulatorConfig(users=[], region="mars"))
    with pytest.raises(ValueError, match="permission_status"):
        Simulator(SimulatorConfig(users=[], permission_status=403))


async def test_demo_key_with_header_and_read_key_on_get_pass(env: Env) -> None:
    assert (await env.set("BTC", "1", key=DEMO)).code == "0"
    assert (await env.call("GET", CONFIG_PATH, key=READ)).code == "0"


BAD_BODIES: list[tuple[bytes, str]] = [
    (b"{", "50002"),
    (b'{"ccy":"BTC",}', "50002"),
    (b"", "50000"),
    (b"  ", "50000"),
    (b"[]", "51000"),
    (b'"BTC"', "51000"),
    (b'{"ccy":"BTC"}', "50014"),
    (b'{"clSpotInUseAmt":"1"}', "50014"),
    (b'{"ccy":"","clSpotInUseAmt":"1"}', "50014"),
    (b'{"ccy":"BTC","clSpotInUseAmt":""}', "50014"),
    (b'{"ccy":"BTC","clSpotInUseAmt":null}', "50014"),
    (b'{"ccy":"BTC","clSpotInUseAmt":0.5}', "51000"),
    (b'{"ccy":5,"clSpotInUseAmt":"1"}', "51000"),
    (b'{"ccy":"BTC","clSpotInUseAmt":"-1"}', "51000"),
    (b'{"ccy":"BTC","clSpotInUseAmt":"abc"}', "51000"),
    (b'{"ccy":"BTC","clSpotInUseAmt":"1e3"}', "51000"),
    (b'{"ccy":"BTC","clSpotInUseAmt":"NaN"}', "51000"),
    (b'{"ccy":"BTC","clSpotInUseAmt":" 1"}', "51000"),
]


@pytest.mark.parametrize(("body", "code"), BAD_BODIES)
async def test_parameter_errors(env: Env, body: bytes, code: str) -> None:
    answer = await env.call("POST", SET_PATH, body=body)
    assert (answer.status, answer.code) == (400, code)
    if code == "50014":  # OKX's text names the parameter
        missing = "ccy" if b'"ccy":"B' not in body else "clSpotInUseAmt"
        assert answer.json["msg"] == f"Parameter {missing} can not be empty."
    assert env.sim.values("1001") == {"ETH": "2"}
    [record] = env.sim.records
    assert record.signature_ok and not record.applied
    parsed = json.loads(body) if code not in ("50000", "50002") else None
    assert record.body == (parsed if isinstance(parsed, dict) else None)


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"]
)
async def test_a_post_without_json_content_type_is_refused(
    env: Env, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    omit = ("Content-Type",) if content_type is None else ()
    answer = await env.set("BTC", "1", headers=headers, omit=omit)
    assert (answer.status, answer.code) == (400, "50006")
    assert "Content-Type" in answer.json["msg"]
    assert "BTC" not in env.sim.values("1001")
    with_charset = {"Content-Type": "application/json; charset=utf-8"}
    assert (await env.set("BTC", "2", headers=with_charset)).code == "0"


@pytest.mark.parametrize(
    ("key", "ccy", "amount", "code"),
    [
        (SPOT, "BTC", "1", "51010"),
        (NO_OFFSET, "BTC", "1", "59651"),
        (A1, "SHIB", "1", "59652"),
        (A1, "btc", "1", "59652"),
        (A1, "USDT", "99.99", "59648"),
    ],
)
async def test_account_refusals(env: Env, key: SimKey, ccy: str, amount: str, code: str) -> None:
    answer = await env.set(ccy, amount, key=key)
    assert (answer.status, answer.code, answer.json["data"]) == (200, code, [])
    assert ccy not in env.sim.values(env.sim.records[0].uid or "")


async def test_floor_admits_its_own_value(env: Env) -> None:
    assert (await env.set("USDT", "100")).code == "0"


# --- rate limits --------------------------------------------------------------------------


async def test_eleventh_request_in_a_window_is_refused(env: Env) -> None:
    answers = await asyncio.gather(*(env.set("BTC", str(i)) for i in range(10)))
    assert all(a.code == "0" for a in answers)
    refused = await env.set("BTC", "10")
    assert (refused.status, refused.json) == (
        429,
        {"code": "50011", "msg": "Too Many Requests", "data": []},
    )
    assert env.sim.max_in_window("1001", SET_PATH) == 10
    assert env.sim.rate_limited_count("1001") == env.sim.rate_limited_count() == 1
    assert env.sim.values("1001")["BTC"] != "10"
    assert env.sim.records[-1].code == "50011" and not env.sim.records[-1].applied


async def test_rate_limit_status_switch_answers_50011_with_http_200(start: Start) -> None:
    env = await start(rate_limit_status=200)
    answers = await asyncio.gather(*(env.set("BTC", str(i)) for i in range(11)))
    refused = [a for a in answers if a.code != "0"]
    assert [(a.status, a.json) for a in refused] == [
        (200, {"code": "50011", "msg": RATE_LIMIT_200_TEXT, "data": []})
    ]
    assert env.sim.rate_limited_count("1001") == 1
    with pytest.raises(ValueError, match="rate_limit_status"):
        Simulator(SimulatorConfig(users=[], rate_limit_status=503))


async def test_keys_of_one_user_share_a_window_other_users_do_not(env: Env) -> None:
    first = await asyncio.gather(*(env.set("BTC", "1", key=(A1, A2)[i % 2]) for i in range(10)))
    assert {a.code for a in first} == {"0"}
    assert (await env.set("BTC", "2", key=A2)).code == "50011"
    assert (await env.set("BTC", "2", key=DEMO)).code == "50011"
    assert (await env.set("BTC", "2", key=B)).code == "0"
    assert (env.sim.rate_limited_count("1001"), env.sim.rate_limited_count("2002")) == (2, 0)
    # Each endpoint has its own window.
    assert (await env.call("GET", BALANCE_PATH)).code == "0"


async def test_window_expires_and_refusals_are_not_counted(start: Start) -> None:
    env = await start(limits={SET_PATH: (2, 0.4)})
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert [(await env.set("BTC", str(i))).code for i in range(2)] == ["0", "0"]
    await asyncio.sleep(max(0.0, t0 + 0.15 - loop.time()))
    assert (await env.set("BTC", "x")).code == "50011"
    refused_at = env.sim.records[-1].arrival
    await asyncio.sleep(max(0.0, env.sim.records[1].arrival + 0.42 - loop.time()))
    # Both earlier admissions are out of the window; the refusal would still be inside.
    assert [(await env.set("BTC", str(i))).code for i in range(2)] == ["0", "0"]
    assert env.sim.records[-1].arrival - refused_at < 0.4
    assert env.sim.max_in_window("1001", SET_PATH) == 2


async def test_other_endpoint_limits(env: Env) -> None:
    configs = [await env.call("GET", CONFIG_PATH) for _ in range(6)]
    assert [a.code for a in configs] == ["0"] * 5 + ["50011"]
    times = [await env.call("GET", TIME_PATH, key=None) for _ in range(11)]
    assert [a.status for a in times] == [200] * 10 + [429]
    assert env.sim.rate_limited_count("ip:127.0.0.1") == 1
    assert env.sim.max_in_window("ip:127.0.0.1", TIME_PATH) == 10
    assert env.sim.rate_limited_count() == 2


async def test_limits_can_be_raised(start: Start) -> None:
    env = await start(limits={SET_PATH: (100, 2.0)})
    answers = await asyncio.gather(*(env.set("BTC", str(i)) for i in range(30)))
    assert {a.code for a in answers} == {"0"}
    assert env.sim.max_in_window("1001", SET_PATH) == 30


async def test_burst_limit_applies_gcra(start: Start) -> None:
    env = await start(limits={SET_PATH: (10, 1.0)}, burst_limit=2)  # one per 0.1 s
    burst = await asyncio.gather(*(env.set("BTC", str(i)) for i in range(3)))
    assert sorted(a.code for a in burst) == ["0", "0", "50011"]
    await asyncio.sleep(0.12)
    assert (await env.set("BTC", "3")).code == "0"
    assert (await env.set("BTC", "4")).code == "50011"
    await asyncio.sleep(0.25)
    assert (await env.set("BTC", "5")).code == "0"
    assert env.sim.rate_limited_count("1001") == 2


async def test_without_burst_limit_ten_at_once_pass(env: Env) -> None:
    answers = await asyncio.gather(*(env.set("SOL", str(i)) for i in range(10)))
    assert {a.code for a in answers} == {"0"}


# --- latency and faults -------------------------------------------------------------------


async def test_latency_both_ways(start: Start) -> None:
    env = await start(latency=(0.05, 0.05))
    loop = asyncio.get_running_loop()
    sent = loop.time()
    assert (await env.set("BTC", "1")).code == "0"
    done = loop.time()
    tick = 0.001  # uvloop's clock counts whole milliseconds: 0.266 - 0.216 < 0.05 in floats
    assert env.sim.records[0].arrival - sent >= 0.05 - tick
    assert done - env.sim.records[0].arrival >= 0.05 - tick


@pytest.mark.parametrize(
    ("kind", "status", "content_type", "marker"),
    [
        ("http_500", 500, "text/plain", "Internal Server Error"),
        ("busy_50013", 429, "application/json", '"code":"50013"'),
        ("html_502", 502, "text/html", "502 Bad Gateway"),
        ("timeout_50004", 400, "application/json", '"code":"50004"'),
        ("unavailable_50001", 503, "application/json", '"code":"50001"'),
        ("error_50026", 500, "application/json", '"code":"50026"'),
        ("rate_limit_200", 200, "application/json", '"msg":"Rate limit reached.'),
    ],
)
async def test_fault_replies(
    env: Env, kind: str, status: int, content_type: str, marker: str
) -> None:
    env.sim.script_faults([kind], applied=False)
    answer = await env.set("BTC", "1")
    assert (answer.status, answer.content_type) == (status, content_type)
    assert marker in answer.text
    assert "BTC" not in env.sim.values("1001")
    [record] = env.sim.records
    assert (record.fault, record.status, record.applied) == (kind, status, False)
    assert (await env.set("BTC", "2")).code == "0"  # the script is used up


@pytest.mark.parametrize("applied", [True, False])
async def test_ambiguous_faults_may_apply(env: Env, applied: bool) -> None:
    env.sim.script_faults(["timeout_50004", "drop"], applied=applied)
    assert (await env.set("BTC", "1")).code == "50004"
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await env.set("ETH", "7")
    values = env.sim.values("1001")
    assert (values.get("BTC") == "1", values["ETH"] == "7") == (applied, applied)
    assert [(r.fault, r.applied, r.status) for r in env.sim.records] == [
        ("timeout_50004", applied, 400),
        ("drop", applied, 0),
    ]


async def test_drop_leaves_the_server_healthy(env: Env) -> None:
    env.sim.script_faults(["drop", "drop"])
    for _ in range(2):
        with pytest.raises(aiohttp.ClientConnectionError):
            await env.set("BTC", "1")
    assert (await env.set("BTC", "2")).code == "0"


async def test_stall_then_answer(start: Start) -> None:
    env = await start(faults=Faults(stall_seconds=0.2))
    env.sim.script_faults(["stall"], applied=False)
    loop = asyncio.get_running_loop()
    sent = loop.time()
    answer = await env.set("BTC", "1", timeout=5)
    assert answer.code == "0" and loop.time() - sent >= 0.2
    [record] = env.sim.records
    assert (record.fault, record.status, record.applied) == ("stall", 200, True)


@pytest.mark.parametrize("applied", [True, False])
async def test_stall_past_the_client_timeout(start: Start, applied: bool) -> None:
    env = await start(faults=Faults(stall_seconds=0.3))
    env.sim.script_faults(["stall"], applied=applied)
    with pytest.raises(asyncio.TimeoutError):  # not the builtin one on Python 3.10
        await env.set("BTC", "1", timeout=0.1)
    assert env.sim.records == []  # still stalled
    await asyncio.sleep(0.4)
    [record] = env.sim.records
    assert (record.fault, record.status, record.applied) == ("stall", 0, applied)
    assert ("BTC" in env.sim.values("1001")) == applied


async def test_stopping_the_server_releases_stalls(start: Start) -> None:
    env = await start(faults=Faults(stall_seconds=60))
    env.sim.script_faults(["stall"], applied=False)
    request = asyncio.create_task(env.set("BTC", "1"))
    for _ in range(500):  # until admitted, and so stalled
        if env.sim.max_in_window("1001", SET_PATH):
            break
        await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    begun = loop.time()
    await env.server.stop()
    assert loop.time() - begun < 1.0
    with pytest.raises(aiohttp.ClientConnectionError):
        await request
    assert [(r.fault, r.status, r.applied) for r in env.sim.records] == [("stall", 0, False)]


async def test_faults_count_in_the_window_and_skip_refused_requests(start: Start) -> None:
    env = await start(limits={SET_PATH: (3, 2.0)})
    env.sim.script_faults(["http_500", "busy_50013"])
    assert (await env.set("BTC", "1", key=SimKey("key-a1", "wrong", "pass-a1"))).code == "50113"
    assert (await env.set("BTC", "1")).status == 500  # the script waited for a valid request
    assert (await env.call("GET", CONFIG_PATH)).code == "0"  # scripts hit the set only
    assert (await env.set("BTC", "1")).code == "50013"
    assert (await env.set("BTC", "1")).code == "0"
    assert (await env.set("BTC", "1")).code == "50011"
    assert env.sim.max_in_window("1001", SET_PATH) == 3


async def test_random_faults_are_seeded_and_switchable(start: Start) -> None:
    kinds = ("http_500", "busy_50013", "html_502", "timeout_50004")
    env = await start(limits={SET_PATH: (100, 2.0)})
    sequences = []
    for _ in range(2):  # setting the same Faults again restarts its sequence
        env.sim.faults = Faults(rate=0.5, kinds=kinds, seed=3)
        for i in range(20):
            await env.set("BTC", str(i))
        sequences.append([r.fault for r in env.sim.records])
        env.sim.reset_records()
    assert sequences[0] == sequences[1]
    assert None in sequences[0] and set(sequences[0]) - {None} <= set(kinds)
    assert len(set(sequences[0])) > 2
    env.sim.faults = Faults()
    assert (await env.set("BTC", "21")).code == "0"
    env.sim.faults = Faults(rate=1.0, kinds=("busy_50013",))
    assert (await env.call("GET", CONFIG_PATH)).code == "50013"  # random faults hit all paths


async def test_fault_kinds_are_checked(env: Env) -> None:
    assert set(DEFAULT_FAULT_KINDS) == {
        "http_500",
        "busy_50013",
        "html_502",
        "drop",
        "stall",
        "timeout_50004",
    }
    assert Faults().kinds == DEFAULT_FAULT_KINDS  # random draws stay as they were
    new = {"unavailable_50001", "error_50026", "rate_limit_200"}
    assert new <= set(ALL_FAULT_KINDS) and set(DEFAULT_FAULT_KINDS) <= set(ALL_FAULT_KINDS)
    with pytest.raises(ValueError, match="unknown"):
        Faults(kinds=("explode",))
    with pytest.raises(ValueError):
        Faults(rate=1.5)
    with pytest.raises(ValueError, match="unknown"):
        env.sim.script_faults(["drop", "explode"])
    assert (await env.set("BTC", "1")).code == "0"  # nothing queued from a rejected script


# --- configuration, records and running ---------------------------------------------------


def test_the_simulators_repr_says_what_it_holds_and_no_secret() -> None:
    sim = Simulator(SimulatorConfig(users=[SimUser("1", [A1, A2]), SimUser("2", [B])]))
    sim.script_faults(["drop", None])
    sim.hold_next("BTC", 1.0)
    text = repr(sim)
    assert text.startswith("Simulator(region='global', users=2, records=0, FaultInjector(")
    assert "scripted=2, holds=1, stalled=0" in text
    for key in (A1, A2, B):
        assert key.secret_key not in text and key.passphrase not in text


def test_config_is_checked_and_never_mutated() -> None:
    with pytest.raises(ValueError, match="two users"):
        Simulator(SimulatorConfig(users=[SimUser("1", [A1]), SimUser("2", [A1])]))
    with pytest.raises(ValueError, match="duplicate uid"):
        Simulator(SimulatorConfig(users=[SimUser("1", [A1]), SimUser("1", [B])]))
    with pytest.raises(ValueError, match="burst_limit"):
        Simulator(SimulatorConfig(users=[], burst_limit=0))
    users = make_users()
    sim = Simulator(SimulatorConfig(users=users, limits={SET_PATH: (1, 1.0)}))
    sim.users["1001"].values["BTC"] = "1"
    assert users[0].values == {"ETH": "2"}
    assert sim.limits[CONFIG_PATH] == (5, 2.0) and sim.limits[SET_PATH] == (1, 1.0)
    assert "secret" not in repr(A1) and "pass-a1" not in repr(A1)


async def test_runtime_account_changes_take_effect(env: Env) -> None:
    env.sim.users["1001"].risk_offset_mode = False
    assert (await env.set("BTC", "1")).code == "59651"
    env.sim.users["1001"].risk_offset_mode = True
    assert (await env.set("BTC", "1")).code == "0"


async def test_reset_records_keeps_values_and_windows(start: Start) -> None:
    env = await start(limits={SET_PATH: (1, 2.0)})
    await env.set("BTC", "1")
    await env.set("BTC", "2")
    assert (len(env.sim.records), env.sim.rate_limited_count()) == (2, 1)
    env.sim.reset_records()
    assert env.sim.records == [] and env.sim.rate_limited_count() == 0
    assert env.sim.max_in_window("1001", SET_PATH) == 0
    assert env.sim.values("1001")["BTC"] == "1"
    assert (await env.set("BTC", "3")).code == "50011"  # the window still holds the first


async def test_demo_config_works_end_to_end(start: Start) -> None:
    config = demo_config()
    assert [len(u.keys) for u in config.users] == [2, 2, 2]
    assert config.users[0].main_uid is None
    assert {u.main_uid for u in config.users[1:]} == {config.users[0].uid}
    env = await start(users=config.users)
    key = SimKey("demo-key-2-1", "demo-secret-2-1", "demo-pass")
    data = (await env.call("GET", CONFIG_PATH, key=key)).json["data"][0]
    assert data["uid"] == config.users[1].uid and data["mainUid"] == config.users[0].uid
    assert (await env.set("BTC", "0.75", key=key)).code == "0"
    assert demo_config(users=5, keys_per_user=1).users[4].keys[0].api_key == "demo-key-5-1"
    assert demo_config() == demo_config()


async def test_create_app_and_serve() -> None:
    app = create_app(SimulatorConfig(users=make_users()))
    assert isinstance(app[SIMULATOR_KEY], Simulator)
    ready: asyncio.Queue[SimulatorServer] = asyncio.Queue()
    task = asyncio.create_task(serve(demo_config(), port=0, on_ready=ready.put_nowait))
    server = await asyncio.wait_for(ready.get(), 5)
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.base_url + TIME_PATH) as response,
    ):
        assert (await response.json())["code"] == "0"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(RuntimeError):
        _ = server.base_url  # stopped


async def test_server_start_twice_and_base_url(env: Env) -> None:
    assert env.url.startswith("http://127.0.0.1:") and env.server.port > 0
    with pytest.raises(RuntimeError, match="already"):
        await env.server.start()
    await env.server.stop()
    await env.server.stop()  # idempotent
