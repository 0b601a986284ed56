"""Per-currency ordering across OS processes sharing a limiter store (a sqlite file, or
a real redis-server: skipped without one unless OKX_ASYNC_REQUIRE_REDIS=1).

Each worker (tests/lane_mp_worker.py) is one process with one OKXClient of the same
user. The test tells them, in turn, which value to set; it waits for each worker to
confirm the value took its place in the store's order before the next, so the order
of the commands is the store's order. The simulator holds some first requests
(`hold_next`), so without shared ordering an older value lands after a newer one.

The `memory://` variants show the same runs fail without a shared store (strict xfail).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sqlite3
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import redis_fixture

from okx_async.simulator import (
    SET_PATH,
    SimKey,
    Simulator,
    SimulatorConfig,
    SimulatorServer,
    SimUser,
)

WORKER = Path(__file__).with_name("lane_mp_worker.py")
ROOT = Path(__file__).resolve().parent.parent
UID = "3001"
CCYS = ("BTC", "ETH", "USDT")
KEYS = [SimKey(f"lane-key-{i}", f"lane-secret-{i}-xyz", f"lane-pass-{i}-xyz") for i in range(3)]
HORIZON = 2.0  # landing_horizon of every worker (seconds)


class Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if not raw:
            assert self.proc.stderr is not None
            err = await self.proc.stderr.read()
            raise AssertionError(f"worker ended: {err.decode()[-2000:]}")
        return raw.decode().strip()

    async def tell(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()

    async def set(self, ccy: str, value: str) -> None:
        await self.tell(f"set {ccy} {value}")
        assert await self.line() == "submitted"

    async def results(self) -> list[dict[str, Any]]:
        await self.tell("results")
        found: list[dict[str, Any]] = json.loads(await self.line())
        return found


async def start_workers(
    n: int, base_url: str, limiter_url: str, request_timeout: float = 10.0
) -> list[Worker]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    workers = []
    for i in range(n):
        spec = {
            "base_url": base_url,
            "uid": UID,
            "key": [KEYS[i].api_key, KEYS[i].secret_key, KEYS[i].passphrase],
            "limiter_url": limiter_url,
            "landing_horizon": HORIZON,
            "request_timeout": request_timeout,
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            json.dumps(spec),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        workers.append(Worker(proc))
    for worker in workers:
        assert await worker.line() == "ready"
    return workers


async def stop_workers(workers: list[Worker]) -> None:
    for worker in workers:
        if worker.proc.returncode is None:
            with_stdin = worker.proc.stdin is not None and not worker.proc.stdin.is_closing()
            if with_stdin:
                await worker.tell("close")
            try:
                await asyncio.wait_for(worker.proc.wait(), 10)
            except asyncio.TimeoutError:
                worker.proc.kill()
                await worker.proc.wait()


def simulator() -> Simulator:
    user = SimUser(uid=UID, keys=KEYS, margin_ccys=frozenset(CCYS))
    return Simulator(SimulatorConfig(users=[user], latency=(0.0, 0.01)))


def overlaps(sim: Simulator) -> list[tuple[str, float, float]]:
    """Set requests of one currency that were at the simulator at the same time."""
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for record in sim.records:
        if record.path == SET_PATH and record.uid == UID and record.body is not None:
            spans[str(record.body["ccy"])].append((record.arrival, record.replied))
    found = []
    for ccy, times in spans.items():
        times.sort()
        for (_, end), (start, _) in itertools.pairwise(times):
            if start < end:
                found.append((ccy, start, end))
    return found


async def settled(sim: Simulator, expected: dict[str, str], holds: int) -> None:
    """Until every held request has landed and the values are `expected` (or 15 s):
    a late re-assert is part of the outcome."""
    for _ in range(300):
        held = sum(1 for r in sim.records if r.fault == "hold")
        if held >= holds and all(sim.values(UID).get(c) == v for c, v in expected.items()):
            return
        await asyncio.sleep(0.05)


def limiter_params() -> list[Any]:
    unshared = pytest.mark.xfail(
        strict=True, reason="memory:// keeps ordering per process: the older value lands last"
    )
    return ["sqlite", "redis", pytest.param("memory", marks=unshared)]


def url_for(store: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if store == "redis":
        server: redis_fixture.RedisServer = request.getfixturevalue("redis_server")
        return server.url
    return f"sqlite:///{tmp_path / 'limits.db'}" if store == "sqlite" else "memory://"


redis_server = redis_fixture.redis_server  # a fixture: a fresh redis-server per test


@pytest.mark.parametrize("store", limiter_params())
async def test_two_processes_slow_first_request_last_value_sticks(
    store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    sim = simulator()
    sim.hold_next("BTC", 2.5)  # longer than the claim TTL: renewals keep the claim
    sim.hold_next("ETH", 1.0)
    async with SimulatorServer(sim) as server:
        workers = await start_workers(2, server.base_url, url_for(store, request, tmp_path))
        try:
            a, b = workers
            await a.set("BTC", "1")  # held 2.5 s at the simulator
            await asyncio.sleep(0.3)
            await b.set("BTC", "2")
            await b.set("ETH", "10")  # held 1 s
            await a.set("ETH", "11")
            await b.set("BTC", "3")
            results = [await w.results() for w in workers]
            await settled(sim, {"BTC": "3", "ETH": "11"}, holds=2)
        finally:
            await stop_workers(workers)
    assert not [r for rs in results for r in rs if "error" in r], results
    assert sim.values(UID) == {"BTC": "3", "ETH": "11"}
    assert overlaps(sim) == []
    if store == "sqlite":  # the store's order is the order the test gave
        with sqlite3.connect(tmp_path / "limits.db") as conn:
            rows = dict(conn.execute("SELECT key, value FROM lane").fetchall())
        assert {k.rsplit(":", 1)[1]: v for k, v in rows.items()} == {"BTC": "3", "ETH": "11"}


@pytest.mark.parametrize("store", limiter_params())
async def test_three_processes_interleaved_values(
    store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    sim = simulator()
    sim.hold_next("BTC", 1.2)
    sim.hold_next("ETH", 1.2)
    async with SimulatorServer(sim) as server:
        workers = await start_workers(3, server.base_url, url_for(store, request, tmp_path))
        try:
            a, b, c = workers
            # The last value of each currency comes from a process that is not the
            # held one's: per-process ordering alone would let the held value land last.
            await a.set("BTC", "1")  # held 1.2 s
            await b.set("ETH", "5")  # held 1.2 s
            await asyncio.sleep(0.2)
            await c.set("BTC", "2")
            await a.set("ETH", "6")
            await a.set("BTC", "3")
            await c.set("ETH", "7")
            await b.set("BTC", "4")
            await a.set("ETH", "8")
            results = [await w.results() for w in workers]
            await settled(sim, {"BTC": "4", "ETH": "8"}, holds=2)
        finally:
            await stop_workers(workers)
    flat = [r for rs in results for r in rs]
    assert not [r for r in flat if "error" in r], results
    assert sim.values(UID) == {"BTC": "4", "ETH": "8"}
    assert overlaps(sim) == []
    # A value superseded by another process's newer one was never sent, and says so.
    sent = {
        (r.body["ccy"], r.body["clSpotInUseAmt"])
        for r in sim.records
        if r.path == SET_PATH and r.body is not None
    }
    for r in flat:
        assert r["superseded"] == ((r["ccy"], r["requested"]) not in sent), r


@pytest.mark.parametrize("store", limiter_params())
async def test_a_crashed_holders_claim_lapses_and_its_late_request_is_outlived(
    store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The holder of BTC's claim is killed while its request is held at the exchange;
    the request lands later anyway. The next process waits for the claim to lapse,
    sends its value, and re-asserts it after the crashed request's landing horizon."""
    sim = simulator()
    sim.hold_next("BTC", 3.0)
    async with SimulatorServer(sim) as server:
        workers = await start_workers(2, server.base_url, url_for(store, request, tmp_path))
        try:
            a, b = workers
            await a.set("BTC", "1")
            await asyncio.sleep(0.5)  # its request is at the simulator now, held
            a.proc.send_signal(signal.SIGKILL)
            await a.proc.wait()
            await b.set("BTC", "2")
            [result] = await b.results()
            await settled(sim, {"BTC": "2"}, holds=1)
            sets = [r for r in sim.records if r.path == SET_PATH]
        finally:
            await stop_workers(workers)
    assert "error" not in result, result
    assert result["amount"] == "2" and not result["superseded"]
    assert sim.values(UID) == {"BTC": "2"}
    # b's first request went out only once a's claim had lapsed: a was killed before its
    # first renewal, so the claim lapsed LANE_CLAIM_TTL (2 s) after it was granted.
    # (The crashed request is still at the exchange then: a lapse cannot prevent that
    # overlap; the re-assert after its landing horizon is what outlives it.)
    held = next(r for r in sets if r.fault == "hold")
    assert min(r.arrival for r in sets if r.fault != "hold") > held.arrival + 1.5


@pytest.mark.parametrize("store", limiter_params())
async def test_a_timed_out_request_of_another_process_is_outlived(
    store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The issue's first scenario across two processes: a's request times out (1 s) but
    the exchange applies it at 2.5 s; b's newer value, submitted meanwhile, is applied
    first. a drops its retry (a newer value exists elsewhere) and leaves the uncertain
    request in the store; b re-asserts its value after that request's landing horizon."""
    sim = simulator()
    sim.hold_next("BTC", 2.5)
    async with SimulatorServer(sim) as server:
        url = url_for(store, request, tmp_path)
        workers = await start_workers(2, server.base_url, url, request_timeout=1.0)
        try:
            a, b = workers
            await a.set("BTC", "1")
            await asyncio.sleep(0.3)
            await b.set("BTC", "2")
            results = [await w.results() for w in workers]
            await settled(sim, {"BTC": "2"}, holds=1)
            final = sim.values(UID)
            await asyncio.sleep(0.2)  # nothing lands after the settled state
        finally:
            await stop_workers(workers)
    [[first], [second]] = results
    assert "error" not in first and "error" not in second, results
    assert second["amount"] == "2" and not second["superseded"]
    assert first["amount"] == "2" and not first["superseded"]  # sent; answered by "2"
    assert final == sim.values(UID) == {"BTC": "2"}
