"""Limiter stores: cost per acquire+release of each store, and N processes on one key
through one sqlite file.

(a) Uncontended, one process: a loop of `await acquire(); await release()` on one key
    with a huge limit and a 2 ms window, so every acquire is granted at once and, as in
    a real budget (at most 10 per 2 s), only a handful of leases cool at any moment.
    Stores: memory (LocalKeyLimiter), sqlite (a file in a temp dir), and Redis when
    redis-server is installed (started like tests/redis_server.py: unix socket, no
    persistence). Baselines in the same run: one empty sqlite write transaction
    (BEGIN IMMEDIATE; COMMIT) and one `asyncio.to_thread` hop of a no-op, which is
    what running each sqlite transaction in a worker thread would add.
(b) N processes (N = 1, 2, 4) with 16 callers each, looping acquire -> record ->
    release on one key limited to 10 per 0.2 s, through one sqlite file. "Record"
    reads the lease's row: the store wrote grant time + inflight_ttl with its clock,
    so the log holds exact grant times on one clock. Throughput is (grants - limit) /
    (last grant - first grant), against the ideal limit / window (the first window's
    burst is not counted). The log is also checked for any half-open window
    (t - window, t] holding more than `limit` grants.

Targets: sqlite <= 50 µs per uncontended acquire+release (a); for every N, >= 95% of the
ideal rate and never over the limit (b).

Run:   python benchmarks/store_cost.py [--quick]
Takes about 20 s (about 10 s with --quick).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import max_in_any_window, per_op_us, verdict

from okx_async import (
    SET_RISK_OFFSET_PATH,
    LimiterKey,
    LocalKeyLimiter,
    RateLimit,
    SqliteLimiterBackend,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from redis_server import RedisServer, find_redis_server

KEY = LimiterKey("bench", "uid:1", SET_RISK_OFFSET_PATH)
# What the store adds to a grant's time in a lease row (its documented default).
SQLITE_INFLIGHT_TTL = inspect.signature(SqliteLimiterBackend).parameters["inflight_ttl"].default
FAST = RateLimit(1_000_000, 0.002, "user")
SHARED = RateLimit(10, 0.2, "user")
CALLERS = 16  # per process
TARGET_US = 50.0
TARGET_THROUGHPUT = 0.95


async def limiter_loop(limiter: Any, n: int) -> None:
    for _ in range(n):
        lease = await limiter.acquire()
        await limiter.release(lease)


# -- (a) uncontended ---------------------------------------------------------------------


async def part_a(tmp: Path, n: int, repeats: int) -> bool:
    memory = LocalKeyLimiter(KEY, FAST)
    sqlite_backend = SqliteLimiterBackend(tmp / "a.db")
    sqlite_limiter = sqlite_backend.limiter(KEY, FAST)
    await limiter_loop(sqlite_limiter, 100)  # open the file, create the tables

    conn = sqlite3.connect(tmp / "bare.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE t (k TEXT, id TEXT, e REAL, PRIMARY KEY (k, id)) WITHOUT ROWID")
    conn.execute("CREATE TABLE b (k TEXT PRIMARY KEY, v REAL) WITHOUT ROWID")
    conn.execute("INSERT INTO b VALUES ('k', 0)")

    async def bare_txn(k: int) -> None:
        for _ in range(k):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("COMMIT")

    async def write_txn(k: int) -> None:
        for i in range(k):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT OR REPLACE INTO t VALUES ('k', ?, 1.0)", (str(i % 16),))
            conn.execute("UPDATE b SET v = ? WHERE k = 'k'", (i,))
            conn.execute("COMMIT")

    async def thread_hop(k: int) -> None:
        for _ in range(k):
            await asyncio.to_thread(int)

    rows = [
        ("memory: acquire+release", await per_op_us(lambda k: limiter_loop(memory, k), n, repeats)),
        (
            "sqlite: acquire+release",
            await per_op_us(lambda k: limiter_loop(sqlite_limiter, k), n, repeats),
        ),
        ("baseline: empty sqlite write transaction", await per_op_us(bare_txn, n, repeats)),
        ("baseline: sqlite transaction, 2 row writes", await per_op_us(write_txn, n, repeats)),
        ("baseline: one asyncio.to_thread hop", await per_op_us(thread_hop, n, repeats)),
    ]
    conn.close()
    await sqlite_backend.aclose()
    exe = find_redis_server()
    if exe is not None:
        from okx_async import RedisLimiterBackend

        server = RedisServer(exe)
        server.start()
        try:
            redis_backend = RedisLimiterBackend(f"unix://{server.socket_path}")
            redis_limiter = redis_backend.limiter(KEY, FAST)
            await limiter_loop(redis_limiter, 100)
            cost = await per_op_us(lambda k: limiter_loop(redis_limiter, k), n, repeats)
            rows.append(("redis: acquire+release", cost))
            await redis_backend.aclose()
        finally:
            server.cleanup()
    else:
        print("(redis-server not found: no Redis row)")
    memory_us = rows[0][1]
    print(f"(a) uncontended, {n} ops x {repeats} repeats (median):")
    for name, us in rows:
        print(f"    {name:<44} {us:8.1f} us   {us / memory_us:6.1f}x memory")
    sqlite_us, floor_us = rows[1][1], rows[3][1]
    ok = sqlite_us <= TARGET_US
    print(f"{verdict(ok)} sqlite acquire+release {sqlite_us:.1f} us <= {TARGET_US:g} us "
          f"({sqlite_us / floor_us:.2f}x a bare 2-row write transaction)")  # fmt: skip
    return ok


# -- (b) N processes through one file -----------------------------------------------------


async def worker(spec: dict[str, Any]) -> dict[str, Any]:
    path = spec["path"]
    backend = SqliteLimiterBackend(path)
    limiter = backend.limiter(KEY, SHARED)
    reader = sqlite3.connect(path, isolation_level=None)
    grants: list[float] = []
    await limiter.release(await limiter.acquire())  # open the file before the barrier
    print("ready", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    start = float(line)
    await asyncio.sleep(max(0.0, start - time.time()))
    end = start + spec["duration"]

    async def caller() -> None:
        while time.time() < end:
            lease = await limiter.acquire()
            row = reader.execute(
                "SELECT expires FROM lease WHERE key = ? AND id = ?", (str(KEY), lease.lease_id)
            ).fetchone()
            grants.append(row[0] - SQLITE_INFLIGHT_TTL)
            await asyncio.sleep(0.005)  # the request's round trip
            await limiter.release(lease)

    await asyncio.gather(*(caller() for _ in range(CALLERS)))
    reader.close()
    await backend.aclose()
    return {"grants": grants}


async def run_processes(path: str, n: int, duration: float) -> list[float]:
    spec = json.dumps({"path": path, "duration": duration})
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--worker",
            spec,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(n)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert await proc.stdout.readline() == b"ready\n"
    start = time.time() + 0.3 + SHARED.window  # the warm-up grants have cooled by then
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"{start!r}\n".encode())
        await proc.stdin.drain()
    grants: list[float] = []
    for proc in procs:
        out, _ = await proc.communicate()
        grants += json.loads(out.decode().splitlines()[-1])["grants"]
    return sorted(grants)


async def part_b(tmp: Path, duration: float) -> bool:
    ok = True
    ideal = SHARED.limit / SHARED.window
    print(f"(b) one key limited to {SHARED.limit} per {SHARED.window:g} s, {CALLERS} callers "
          f"per process, {duration:g} s:")  # fmt: skip
    for n in (1, 2, 4):
        grants = await run_processes(str(tmp / f"b{n}.db"), n, duration)
        rate = (len(grants) - SHARED.limit) / (grants[-1] - grants[0])
        most = max_in_any_window(grants, SHARED.window)
        share = rate / ideal
        good = share >= TARGET_THROUGHPUT and most <= SHARED.limit
        ok = ok and good
        print(
            f"    {n} process(es): {len(grants)} grants, {rate:.2f}/s = {share:.1%} of ideal, "
            f"most in any {SHARED.window:g} s window: {most} (limit {SHARED.limit})"
        )
        print(f"{verdict(good)} {n} process(es): >= {TARGET_THROUGHPUT:.0%} and never over")
    return ok


async def main_async(quick: bool) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        n, repeats = (1000, 3) if quick else (3000, 5)
        ok_a = await part_a(Path(tmp), n, repeats)
        ok_b = await part_b(Path(tmp), 1.5 if quick else 3.0)
    return ok_a and ok_b


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer ops, shorter runs")
    parser.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(worker(json.loads(args.worker)))), flush=True)
        return
    print(f"store_cost: python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    sys.exit(0 if asyncio.run(main_async(args.quick)) else 1)


if __name__ == "__main__":
    main()
