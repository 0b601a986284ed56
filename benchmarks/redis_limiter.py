"""Redis limiter: round trips and cost per acquire+release, and N processes on one key.

Starts its own redis-server (no persistence, temp dir, unix socket only) with the logic
of tests/redis_server.py, and talks to nothing else. Private imports are fine here.

(a) Uncontended: a huge limit with a short window (10**6 per 0.1 s), so every acquire
    is granted at once. Loop of `await acquire(); await release()` on one
    RedisLimiterBackend. Round trips are counted by Redis itself (INFO commandstats
    deltas of the commands a client sends: EVALSHA, EVAL, SCRIPT, PING, ...; commands
    run inside the scripts do not count) over a pass of acquires, then one of releases.
    Baselines timed in the same run: a bare redis-py EVALSHA of `return 1` (one round
    trip through the same client stack) and the in-process LocalKeyLimiter.
(b) N processes (N = 1, 2, 4), each with its own backend and 16 callers looping
    acquire -> record -> release on one shared key limited to 10 per 0.2 s, for a few
    seconds. "Record" is one script that copies the lease's in-flight expiry from the
    limiter's leases ZSET to a log list: Redis set it to grant time + inflight_ttl with
    its own clock, so the log holds exact grant times on one clock. Throughput is
    (grants - limit) / (last grant - first grant): the first window's burst of `limit`
    is not counted, so a perfectly used budget scores limit / window. The log is also
    checked for any half-open window (t - window, t] holding more than `limit` grants.

Targets: <= ~1 round trip per acquire and 1 per release (a); for every N, throughput
>= 90% of limit / window and never over the limit (b).

Run:   python benchmarks/redis_limiter.py [--quick]
Takes about 25 s (about 12 s with --quick). Needs redis-server (OKX_ASYNC_REDIS_SERVER
picks another binary, e.g. valkey-server) and redis-py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from _common import max_in_any_window, per_op_us, verdict

from okx_async import (
    SET_RISK_OFFSET_PATH,
    DeadlineExceededError,
    LimiterKey,
    LocalKeyLimiter,
    RateLimit,
    RedisLimiterBackend,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from redis_server import RedisServer, find_redis_server

ROOT = Path(__file__).resolve().parent.parent

PATH = SET_RISK_OFFSET_PATH
# Passed to every worker's backend explicitly (the store's default is the same).
INFLIGHT_TTL = 60.0
FAST = RateLimit(1_000_000, 0.1, "user")
SHARED = RateLimit(10, 0.2, "user")
CALLERS = 16  # per process
TARGET_ROUND_TRIPS = 1.05
TARGET_THROUGHPUT = 0.90
# Commands a client sends itself; everything else in commandstats ran inside a script.
CLIENT_COMMANDS = ("evalsha", "eval", "evalsha_ro", "eval_ro", "ping", "hello", "select")
CLIENT_PREFIXES = ("script|", "client|")
RECORD_LUA = """
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s then redis.call('RPUSH', KEYS[2], s) end
return s
"""


async def client_commands(rc: Any) -> dict[str, int]:
    stats = await rc.info("commandstats")
    out = {}
    for name, row in stats.items():
        cmd = name.removeprefix("cmdstat_")
        if cmd in CLIENT_COMMANDS or cmd.startswith(CLIENT_PREFIXES):
            out[cmd] = int(row["calls"])
    return out


async def evalsha_usec(rc: Any) -> int:
    """Server time spent in EVALSHA so far (script execution), µs."""
    stats = await rc.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("usec", 0))


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


# -- (a) uncontended ---------------------------------------------------------------------


async def part_a(server: RedisServer, n: int, repeats: int) -> bool:
    rc = aioredis.Redis(unix_socket_path=server.socket_path, decode_responses=True)
    bare_client = aioredis.Redis.from_url(server.url)
    backend = RedisLimiterBackend(server.url)
    try:
        bare = bare_client.register_script("return 1")
        await bare()

        async def bare_loop(k: int) -> None:
            for _ in range(k):
                await bare()

        local = LocalKeyLimiter(LimiterKey("bench", "uid:local", PATH), FAST)

        async def local_loop(k: int) -> None:
            for _ in range(k):
                await local.release(await local.acquire())

        lim = backend.limiter(LimiterKey("bench", "uid:a", PATH), FAST)
        await lim.release(await lim.acquire())  # connects, loads the scripts

        async def redis_loop(k: int) -> None:
            for _ in range(k):
                await lim.release(await lim.acquire())

        before = await client_commands(rc)
        bare_us = await per_op_us(bare_loop, n, repeats)
        bare_rt = sum(delta(await client_commands(rc), before).values()) / (n * repeats)
        local_us = await per_op_us(local_loop, n * 10, repeats)
        redis_us = await per_op_us(redis_loop, n, repeats)

        m = min(n, 500)
        before, us0 = await client_commands(rc), await evalsha_usec(rc)
        leases = [await lim.acquire() for _ in range(m)]
        mid, us1 = await client_commands(rc), await evalsha_usec(rc)
        for lease in leases:
            await lim.release(lease)
        after, us2 = await client_commands(rc), await evalsha_usec(rc)
        acq, rel = delta(mid, before), delta(after, mid)
        acq_rt, rel_rt = sum(acq.values()) / m, sum(rel.values()) / m
    finally:
        await backend.aclose()
        await bare_client.aclose()
        await rc.aclose()

    print(f"\n(a) uncontended, {n} ops x {repeats} repeats (median), unix socket")
    print(f"{'what':<52} {'us/op':>8} {'round trips':>11} {'vs EVALSHA':>10}")
    rows = [
        ("RedisKeyLimiter acquire+release (10**6 / 0.1 s)", redis_us, acq_rt + rel_rt),
        ("baseline: bare redis-py EVALSHA `return 1`", bare_us, bare_rt),
        ("baseline: LocalKeyLimiter acquire+release", local_us, 0.0),
    ]
    for name, us, rt in rows:
        print(f"{name:<52} {us:>8.1f} {rt:>11.2f} {us / bare_us:>9.2f}x")
    print(
        f"acquire pass ({m} acquires): {acq}, {(us1 - us0) / m:.0f} us in Redis each; "
        f"release pass: {rel}, {(us2 - us1) / m:.0f} us in Redis each"
    )
    print(
        f"RedisKeyLimiter pair = {redis_us / bare_us:.2f}x one bare EVALSHA "
        f"(2 round trips: 2.00x would be free of limiter overhead), "
        f"{redis_us / local_us:.0f}x LocalKeyLimiter"
    )
    ok = acq_rt <= TARGET_ROUND_TRIPS and rel_rt <= TARGET_ROUND_TRIPS
    print(
        f"{verdict(ok)} round trips: {acq_rt:.2f} per acquire, {rel_rt:.2f} per release "
        f"(target <= ~1 each)"
    )
    return ok


# -- (b) N processes on one key ----------------------------------------------------------


async def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One process of (b): waits for the common start on stdin, hammers the key."""
    backend = RedisLimiterBackend(spec["url"], inflight_ttl=spec["inflight_ttl"])
    plain = aioredis.Redis.from_url(spec["url"])
    try:
        record = plain.register_script(RECORD_LUA)
        key = LimiterKey("bench", spec["subject"], PATH)
        rate = RateLimit(spec["rate"][0], spec["rate"][1], "user")
        warm = backend.limiter(LimiterKey("bench", "uid:warm", PATH), rate)
        await warm.release(await warm.acquire())
        await record(keys=["bench:warm", "bench:warm-log"], args=["-"])
        lim = backend.limiter(key, rate)
        leases_key = lim.redis_keys[0]
        log_key = spec["log_key"]
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        start = float(await loop.run_in_executor(None, sys.stdin.readline))
        await asyncio.sleep(max(0.0, start - time.time()))
        end = loop.time() + spec["duration"]
        grants = 0

        async def caller() -> None:
            nonlocal grants
            while loop.time() < end:
                try:
                    lease = await lim.acquire(deadline=end)
                except DeadlineExceededError:
                    return
                try:
                    await record(keys=[leases_key, log_key], args=[lease.lease_id])
                finally:
                    await lim.release(lease)
                grants += 1

        await asyncio.gather(*(caller() for _ in range(CALLERS)))
        return {"grants": grants}
    finally:
        await backend.aclose()
        await plain.aclose()


async def run_processes(server: RedisServer, n: int, duration: float) -> dict[str, Any]:
    subject = f"uid:shared-{n}"
    log_key = f"bench:{{bench|{subject}}}:grant-log"
    spec = {
        "url": server.url,
        "subject": subject,
        "rate": [SHARED.limit, SHARED.window],
        "duration": duration,
        "inflight_ttl": INFLIGHT_TTL,
        "log_key": log_key,
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rc = aioredis.Redis(unix_socket_path=server.socket_path, decode_responses=True)
    procs: list[asyncio.subprocess.Process] = []
    try:
        for _ in range(n):
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    __file__,
                    "--worker",
                    json.dumps(spec),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    env=env,
                )
            )
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            if line != b"ready\n":
                raise RuntimeError(f"a worker failed to start: {line!r}")
        before = await client_commands(rc)
        start = time.time() + 0.2
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{start!r}\n".encode())
            await proc.stdin.drain()
            proc.stdin.close()
        counts = []
        for proc in procs:
            out, _ = await asyncio.wait_for(proc.communicate(), duration + 30)
            if proc.returncode != 0:
                raise RuntimeError(f"a worker exited with {proc.returncode}")
            counts.append(json.loads(out.decode().strip().splitlines()[-1])["grants"])
        evalsha = delta(await client_commands(rc), before).get("evalsha", 0)
        ttl_us = round(INFLIGHT_TTL * 1e6)
        times = sorted(int(float(x)) - ttl_us for x in await rc.lrange(log_key, 0, -1))
    finally:
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        await rc.aclose()
    total = len(times)
    span = (times[-1] - times[0]) / 1e6 if total > 1 else 0.0
    rate = (total - SHARED.limit) / span if span > 0 else 0.0
    return {
        "n": n,
        "counts": counts,
        "total": total,
        "span": span,
        "rate": rate,
        "worst": max_in_any_window(times, round(SHARED.window * 1e6)),
        "rt_per_grant": (evalsha - total) / total if total else 0.0,  # minus the record calls
    }


async def part_b(server: RedisServer, duration: float) -> bool:
    ideal = SHARED.limit / SHARED.window
    print(
        f"\n(b) N processes x {CALLERS} callers on one key, {SHARED.limit} per "
        f"{SHARED.window:g} s (ideal {ideal:g} grants/s), {duration:g} s each"
    )
    print(
        f"{'N':>2} {'grants':>7} {'per process':>20} {'grants/s':>9} {'vs ideal':>8} "
        f"{'max in window':>13} {'EVALSHA/grant':>13}"
    )
    results = []
    for n in (1, 2, 4):
        r = await run_processes(server, n, duration)
        results.append(r)
        per = "/".join(str(c) for c in r["counts"])
        print(
            f"{n:>2} {r['total']:>7} {per:>20} {r['rate']:>9.1f} {r['rate'] / ideal:>7.1%} "
            f"{r['worst']:>13} {r['rt_per_grant']:>13.2f}"
        )
    print(
        "(grants/s = (grants - limit) / (last grant - first grant), Redis clock; "
        "EVALSHA/grant counts the limiter's acquire asks and releases, not the record)"
    )
    ok = True
    for r in results:
        fast = r["rate"] >= TARGET_THROUGHPUT * ideal and sum(r["counts"]) == r["total"]
        under = r["worst"] <= SHARED.limit
        ok = ok and fast and under
        print(
            f"{verdict(fast)} N={r['n']}: {r['rate']:.1f} grants/s = {r['rate'] / ideal:.1%} "
            f"of {ideal:g} (target >= {TARGET_THROUGHPUT:.0%})"
        )
        print(
            f"{verdict(under)} N={r['n']}: at most {r['worst']} grants in any "
            f"{SHARED.window:g} s window (limit {SHARED.limit})"
        )
    return ok


# -- main --------------------------------------------------------------------------------


async def main_async(quick: bool) -> bool:
    exe = find_redis_server()
    if exe is None:
        raise SystemExit("redis-server not found (set OKX_ASYNC_REDIS_SERVER)")
    server = RedisServer(exe)
    server.start()
    try:
        rc = aioredis.Redis(unix_socket_path=server.socket_path, decode_responses=True)
        info = await rc.info("server")
        await rc.aclose()
        name = "valkey" if "valkey_version" in info else "redis"
        version = info.get("valkey_version", info.get("redis_version"))
        print(f"redis_limiter: {name} {version} at {server.socket_path} ({exe})")
        n, repeats = (500, 3) if quick else (1000, 5)
        ok_a = await part_a(server, n, repeats)
        ok_b = await part_b(server, 1.5 if quick else 3.0)
    finally:
        server.cleanup()
    return ok_a and ok_b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer ops, shorter runs")
    parser.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(worker(json.loads(args.worker)))), flush=True)
        return
    sys.exit(0 if asyncio.run(main_async(args.quick)) else 1)


if __name__ == "__main__":
    main()
