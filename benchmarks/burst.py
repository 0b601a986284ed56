"""Burst: N concurrent set calls against the strict simulator, okx_async vs naive limiters.

What it measures (each contender gets its own fresh simulator on 127.0.0.1, port 0,
OKX's limit 10 requests / 2 s per User ID, a strict rolling window):

* okx_async, one client: N concurrent `set_risk_offset_amount` calls on N distinct
  currencies (so per-currency ordering does not serialize them). After a warm-up
  `get_account_config()` (clock sync, User ID, one connection), which uses the config
  budget, not the set budget.
* naive: `aiolimiter.AsyncLimiter(10, 2)` around a bare aiohttp POST signed with
  `okx_async.sign`; no retries. A token bucket admits 19 requests in one 2 s window.
* ccxt okx (`enableRateLimit`), one instance, calling `privatePostAccountSetRiskOffsetAmt`.
* two keys of one user, N*0.6 calls split over two instances: okx_async (two clients)
  and ccxt (two instances, each with its own bucket).

Per contender: completion span (first call started -> last call finished) against the
ideal (10 at t=0, then 10 every 2 s: the last of N starts at floor((N-1)/10)*2 s),
50011 answers (the simulator's count), the time to send the first 10 (from the
simulator's arrival records), retries, and the most requests that reached the simulator
inside any 2 s window (admitted or refused; OKX allows 10).

Targets (okx_async, one client): zero 50011; span within 2% of the ideal (the target is
defined at latency 0, on loopback); the first 10 sent within 50 ms.

Run:   python benchmarks/burst.py [--quick] [--latency MS] [--calls N]
`--quick` uses 30 calls (ideal 4 s) instead of 100 (ideal 18 s). `--latency MS` adds a
random delay, uniform in [0, MS] ms, to each direction of every request at the simulator.
A full run takes about 90 s.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from _common import max_in_any_window, verdict

from okx_async import OKXClient, format_timestamp, sign
from okx_async.simulator import (
    SET_PATH,
    SimKey,
    Simulator,
    SimulatorConfig,
    SimulatorServer,
    SimUser,
)

try:
    from aiolimiter import AsyncLimiter
except ImportError:  # pragma: no cover - depends on the environment
    AsyncLimiter = None  # type: ignore[assignment,misc]

try:
    import ccxt.async_support as ccxt_async  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - depends on the environment
    ccxt_async = None

LIMIT, WINDOW = 10, 2.0  # OKX: 10 requests per 2 s per User ID
KEY_1 = SimKey("bench-key-1", "bench-secret-1", "bench-pass")
KEY_2 = SimKey("bench-key-2", "bench-secret-2", "bench-pass")
CCYS = frozenset(f"C{i:03d}" for i in range(1000))
UID = "900001"
TARGET_SPAN_RATIO = 1.02
TARGET_FIRST10 = 0.050


@dataclass
class Result:
    name: str
    calls: int
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0  # 50011 answers counted by the simulator
    retries: int | None = None  # None: the contender does not retry
    span: float = 0.0
    first10: float | None = None
    max_sent: int = 0  # most requests arriving in any 2 s window, admitted or refused
    skipped: str | None = None

    @property
    def ideal(self) -> float:
        return ideal_span(self.calls)


def ideal_span(calls: int) -> float:
    return ((calls - 1) // LIMIT) * WINDOW


@asynccontextmanager
async def simulator(latency_ms: float) -> AsyncIterator[tuple[Simulator, str]]:
    """A fresh strict simulator with one user (two keys), so windows never carry over."""
    user = SimUser(UID, [KEY_1, KEY_2], margin_ccys=CCYS)
    config = SimulatorConfig(users=[user], latency=(0.0, latency_ms / 1000))
    sim = Simulator(config)
    async with SimulatorServer(sim) as server:
        yield sim, server.base_url


async def timed_calls(
    calls: int, call: Callable[[int], Awaitable[object]]
) -> tuple[float, int, Counter[str]]:
    """Run call(0) .. call(calls - 1) at once; (span from first start to last finish,
    calls that succeeded, errors by type)."""
    loop = asyncio.get_running_loop()
    starts: list[float] = []
    ends: list[float] = []

    async def one(i: int) -> None:
        starts.append(loop.time())
        try:
            await call(i)
        finally:
            ends.append(loop.time())

    outcomes = await asyncio.gather(*(one(i) for i in range(calls)), return_exceptions=True)
    errors = Counter(error_name(o) for o in outcomes if isinstance(o, BaseException))
    return max(ends) - min(starts), calls - sum(errors.values()), errors


def error_name(error: BaseException) -> str:
    code = getattr(error, "code", None)
    return f"{type(error).__name__} {code}" if code else type(error).__name__


def fill_from_simulator(result: Result, sim: Simulator) -> Result:
    arrivals = sorted(r.arrival for r in sim.records if r.path == SET_PATH)
    if len(arrivals) >= LIMIT:
        result.first10 = arrivals[LIMIT - 1] - arrivals[0]
    result.rate_limited = sim.rate_limited_count(UID)
    result.max_sent = max_in_any_window(arrivals, WINDOW)
    return result


def amount(i: int) -> str:
    return f"{i}.5"


# -- contenders ----------------------------------------------------------------------


async def run_okx_async(name: str, calls: int, keys: list[SimKey], latency_ms: float) -> Result:
    async with simulator(latency_ms) as (sim, base_url):
        clients = [
            OKXClient(
                api_key=k.api_key,
                secret_key=k.secret_key,
                passphrase=k.passphrase,
                base_url=base_url,
            )
            for k in keys
        ]
        for client in clients:  # clock sync + User ID lookup, outside the set budget
            await client.get_account_config()
        sim.reset_records()

        def call(i: int) -> Awaitable[object]:
            return clients[i % len(clients)].set_risk_offset_amount(f"C{i:03d}", amount(i))

        span, ok, errors = await timed_calls(calls, call)
        result = Result(name, calls, ok, errors, span=span)
        result.retries = sum(c.stats().retried for c in clients)
        for client in clients:
            await client.close()
        return fill_from_simulator(result, sim)


async def run_aiolimiter(calls: int, latency_ms: float) -> Result:
    name = "naive: aiolimiter(10, 2) + aiohttp"
    if AsyncLimiter is None:
        return Result(name, calls, skipped="aiolimiter is not installed")
    async with simulator(latency_ms) as (sim, base_url), aiohttp.ClientSession() as session:
        limiter = AsyncLimiter(LIMIT, WINDOW)

        async def post(i: int) -> None:
            body = orjson.dumps({"ccy": f"C{i:03d}", "clSpotInUseAmt": amount(i)})
            async with limiter:
                ts = format_timestamp(time.time())
                headers = {
                    "OK-ACCESS-KEY": KEY_1.api_key,
                    "OK-ACCESS-SIGN": sign(KEY_1.secret_key, ts, "POST", SET_PATH, body),
                    "OK-ACCESS-TIMESTAMP": ts,
                    "OK-ACCESS-PASSPHRASE": KEY_1.passphrase,
                    "Content-Type": "application/json",
                }
                async with session.post(base_url + SET_PATH, data=body, headers=headers) as resp:
                    payload = orjson.loads(await resp.read())
            if payload["code"] != "0":
                raise NaiveAPIError(payload["code"])

        span, ok, errors = await timed_calls(calls, post)
        return fill_from_simulator(Result(name, calls, ok, errors, span=span), sim)


class NaiveAPIError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def make_ccxt(base_url: str, key: SimKey) -> Any:
    exchange = ccxt_async.okx(
        {
            "apiKey": key.api_key,
            "secret": key.secret_key,
            "password": key.passphrase,
            "enableRateLimit": True,
        }
    )
    # okx.sign() builds implode_hostname(urls['api']['rest']) + '/api/v5/' + path.
    exchange.urls["api"] = {"rest": base_url}
    return exchange


async def run_ccxt(name: str, calls: int, keys: list[SimKey], latency_ms: float) -> Result:
    if ccxt_async is None:
        return Result(name, calls, skipped="ccxt is not installed")
    async with simulator(latency_ms) as (sim, base_url):
        exchanges = [make_ccxt(base_url, k) for k in keys]
        try:

            def call(i: int) -> Awaitable[object]:
                exchange = exchanges[i % len(exchanges)]
                params = {"ccy": f"C{i:03d}", "clSpotInUseAmt": amount(i)}
                return exchange.privatePostAccountSetRiskOffsetAmt(params)  # type: ignore[no-any-return]

            span, ok, errors = await timed_calls(calls, call)
        finally:
            for exchange in exchanges:
                await exchange.close()
        return fill_from_simulator(Result(name, calls, ok, errors, span=span), sim)


# -- report --------------------------------------------------------------------------


def print_table(results: list[Result]) -> None:
    header = (
        f"{'contender':<40} {'calls':>5} {'ok':>5} {'50011':>6} {'retries':>7} "
        f"{'span s':>7} {'ideal s':>7} {'ratio':>6} {'first10 ms':>10} {'max/2s':>6}  errors"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        if r.skipped:
            print(f"{r.name:<40} SKIPPED: {r.skipped}")
            continue
        retries = "-" if r.retries is None else str(r.retries)
        first10 = "-" if r.first10 is None else f"{r.first10 * 1000:.1f}"
        ratio = f"{r.span / r.ideal:.3f}" if r.ideal else "-"
        errors = ", ".join(f"{k} x{v}" for k, v in sorted(r.errors.items())) or "-"
        print(
            f"{r.name:<40} {r.calls:>5} {r.ok:>5} {r.rate_limited:>6} {retries:>7} "
            f"{r.span:>7.3f} {r.ideal:>7.1f} {ratio:>6} {first10:>10} {r.max_sent:>6}  {errors}"
        )


def print_summary(main: Result, pair: Result, latency_ms: float) -> None:
    ratio = main.span / main.ideal
    note = "" if latency_ms == 0 else f" (target defined at latency 0; this run: {latency_ms:g} ms)"
    first10 = main.first10 if main.first10 is not None else float("inf")
    print()
    print(
        f"{verdict(main.rate_limited == 0)} okx_async 50011 answers: {main.rate_limited} (target 0)"
    )
    print(
        f"{verdict(ratio <= TARGET_SPAN_RATIO)} okx_async span {main.span:.3f} s vs ideal "
        f"{main.ideal:.1f} s: ratio {ratio:.4f} (target <= {TARGET_SPAN_RATIO}){note}"
    )
    print(
        f"{verdict(first10 <= TARGET_FIRST10)} okx_async first 10 sent within "
        f"{first10 * 1000:.1f} ms (target <= {TARGET_FIRST10 * 1000:.0f} ms)"
    )
    print(
        f"{verdict(pair.rate_limited == 0)} okx_async, two keys of one user: "
        f"{pair.rate_limited} x 50011 (target 0)"
    )


async def main_async(calls: int, latency_ms: float) -> None:
    pair_calls = 2 * max(calls * 3 // 10, 15)  # two keys: 30 each for 100 calls, 15 for 30
    print(
        f"burst: {calls} concurrent calls, simulator limit {LIMIT}/{WINDOW:g} s per user, "
        f"latency U[0, {latency_ms:g}] ms per direction, ideal span {ideal_span(calls):.1f} s"
    )
    results = [
        await run_okx_async("okx_async (1 client)", calls, [KEY_1], latency_ms),
        await run_aiolimiter(calls, latency_ms),
        await run_ccxt("ccxt okx (1 instance)", calls, [KEY_1], latency_ms),
        await run_okx_async(
            f"okx_async, 2 keys of 1 user ({pair_calls // 2} each)",
            pair_calls,
            [KEY_1, KEY_2],
            latency_ms,
        ),
        await run_ccxt(
            f"ccxt, 2 instances, 1 user ({pair_calls // 2} each)",
            pair_calls,
            [KEY_1, KEY_2],
            latency_ms,
        ),
    ]
    print()
    print_table(results)
    print(
        "\nratio = span / ideal; first10 = arrival of the 10th request minus the 1st at the "
        "simulator;\nmax/2s = most requests reaching the simulator in any 2 s window, admitted "
        "or refused (OKX allows 10)."
    )
    print_summary(results[0], results[3], latency_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 calls instead of 100")
    parser.add_argument("--calls", type=int, default=None, help="calls per contender")
    parser.add_argument("--latency", type=float, default=0.0, metavar="MS")
    args = parser.parse_args()
    calls = args.calls or (30 if args.quick else 100)
    if calls < LIMIT + 1:
        parser.error(f"--calls must be more than {LIMIT}")
    asyncio.run(main_async(calls, args.latency))


if __name__ == "__main__":
    main()
