"""Three OS processes, two OKXClients each (six API keys of one user), one Redis: the
simulator, which counts per User ID, must never see more than the limit in a window,
and the shared budget must be used fully (no process holds slots it cannot use).

Skips without redis-server unless OKX_ASYNC_REQUIRE_REDIS=1 (see redis_fixture.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import redis_fixture
from redis_fixture import RedisServer

from okx_async.simulator import (
    SET_PATH,
    SimKey,
    Simulator,
    SimulatorConfig,
    SimulatorServer,
    SimUser,
)

redis_server = redis_fixture.redis_server  # a fixture: a fresh redis-server per test

WORKER = Path(__file__).with_name("redis_mp_worker.py")
ROOT = Path(__file__).resolve().parent.parent
PROCESSES = 3
CALLS = 60  # 20 per process, 10 per client
LIMIT, WINDOW = 10, 2.0  # OKX's set-riskOffset-amt budget per User ID
UID = "2001"
TIMEOUT = 40.0  # for the whole run; a hung worker fails the test instead of blocking it


KEYS = [SimKey(f"mp-key-{i}", f"mp-secret-{i}-xyz", f"mp-pass-{i}-xyz") for i in range(6)]


def _simulator(ccys: list[str]) -> Simulator:
    """The user's simulator: six keys, margin in `ccys` (distinct: no per-currency
    ordering waits), 0-20 ms latency."""
    user = SimUser(uid=UID, keys=KEYS, margin_ccys=frozenset(ccys))
    return Simulator(SimulatorConfig(users=[user], latency=(0.0, 0.02)))


@asynccontextmanager
async def _workers(
    ccys: list[str], redis_url: str, work: list[dict[str, Any]]
) -> AsyncIterator[tuple[Simulator, list[asyncio.subprocess.Process]]]:
    """The simulator (serving `ccys`) and one worker per entry of `work`, worker p with
    two keys and `work[p]` in its spec; on exit every worker is stopped (killed if still
    running)."""
    simulator = _simulator(ccys)
    procs: list[asyncio.subprocess.Process] = []
    async with SimulatorServer(simulator) as server:
        try:
            for p, extra in enumerate(work):
                keys = KEYS[2 * p : 2 * p + 2]
                spec = {
                    "base_url": server.base_url,
                    "redis_url": redis_url,
                    "uid": UID,
                    "keys": [[k.api_key, k.secret_key, k.passphrase] for k in keys],
                    **extra,
                }
                procs.append(await _spawn(spec))
            yield simulator, procs
        finally:
            await _stop(procs)


async def test_three_processes_share_one_users_budget(redis_server: RedisServer) -> None:
    ccys = [f"C{i:03d}" for i in range(CALLS)]
    work = [{"ccys": ccys[p::PROCESSES]} for p in range(PROCESSES)]
    async with _workers(ccys, redis_server.url, work) as (simulator, procs):
        outcomes = await asyncio.wait_for(_run(procs), TIMEOUT)

    for ok, errors in outcomes:
        assert errors == [] and ok == CALLS // PROCESSES
    sent = [r for r in simulator.records if r.path == SET_PATH]
    assert len(sent) == CALLS and all(r.code == "0" for r in sent)
    assert simulator.rate_limited_count() == 0
    assert simulator.max_in_window(UID, SET_PATH) <= LIMIT
    arrivals = sorted(r.arrival for r in sent)
    span = arrivals[-1] - arrivals[0]
    ideal = (math.ceil(CALLS / LIMIT) - 1) * WINDOW  # when the last batch may arrive
    print(
        f"\n{PROCESSES} processes, {CALLS} calls: span {span:.3f}s, ideal {ideal:.1f}s, "
        f"ratio {span / ideal:.3f}"
    )
    assert ideal <= span <= 1.1 * ideal


async def test_redis_killed_and_restarted_empty_between_two_bursts(
    redis_server: RedisServer,
) -> None:
    """Three processes spend the user's ten; Redis is killed and restarted empty; the
    three send ten more at once. The empty Redis must not grant the spent slots again:
    every process finds the loss (its epoch is gone), the key is held for a window."""
    ccys = [f"C{i:03d}" for i in range(2 * LIMIT)]
    halves = (ccys[:LIMIT], ccys[LIMIT:])
    work = [{"bursts": [half[p::PROCESSES] for half in halves]} for p in range(PROCESSES)]
    async with _workers(ccys, redis_server.url, work) as (simulator, procs):
        await asyncio.wait_for(_ready(procs), TIMEOUT)
        first = await asyncio.wait_for(_burst(procs), TIMEOUT)
        redis_server.kill()
        redis_server.start()
        second = await asyncio.wait_for(_burst(procs, close=True), TIMEOUT)

    assert [o["errors"] for o in first + second] == [[]] * (2 * PROCESSES)
    sent = [r for r in simulator.records if r.path == SET_PATH]
    assert len(sent) == 2 * LIMIT and all(r.code == "0" for r in sent)
    assert simulator.rate_limited_count() == 0
    arrivals = sorted(r.arrival for r in sent)
    most = max(sum(1 for u in arrivals if t - WINDOW < u <= t) for t in arrivals)
    assert most <= LIMIT


async def _spawn(spec: dict[str, Any]) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        json.dumps(spec),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def _ready(procs: list[asyncio.subprocess.Process]) -> None:
    for proc in procs:
        assert proc.stdout is not None
        line = await proc.stdout.readline()
        if line != b"ready\n":
            _, err = await proc.communicate()
            raise AssertionError(f"worker failed to start: {line!r}\n{err.decode()[-3000:]}")


async def _burst(
    procs: list[asyncio.subprocess.Process], *, close: bool = False
) -> list[dict[str, Any]]:
    """One burst: a common start time for every worker, then each one's outcome line."""
    start = time.time() + 0.1
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"{start!r}\n".encode())
        await proc.stdin.drain()
        if close:
            proc.stdin.close()
    outcomes = []
    for proc in procs:
        assert proc.stdout is not None and proc.stderr is not None
        line = await proc.stdout.readline()
        if not line:
            err = await proc.stderr.read()
            raise AssertionError(f"worker died:\n{err.decode()[-3000:]}")
        outcomes.append(json.loads(line))
    return outcomes


async def _run(procs: list[asyncio.subprocess.Process]) -> list[tuple[int, list[str]]]:
    """Barrier (every worker warmed up), common start, then each worker's outcome."""
    await _ready(procs)
    start = time.time() + 0.3  # every worker sleeps until the same wall-clock moment
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"{start!r}\n".encode())
        await proc.stdin.drain()
        proc.stdin.close()
    outcomes = []
    for proc in procs:
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise AssertionError(f"worker exited with {proc.returncode}:\n{err.decode()[-3000:]}")
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        outcomes.append((result["ok"], result["errors"]))
    return outcomes


async def _stop(procs: list[asyncio.subprocess.Process]) -> None:
    """Kill what still runs (a failure or timeout) and reap every process."""
    for proc in procs:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    for proc in procs:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.communicate(), 5)
        if proc.returncode is None:
            await proc.wait()
