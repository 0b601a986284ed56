"""Soak: 10,000 set calls over 200 user IDs. Memory stays flat; client CPU per call.

The simulator runs in a separate process (multiprocessing, spawn), so this process's CPU
time (`time.process_time`) is the client's alone. Its limits are raised to 1,000,000 per
2 s on every path: the simulator never refuses, and only the client's own limiter (OKX's
real table, 10 per 2 s per User ID) paces anything.

One client (and, for the baseline, one aiohttp session) per user, 200 users, one worker
per user doing its calls one after another (200 concurrent requests at most), in two
halves of 25 calls per user. Phases, all in this run, against the same simulator:

1. bare: aiohttp + HMAC, no limiter: sign with `okx_async.sign`, orjson body, one session
   per user (connection reuse), read and parse the answer. The baseline. It runs twice,
   before and after the okx_async phases; ratios use the mean of the two, and their
   spread shows how noisy the machine was (other work on a 2-core box moves CPU/call).
2. okx_async, paced: each half, 25 calls per user back to back. The limiter binds: each
   user sends 10, waits ~2 s for slots, 10 more, waits, 5 (4 s of pacing per half, all
   users in parallel), so 15 of every 25 calls take the limiter's wait path
   (event-driven timers, no polling). This is real use.
3. okx_async, unpaced: the same 50 calls per user, but in rounds of at most 10 per user
   with a 2.1 s pause between rounds, so every acquire takes the limiter's fast path.
   This isolates the per-call cost of everything else (validation, lanes, signing,
   transport, parsing); the pauses cost no CPU.

Each client is warmed up first (`get_account_config()`: clock sync, one connection),
outside the measurements; the baseline sends one signed request per session for the same
reason. Note: each client syncs its clock with its own `public/time` call, and that
endpoint is limited to 10 per 2 s per IP, shared by all clients of the process, so
warming up 200 clients takes about 40 s; the output shows how long it took.

Measured: client CPU us per call (both halves), wall time, errors; memory before, after
the first half and after the second (current RSS from /proc, and the count of live
objects seen by the garbage collector). Each memory snapshot waits a window first, so
the limiter keys' short-lived state (cooling slots and their timers, dropped when a key
goes idle) is gone and only what the calls left behind is counted.

Targets: okx_async CPU per call <= 1.25x the bare loop (paced, and unpaced);
memory bounded: the second half (5,000 more calls) grows RSS by <= 2 MiB and the live
object count by <= 0.5 per call. Anything kept per call shows up as >= 1 object per call;
connection-level state (aiohttp re-opening a keep-alive connection) may add a few hundred
objects once, which is not growth with the call count.

Run:   python benchmarks/soak.py [--quick] [--profile]
`--quick`: 50 users x 30 calls. `--profile`: afterwards, run the paced phase once more
under cProfile and print the top functions. A full run takes about 3 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import multiprocessing
import os
import pstats
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
import orjson

from okx_async import OKXClient, format_timestamp, sign
from okx_async.simulator import (
    CONFIG_PATH,
    DEFAULT_LIMITS,
    SET_PATH,
    SimKey,
    Simulator,
    SimulatorConfig,
    SimulatorServer,
    SimUser,
)

WINDOW = 2.0  # OKX's set-riskOffset-amt window; 10 requests per user inside it
ROUND = 10
STARTUP_TIMEOUT = 30.0  # seconds to wait for any answer of the simulator process
CCYS = ("BTC", "ETH", "SOL", "XRP", "DOGE")
TARGET_CPU_RATIO = 1.25
TARGET_RSS_GROWTH = 2 * 1024 * 1024
TARGET_OBJECTS_PER_CALL = 0.5


def user_key(u: int) -> tuple[str, SimKey]:
    return str(500_000 + u), SimKey(f"soak-key-{u}", f"soak-secret-{u}", "soak-pass")


def amount(i: int) -> str:
    return f"{i}.25"


# -- the simulator process -----------------------------------------------------------


def simulator_process(conn: Connection, users: int) -> None:
    """Child process: serve a simulator until told to stop; answer "stats" requests."""
    sim_users = [SimUser(uid, [key]) for uid, key in map(user_key, range(users))]
    limits = {path: (1_000_000, WINDOW) for path in DEFAULT_LIMITS}
    asyncio.run(serve_simulator(conn, SimulatorConfig(users=sim_users, limits=limits)))


async def serve_simulator(conn: Connection, config: SimulatorConfig) -> None:
    sim = Simulator(config)
    loop = asyncio.get_running_loop()
    async with SimulatorServer(sim) as server:
        conn.send(server.base_url)
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            conn.send(
                {
                    "requests": len(sim.records),
                    "rate_limited": sim.rate_limited_count(),
                    "cpu": time.process_time(),
                }
            )
            if command == "stop":
                return


class SimulatorHandle:
    """The simulator process, seen from the client process."""

    def __init__(self, users: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=simulator_process, args=(child, users), daemon=True)
        self._process.start()
        self.base_url: str = self._receive()

    def _receive(self) -> Any:
        """The child's next message; never hangs on a dead or stuck child."""
        if not self._conn.poll(STARTUP_TIMEOUT):
            code = self._process.exitcode
            self._process.kill()
            raise RuntimeError(f"the simulator process did not answer (exit code {code})")
        return self._conn.recv()

    def stats(self) -> dict[str, Any]:
        self._conn.send("stats")
        result: dict[str, Any] = self._receive()
        return result

    def stop(self) -> None:
        try:
            self._conn.send("stop")
            self._receive()
        finally:
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()


# -- measurement ---------------------------------------------------------------------


def rss_bytes() -> int:
    """Current resident set size (Linux /proc), else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Memory:
    rss: int
    objects: int

    @classmethod
    def now(cls) -> Memory:
        gc.collect()
        return cls(rss_bytes(), len(gc.get_objects()))


@dataclass
class Phase:
    name: str
    calls: int
    cpu: float = 0.0  # seconds of this process's CPU, both halves
    wall: float = 0.0
    errors: int = 0
    sim_cpu: float = 0.0
    mem: tuple[Memory, Memory, Memory] | None = None  # before, after half, after all
    note: str = ""
    baseline: bool = False

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.calls * 1e6


async def measure(
    phase: Phase, sim: SimulatorHandle, run_half: Callable[[int], Awaitable[int]]
) -> Phase:
    """Time both halves (CPU and wall); take memory snapshots before and after each,
    outside the timing, once a window has passed (see `settled_memory`)."""
    snapshots = [await settled_memory()]
    sim_cpu0 = sim.stats()["cpu"]
    for half in (0, 1):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        phase.errors += await run_half(half)
        phase.cpu += time.process_time() - cpu0
        phase.wall += time.perf_counter() - wall0
        snapshots.append(await settled_memory())
    phase.sim_cpu = sim.stats()["cpu"] - sim_cpu0  # the simulator idles while we settle
    phase.mem = (snapshots[0], snapshots[1], snapshots[2])
    return phase


async def settled_memory() -> Memory:
    """Memory once a window has passed: per-key limiter state (cooling slots, their timers)
    is dropped then, so what is left is what the calls left behind, not what is in flight."""
    await asyncio.sleep(WINDOW + 0.2)
    return Memory.now()


async def gather_errors(coros: list[Awaitable[None]]) -> int:
    outcomes = await asyncio.gather(*coros, return_exceptions=True)
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    for error in failed[:3]:
        print(f"  error: {type(error).__name__}: {error}")
    return len(failed)


# -- phase 1: the bare loop ----------------------------------------------------------


def signed_headers(key: SimKey, method: str, path: str, body: bytes) -> dict[str, str]:
    ts = format_timestamp(time.time())
    headers = {
        "OK-ACCESS-KEY": key.api_key,
        "OK-ACCESS-SIGN": sign(key.secret_key, ts, method, path, body),
        "OK-ACCESS-TIMESTAMP": ts,
        "OK-ACCESS-PASSPHRASE": key.passphrase,
    }
    if body:
        headers["Content-Type"] = "application/json"
    return headers


async def bare_phase(sim: SimulatorHandle, users: int, per_half: int, when: str) -> Phase:
    keys = [user_key(u)[1] for u in range(users)]
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) for _ in keys]
    url = sim.base_url + SET_PATH

    async def warm_up(session: aiohttp.ClientSession, key: SimKey) -> None:
        headers = signed_headers(key, "GET", CONFIG_PATH, b"")
        async with session.get(sim.base_url + CONFIG_PATH, headers=headers) as resp:
            await resp.read()

    async def worker(session: aiohttp.ClientSession, key: SimKey, first: int) -> None:
        for i in range(first, first + per_half):
            body = orjson.dumps({"ccy": CCYS[i % len(CCYS)], "clSpotInUseAmt": amount(i)})
            headers = signed_headers(key, "POST", SET_PATH, body)
            async with session.post(url, data=body, headers=headers) as resp:
                payload = orjson.loads(await resp.read())
            if payload["code"] != "0":
                raise RuntimeError(f"OKX code {payload['code']}")

    async def run_half(half: int) -> int:
        return await gather_errors(
            [worker(s, k, half * per_half) for s, k in zip(sessions, keys, strict=True)]
        )

    try:
        await asyncio.gather(*(warm_up(s, k) for s, k in zip(sessions, keys, strict=True)))
        phase = Phase(f"bare aiohttp + HMAC ({when})", users * per_half * 2, baseline=True)
        return await measure(phase, sim, run_half)
    finally:
        for session in sessions:
            await session.close()


# -- phases 2 and 3: okx_async -------------------------------------------------------


async def make_clients(sim: SimulatorHandle, users: int) -> tuple[list[OKXClient], float]:
    clients = []
    for u in range(users):
        uid, key = user_key(u)
        clients.append(
            OKXClient(
                api_key=key.api_key,
                secret_key=key.secret_key,
                passphrase=key.passphrase,
                base_url=sim.base_url,
                user_id=uid,
            )
        )
    t0 = time.perf_counter()
    await asyncio.gather(*(c.get_account_config() for c in clients))
    took = time.perf_counter() - t0
    # Again, now that every clock is synced (fast): the first clients' connections sat
    # idle through the slow part and aiohttp closes idle connections after 15 s.
    await asyncio.gather(*(c.get_account_config() for c in clients))
    return clients, took


async def okx_worker(client: OKXClient, first: int, count: int) -> None:
    for i in range(first, first + count):
        await client.set_risk_offset_amount(CCYS[i % len(CCYS)], amount(i))


def paced_half(clients: list[OKXClient], per_half: int) -> Callable[[int], Awaitable[int]]:
    async def run_half(half: int) -> int:
        return await gather_errors([okx_worker(c, half * per_half, per_half) for c in clients])

    return run_half


def unpaced_half(
    clients: list[OKXClient], per_half: int, rounds: list[float]
) -> Callable[[int], Awaitable[int]]:
    """Rounds of <= 10 calls per user, each after a pause of a window: never waits.
    Appends each round's wall time to `rounds` (a limiter wait would add ~2 s)."""

    async def run_half(half: int) -> int:
        errors = 0
        first = half * per_half
        for start in range(first, first + per_half, ROUND):
            count = min(ROUND, first + per_half - start)
            await asyncio.sleep(WINDOW + 0.1)  # every slot of the last round has cooled
            t0 = time.perf_counter()
            errors += await gather_errors([okx_worker(c, start, count) for c in clients])
            rounds.append(time.perf_counter() - t0)
        return errors

    return run_half


async def profile_paced(clients: list[OKXClient], per_half: int) -> None:
    await asyncio.sleep(WINDOW + 0.1)
    profiler = cProfile.Profile()
    run_half = paced_half(clients, per_half)
    profiler.enable()
    await run_half(2)
    await run_half(3)
    profiler.disable()
    for title, restriction in (("all functions", ()), ("okx_async's own", ("okx_async/",))):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(*restriction, 20)
        text = out.getvalue()
        print(f"\n--- cProfile of the paced phase: {title}, top 20 by tottime ---")
        print(text[text.index("   ncalls") :].rstrip())
    print("(cProfile inflates per-call costs several times; compare the rows, not the totals)")


# -- report --------------------------------------------------------------------------


def mib(n: int) -> str:
    return f"{n / 1024 / 1024:+.2f}" if n else "+0.00"


def print_report(phases: list[Phase], baseline_us: float) -> None:
    print(
        f"\n{'phase':<34} {'calls':>6} {'errors':>6} {'wall s':>7} {'CPU us/call':>11} "
        f"{'vs bare':>7} {'sim CPU us/call':>15}  note"
    )
    for p in phases:
        print(
            f"{p.name:<34} {p.calls:>6} {p.errors:>6} {p.wall:>7.2f} {p.cpu_us:>11.1f} "
            f"{p.cpu_us / baseline_us:>6.2f}x {p.sim_cpu / p.calls * 1e6:>15.1f}  {p.note}"
        )
    print(
        f"(vs bare: against {baseline_us:.1f} us, the mean of the two bare runs; wall: the "
        "two halves, not the pauses for the memory snapshots)"
    )
    print(
        f"\n{'memory':<34} {'RSS MiB':>8} {'half 1':>7} {'half 2':>7} "
        f"{'objects':>8} {'half 1':>7} {'half 2':>7}"
    )
    for p in phases:
        if p.mem is None:
            continue
        before, half, after = p.mem
        print(
            f"{p.name:<34} {before.rss / 1024 / 1024:>8.1f} {mib(half.rss - before.rss):>7} "
            f"{mib(after.rss - half.rss):>7} {before.objects:>8} "
            f"{half.objects - before.objects:>+7} {after.objects - half.objects:>+7}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(half 1/2: growth during that half; peak RSS of this process {peak:.1f} MiB)")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_summary(phases: list[Phase], baseline_us: float, spread: float) -> None:
    print()
    for p in phases:
        if p.baseline:
            continue
        ratio = p.cpu_us / baseline_us
        print(
            f"{verdict(ratio <= TARGET_CPU_RATIO and p.errors == 0)} {p.name}: "
            f"{p.cpu_us:.1f} us CPU/call = {ratio:.2f}x bare ({baseline_us:.1f} us, the two "
            f"bare runs {spread:.0%} apart) (target <= {TARGET_CPU_RATIO}x, {p.errors} errors)"
        )
    for p in phases:
        if p.baseline or p.mem is None:
            continue
        _, half, after = p.mem
        grew_rss = after.rss - half.rss
        per_call = (after.objects - half.objects) / (p.calls / 2)
        ok = grew_rss <= TARGET_RSS_GROWTH and per_call <= TARGET_OBJECTS_PER_CALL
        print(
            f"{verdict(ok)} {p.name} memory, second half: RSS {mib(grew_rss)} MiB "
            f"(target <= {TARGET_RSS_GROWTH / 1024 / 1024:g}), live objects "
            f"{per_call:+.3f}/call (target <= {TARGET_OBJECTS_PER_CALL})"
        )


async def main_async(users: int, per_user: int, profile: bool) -> None:
    per_half = per_user // 2
    total = users * per_half * 2
    print(
        f"soak: {total} set calls = {users} users x {per_half * 2} calls (two halves), "
        f"one worker per user; simulator in a separate process, limits raised"
    )
    sim = SimulatorHandle(users)
    try:
        bare_before = await bare_phase(sim, users, per_half, "before")
        clients, warm_up = await make_clients(sim, users)
        print(f"okx_async warm-up (clock sync + config) of {users} clients: {warm_up:.1f} s")
        await asyncio.sleep(WINDOW + 0.1)  # the limiter keys of the warm-up go idle
        paced = await measure(
            Phase("okx_async, paced (limiter binds)", total), sim, paced_half(clients, per_half)
        )
        paced.note = f"ideal pacing 2 x {(per_half - 1) // ROUND * WINDOW:g} s"
        rounds: list[float] = []
        unpaced = await measure(
            Phase("okx_async, unpaced (never waits)", total),
            sim,
            unpaced_half(clients, per_half, rounds),
        )
        unpaced.note = (
            f"{len(rounds)} rounds after {WINDOW + 0.1:g} s pauses, longest {max(rounds):.2f} s"
        )
        bare_after = await bare_phase(sim, users, per_half, "after")
        rate_limited = sim.stats()["rate_limited"]
        phases = [bare_before, paced, unpaced, bare_after]
        baseline_us = (bare_before.cpu_us + bare_after.cpu_us) / 2
        spread = abs(bare_before.cpu_us - bare_after.cpu_us) / baseline_us
        print_report(phases, baseline_us)
        print(f"50011 answers from the simulator (limits raised): {rate_limited}")
        print_summary(phases, baseline_us, spread)
        if profile:
            await profile_paced(clients, per_half)
        for client in clients:
            await client.close()
    finally:
        sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 users x 30 calls")
    parser.add_argument("--profile", action="store_true", help="cProfile the paced phase")
    args = parser.parse_args()
    users, per_user = (50, 30) if args.quick else (200, 50)
    asyncio.run(main_async(users, per_user, args.profile))


if __name__ == "__main__":
    main()
