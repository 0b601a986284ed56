"""Soak: set calls over 200 user IDs, repeated. Memory stays flat; client CPU per call.

The simulator runs in a separate process (multiprocessing, spawn), so this process's CPU
time (`time.process_time`) is the client's alone. Its limits are raised to 1,000,000 per
2 s on every path: the simulator never refuses, and only the client's own limiter (OKX's
real table, 10 per 2 s per User ID) paces anything.

One client (and, for the baselines, one aiohttp session) per user, 200 users, one worker
per user doing 25 calls one after another: 5,000 calls per run. Four kinds of run:

- **bare**: aiohttp + HMAC with no limiter, the baseline of the target. Sign with
  `okx_async.sign`, orjson body, one session per user, read and parse the answer.
  Against real OKX it would get 50011s: it sends 25 per user at once.
- **bare, hand-paced**: the same loop, paced by hand as strictly as okx_async paces
  (a user's 11th call waits until its 1st answer is a window old). The same work
  pattern as "okx_async, paced", so their ratio is the client's cost like for like.
- **okx_async, paced**: 25 calls per user back to back; the limiter binds, so 15 of
  every 25 take its wait path (event-driven timers, no polling). This is real use.
- **okx_async, unpaced**: rounds of at most 10 calls per user, 2.1 s apart, so every
  acquire takes the limiter's fast path; the pauses cost no CPU.

Why repeated and interleaved: on a 2-core VM shared with the simulator (and with other
tenants of the host), one run's CPU per call moves by 10-40% with what else the machine
does, and the first runs of a process pay for warming it up (allocator arenas,
first-time code paths). So a warm-up cycle of all four kinds runs first and is not
counted; then `--cycles` (default 9) cycles each run all four, in an order rotated every
cycle. Each okx_async run is compared with the baseline of its own cycle, and the verdict
uses the median of those per-cycle ratios: single cycles range from 0.8x to 1.6x, so 9 of
them, not 5. Each run starts with a full collection, so none inherits the garbage (and the
collection due) of the run before it, which is another kind's; the collections during the
run count. The CPU time includes garbage collection,
shown on its own ("GC us/call"): it depends on how many objects are alive, so a kind with
callers waiting pays more for it, bare or not. `--instructions` counts machine
instructions instead, which do not move with the machine's load (see below).

Memory: a snapshot (current RSS from /proc, and the count of live objects seen by the
garbage collector) after each cycle, once a window has passed, so the limiter keys'
short-lived state (cooling slots and their timers, dropped when a key goes idle) is gone
and only what the calls left behind is counted. Growth is measured from the end of the
first measured cycle to the end of the last; with the default 9 cycles, 80,000 okx_async
calls (400 per user) lie between the two.

Targets: okx_async CPU per call <= 1.25x the bare loop (paced, and unpaced; the median of
the cycles' ratios), and <= 1.20x in instructions; memory bounded: from the first cycle's
end to the last's, RSS grows by <= 2 MiB and the live object count by <= 0.5 per okx_async
call. Anything kept per call shows up as >= 1 object per call; connection-level state
(aiohttp re-opening a keep-alive connection) may add a few hundred objects once, which is
not growth with the call count.
Objects the collector does not track (floats, str, bytes) show only in RSS: a per-client
list of floats growing by one per call once added ~0.4 MiB per cycle here, which is how
the stats' sample ring came to be preallocated.

Run:   python benchmarks/soak.py [--quick] [--cycles N] [--profile]
       python benchmarks/soak.py --instructions [--against TREE]
`--quick`: 50 users, 2 cycles. `--profile`: afterwards, one more paced run under cProfile,
printing the top functions. `--against TREE`: the okx_async kinds are counted once more
with another checkout's okx_async (e.g. `git worktree add /tmp/main main`), so a change
is compared with main against the same run of the bare loop. A full run takes about 5
minutes; `--instructions` 5-10 (needs valgrind; 8-15 with `--against`).
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
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
import orjson
from _common import serve_simulator, verdict

from okx_async import OKXClient, format_timestamp, sign
from okx_async.simulator import (
    CONFIG_PATH,
    DEFAULT_LIMITS,
    SET_PATH,
    SimKey,
    SimulatorConfig,
    SimUser,
)

WINDOW = 2.0  # OKX's set-riskOffset-amt window; 10 requests per user inside it
ROUND = 10  # calls per user per window
CALLS_PER_RUN = 25  # per user
STARTUP_TIMEOUT = 30.0  # seconds to wait for any answer of the simulator process
CCYS = ("BTC", "ETH", "SOL", "XRP", "DOGE")
TARGET_CPU_RATIO = 1.25
# Instructions do not move with the machine's load, so their target can be tighter.
TARGET_INSTRUCTION_RATIO = 1.20
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


async def memory_after_a_window() -> Memory:
    """Memory once a window has passed: per-key limiter state (cooling slots, their timers)
    is dropped then, so what is left is what the calls left behind, not what is in flight."""
    await asyncio.sleep(WINDOW + 0.2)
    return Memory.now()


@dataclass
class Run:
    """One run of one kind: CPU and wall time of this process, errors."""

    cpu_us: float  # per call
    wall: float
    errors: int
    sim_cpu_us: float  # the simulator process's CPU per call, for comparison
    gc_us: float  # of cpu_us: the part spent in garbage collections


class GcTimer:
    """A gc callback adding up the CPU time of collections (part of the client's)."""

    def __init__(self) -> None:
        self.spent = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.spent += time.process_time() - self._started


@dataclass
class Kind:
    name: str
    run: Callable[[int], Awaitable[int]]  # run(first call index) -> errors
    runs: list[Run] = field(default_factory=list)
    baseline: bool = False

    def median_us(self) -> float:
        return statistics.median(r.cpu_us for r in self.runs)


async def timed_run(kind: Kind, sim: SimulatorHandle, first: int, calls: int) -> Run:
    await asyncio.sleep(WINDOW + 0.1)  # every slot of the previous run has cooled
    # Every run starts from the same collector state: none inherits the garbage (and
    # the full collection it is due) of the run before, which is another kind.
    gc.collect()
    sim_cpu0 = sim.stats()["cpu"]
    gc_timer = GcTimer()
    gc.callbacks.append(gc_timer)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        errors = await kind.run(first)
    finally:
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        gc.callbacks.remove(gc_timer)
    sim_cpu = sim.stats()["cpu"] - sim_cpu0
    per_call = 1e6 / calls
    return Run(cpu * per_call, wall, errors, sim_cpu * per_call, gc_timer.spent * per_call)


async def gather_errors(coros: list[Awaitable[None]]) -> int:
    outcomes = await asyncio.gather(*coros, return_exceptions=True)
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    for error in failed[:3]:
        print(f"  error: {type(error).__name__}: {error}")
    return len(failed)


# -- the baselines: bare aiohttp + HMAC ----------------------------------------------


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


class Bare:
    """One aiohttp session per user, kept across runs (connection reuse)."""

    def __init__(self, sim: SimulatorHandle, users: int) -> None:
        self.keys = [user_key(u)[1] for u in range(users)]
        self.sessions = [
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) for _ in self.keys
        ]
        self.base_url = sim.base_url

    async def warm_up(self) -> None:
        async def one(session: aiohttp.ClientSession, key: SimKey) -> None:
            headers = signed_headers(key, "GET", CONFIG_PATH, b"")
            async with session.get(self.base_url + CONFIG_PATH, headers=headers) as resp:
                await resp.read()

        await asyncio.gather(*map(one, self.sessions, self.keys))

    async def _worker(
        self, session: aiohttp.ClientSession, key: SimKey, first: int, paced: bool
    ) -> None:
        url = self.base_url + SET_PATH
        loop = asyncio.get_running_loop()
        answered: deque[float] = deque(maxlen=ROUND)  # when the last ROUND answers came
        for i in range(first, first + CALLS_PER_RUN):
            if paced and len(answered) == ROUND:
                wait = answered[0] + WINDOW - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            body = orjson.dumps({"ccy": CCYS[i % len(CCYS)], "clSpotInUseAmt": amount(i)})
            headers = signed_headers(key, "POST", SET_PATH, body)
            async with session.post(url, data=body, headers=headers) as resp:
                payload = orjson.loads(await resp.read())
            if paced:
                answered.append(loop.time())
            if payload["code"] != "0":
                raise RuntimeError(f"OKX code {payload['code']}")

    def runner(self, *, paced: bool) -> Callable[[int], Awaitable[int]]:
        async def run(first: int) -> int:
            pairs = zip(self.sessions, self.keys, strict=True)
            return await gather_errors([self._worker(s, k, first, paced) for s, k in pairs])

        return run

    async def close(self) -> None:
        for session in self.sessions:
            await session.close()


# -- okx_async -----------------------------------------------------------------------


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
    return clients, time.perf_counter() - t0


@dataclass
class Setup:
    sim: SimulatorHandle
    bare: Bare
    clients: list[OKXClient]
    warm_up: float  # seconds the okx_async clients took to warm up


@asynccontextmanager
async def soak_setup(users: int) -> AsyncIterator[Setup]:
    """The simulator process, the bare sessions and the okx_async clients, warmed up;
    all closed on the way out, whatever happened."""
    sim = SimulatorHandle(users)
    bare = Bare(sim, users)
    clients: list[OKXClient] = []
    try:
        await bare.warm_up()
        clients, warm_up = await make_clients(sim, users)
        yield Setup(sim, bare, clients, warm_up)
    finally:
        for client in clients:
            await client.close()
        await bare.close()
        sim.stop()


async def okx_worker(client: OKXClient, first: int, count: int) -> None:
    for i in range(first, first + count):
        await client.set_risk_offset_amount(CCYS[i % len(CCYS)], amount(i))


def okx_paced(clients: list[OKXClient]) -> Callable[[int], Awaitable[int]]:
    async def run(first: int) -> int:
        return await gather_errors([okx_worker(c, first, CALLS_PER_RUN) for c in clients])

    return run


def okx_unpaced(clients: list[OKXClient]) -> Callable[[int], Awaitable[int]]:
    """Rounds of <= 10 calls per user, a window apart: the limiter never makes one wait."""

    async def run(first: int) -> int:
        errors = 0
        for start in range(first, first + CALLS_PER_RUN, ROUND):
            if start > first:
                await asyncio.sleep(WINDOW + 0.1)  # every slot of the last round has cooled
            count = min(ROUND, first + CALLS_PER_RUN - start)
            errors += await gather_errors([okx_worker(c, start, count) for c in clients])
        return errors

    return run


async def profile_paced(clients: list[OKXClient], first: int) -> None:
    await asyncio.sleep(WINDOW + 0.1)
    profiler = cProfile.Profile()
    run = okx_paced(clients)
    profiler.enable()
    await run(first)
    profiler.disable()
    for title, restriction in (("all functions", ()), ("okx_async's own", ("okx_async/",))):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(*restriction, 20)
        text = out.getvalue()
        print(f"\n--- cProfile of a paced run: {title}, top 20 by tottime ---")
        print(text[text.index("   ncalls") :].rstrip())
    print("(cProfile inflates per-call costs several times; compare the rows, not the totals)")


KIND_NAMES = (
    "bare aiohttp + HMAC",
    "bare, hand-paced",
    "okx_async, paced (limiter binds)",
    "okx_async, unpaced (never waits)",
)


def make_kinds(bare: Bare, clients: list[OKXClient]) -> list[Kind]:
    runners = [bare.runner(paced=False), bare.runner(paced=True)]
    runners += [okx_paced(clients), okx_unpaced(clients)]
    return [
        Kind(name, run, baseline=i < 2)
        for i, (name, run) in enumerate(zip(KIND_NAMES, runners, strict=True))
    ]


# -- instructions per call, under callgrind -------------------------------------------
#
# CPU time on a shared 2-core VM moves by 10-40% from run to run; the number of machine
# instructions executed does not. `--instructions` runs each kind in a child process
# under valgrind's callgrind, once with 1 run and once with 3; the difference is the
# cost of 2 warm runs, without start-up, imports, warm-up and shutdown. Callgrind counts
# user-space instructions only (not the kernel's share of the sockets, which is the same
# HTTP traffic for every kind) and knows nothing of cache misses.

INSTRUCTION_USERS = 50  # 1,250 calls per run: ~1 minute per child under callgrind
_COLLECTED = re.compile(r"Collected : (\d+)")


async def child_runs(kind_index: int, runs: int, users: int) -> None:
    """The child of `--instructions`: set up as usual, then `runs` runs of one kind."""
    async with soak_setup(users) as setup:
        kind = make_kinds(setup.bare, setup.clients)[kind_index]
        for run in range(runs):
            await asyncio.sleep(WINDOW + 0.1)
            if errors := await kind.run(run * CALLS_PER_RUN):
                raise SystemExit(f"{kind.name}: {errors} errors")


def count_instructions(
    valgrind: str, kind_index: int, runs: int, users: int, tree: str | None = None
) -> int:
    """Instructions of a child doing `runs` runs of one kind; with `tree`, importing
    okx_async from that source tree (another checkout) instead of the installed one."""
    command = [
        valgrind,
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        str(kind_index),
        str(runs),
        str(users),
    ]
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [tree, env.get("PYTHONPATH")]))
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind child failed ({done.returncode}): {done.stderr[-500:]}")
    return int(found.group(1))


def instructions_mode(users: int, against: str | None) -> None:
    """Instructions per call of each kind; with `against` (another checkout's root), its
    okx_async kinds too, against the same run of the bare loop."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("SKIP --instructions: valgrind is not installed (apt-get install valgrind)")
        return
    names = list(KIND_NAMES)
    kinds: list[tuple[int, str | None]] = [(k, None) for k in range(len(names))]
    if against is not None:
        kinds += [(k, against) for k in (2, 3)]
        names += [f"{KIND_NAMES[k]} [{os.path.basename(against.rstrip('/'))}]" for k in (2, 3)]
    calls = 2 * users * CALLS_PER_RUN
    print(
        f"instructions per call under callgrind: each kind in a child process, 1 run and "
        f"3 runs of {users} users x {CALLS_PER_RUN} calls; (3 runs - 1 run) / {calls} calls"
    )
    jobs = [(k, tree, runs) for k, tree in kinds for runs in (1, 3)]
    with ThreadPoolExecutor(max_workers=2) as pool:  # one per core
        counts = list(
            pool.map(lambda job: count_instructions(valgrind, job[0], job[2], users, job[1]), jobs)
        )
    per_call = [(counts[2 * i + 1] - counts[2 * i]) / calls for i in range(len(names))]
    base = per_call[0]
    print(f"\n{'kind':<50} {'instructions/call':>17} {'vs bare':>8}")
    for name, n in zip(names, per_call, strict=True):
        print(f"{name:<50} {n:>17,.0f} {n / base:>7.3f}x")
    print()
    for name, n in zip(names[2:], per_call[2:], strict=True):
        ratio = n / base
        print(
            f"{verdict(ratio <= TARGET_INSTRUCTION_RATIO)} {name}: {ratio:.3f}x the bare "
            f"loop's instructions per call (target <= {TARGET_INSTRUCTION_RATIO}x)"
        )
    print(
        f"INFO okx_async, paced vs bare, hand-paced: {per_call[2] / per_call[1]:.3f}x "
        "(the same work pattern)"
    )


# -- report --------------------------------------------------------------------------


def print_runs(kinds: list[Kind], calls: int) -> None:
    cycles = len(kinds[0].runs)
    heads = " ".join(f"{'cycle ' + str(c + 1):>9}" for c in range(cycles))
    print(f"\nCPU us per call, {calls} calls per run\n{'kind':<34} {heads} {'median':>9}")
    for k in kinds:
        cells = " ".join(f"{r.cpu_us:>9.1f}" for r in k.runs)
        print(f"{k.name:<34} {cells} {k.median_us():>9.1f}")
    print(
        f"\n{'kind (medians)':<34} {'wall s':>9} {'errors':>7} {'GC us/call':>11} "
        f"{'sim CPU us/call':>16}"
    )
    for k in kinds:
        wall = statistics.median(r.wall for r in k.runs)
        gc_us = statistics.median(r.gc_us for r in k.runs)
        sim = statistics.median(r.sim_cpu_us for r in k.runs)
        errors = sum(r.errors for r in k.runs)
        print(f"{k.name:<34} {wall:>9.2f} {errors:>7} {gc_us:>11.1f} {sim:>16.1f}")


def ratio_line(kind: Kind, base: Kind, *, target: bool) -> str:
    ratios = [k.cpu_us / b.cpu_us for k, b in zip(kind.runs, base.runs, strict=True)]
    median = statistics.median(ratios)
    errors = sum(r.errors for r in kind.runs)
    cells = ", ".join(f"{r:.2f}" for r in ratios)
    label = verdict(median <= TARGET_CPU_RATIO and errors == 0) if target else "INFO"
    goal = f" (target <= {TARGET_CPU_RATIO}x, {errors} errors)" if target else ""
    return f"{label} {kind.name} vs {base.name}: median {median:.2f}x (cycles: {cells}){goal}"


async def main_async(users: int, cycles: int, profile: bool) -> None:
    calls = users * CALLS_PER_RUN
    print(
        f"soak: {users} users x {CALLS_PER_RUN} calls per run = {calls} set calls per run; "
        f"a warm-up cycle, then {cycles} cycles of 4 runs; simulator in a separate process"
    )
    async with soak_setup(users) as setup:
        sim = setup.sim
        print(f"okx_async warm-up (clock sync + config) of {users} clients: {setup.warm_up:.1f} s")
        kinds = make_kinds(setup.bare, setup.clients)
        first = 0
        for kind in kinds:  # warm-up cycle: not counted
            await timed_run(kind, sim, first, calls)
        first += CALLS_PER_RUN
        memory = [await memory_after_a_window()]
        for cycle in range(cycles):
            order = kinds[cycle % len(kinds) :] + kinds[: cycle % len(kinds)]
            for kind in order:
                kind.runs.append(await timed_run(kind, sim, first, calls))
            first += CALLS_PER_RUN
            memory.append(await memory_after_a_window())
        rate_limited = sim.stats()["rate_limited"]
        print_runs(kinds, calls)
        print(f"50011 answers from the simulator (limits raised): {rate_limited}")
        base, hand_paced, paced, unpaced = kinds
        print()
        print(ratio_line(paced, base, target=True))
        print(ratio_line(unpaced, base, target=True))
        print(ratio_line(paced, hand_paced, target=False))
        print(ratio_line(hand_paced, base, target=False))
        if cycles >= 2:
            grown = memory[-1].rss - memory[1].rss
            okx_calls = 2 * calls * (cycles - 1)
            per_call = (memory[-1].objects - memory[1].objects) / okx_calls
            print(
                f"{verdict(grown <= TARGET_RSS_GROWTH and per_call <= TARGET_OBJECTS_PER_CALL)}"
                f" memory over the last {cycles - 1} cycle(s) ({okx_calls} okx_async calls): "
                f"RSS {grown / 1024 / 1024:+.2f} MiB (target <= "
                f"{TARGET_RSS_GROWTH / 1024 / 1024:g}), live objects {per_call:+.3f}/call "
                f"(target <= {TARGET_OBJECTS_PER_CALL}); RSS after each cycle: "
                + ", ".join(f"{m.rss / 1024 / 1024:.1f}" for m in memory)
                + " MiB"
            )
        if profile:
            await profile_paced(setup.clients, first)


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":  # see instructions_mode()
        asyncio.run(child_runs(*map(int, sys.argv[2:])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 users, 2 cycles")
    parser.add_argument("--cycles", type=int, default=None, help="measured cycles (9)")
    parser.add_argument("--profile", action="store_true", help="cProfile one paced run")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per call under valgrind (5-10 minutes) instead",
    )
    parser.add_argument(
        "--against",
        metavar="TREE",
        help="with --instructions: also count another checkout's okx_async (its root)",
    )
    args = parser.parse_args()
    if args.instructions:
        instructions_mode(INSTRUCTION_USERS, args.against)
        return
    users = 50 if args.quick else 200
    cycles = args.cycles or (2 if args.quick else 9)
    asyncio.run(main_async(users, cycles, args.profile))


if __name__ == "__main__":
    main()
