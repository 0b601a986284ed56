"""Many users in one process under a 1,024-descriptor limit.

1,000 user IDs (simulator accounts, one client each), each setting 5 currencies at once:
5,000 calls in one gather, in a process whose RLIMIT_NOFILE is 1,024 (the common
`ulimit -n`). The simulator runs in another process (its descriptors are its own; its
limit is raised so it can accept whatever the client opens) with OKX's real limits, so
5 calls per user fit one window and nothing waits for the rate limiter.

The client side runs in a child process (`--child`), so `--baseline-src DIR` can run
the very same measurement against another checkout's `okx_async` (e.g. main's, to put
today's figures beside this tree's) with DIR first on PYTHONPATH.

Reported per run: calls that succeeded, errors by type, peak open descriptors and peak
open sockets (sampled from /proc/self/fd every 5 ms), peak RSS (VmHWM), wall time and
calls/s. Targets (this tree): every call succeeds; at most 500 descriptors open.

Run:   python benchmarks/many_users.py [--users N] [--ccys N] [--baseline-src DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from _common import serve_simulator, verdict

FD_LIMIT = 1024
TARGET_MAX_FDS = 500
CCYS = ("BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "LTC", "DOT")
SAMPLE_INTERVAL = 0.005
STARTUP_TIMEOUT = 30.0


def user_key(u: int) -> tuple[str, str, str, str]:
    return str(700_000 + u), f"many-key-{u}", f"many-secret-{u}", "many-pass"


# -- the simulator process -------------------------------------------------------------


def simulator_process(conn: Connection, users: int) -> None:
    from okx_async.simulator import SimKey, SimulatorConfig, SimUser

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # accept all the client opens
    sim_users = []
    for u in range(users):
        uid, api_key, secret, passphrase = user_key(u)
        sim_users.append(SimUser(uid, [SimKey(api_key, secret, passphrase)]))

    asyncio.run(serve_simulator(conn, SimulatorConfig(users=sim_users)))


# -- the client process ------------------------------------------------------------------


class _Reserve:
    """One descriptor held back, so that listing /proc/self/fd works even when the client
    has taken all the others (the listing needs one; nothing else runs in between)."""

    fd = -1


def open_fds() -> tuple[int, int]:
    """(open descriptors, of which sockets) of this process, the listing's own included in
    place of the reserved one."""
    if _Reserve.fd >= 0:
        os.close(_Reserve.fd)
    try:
        names = os.listdir("/proc/self/fd")
    finally:
        _Reserve.fd = os.open(os.devnull, os.O_RDONLY)
    sockets = 0
    for name in names:
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                sockets += 1
        except OSError:
            pass  # closed meanwhile (or the listing's own descriptor)
    return len(names), sockets


def peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def client_run(base_url: str, users: int, ccys: int) -> dict[str, Any]:
    import okx_async
    from okx_async import OKXClient

    clients = []
    for u in range(users):
        uid, api_key, secret, passphrase = user_key(u)
        clients.append(
            OKXClient(
                api_key=api_key,
                secret_key=secret,
                passphrase=passphrase,
                base_url=base_url,
                user_id=uid,
            )
        )
    _Reserve.fd = os.open(os.devnull, os.O_RDONLY)
    peak = {"fds": 0, "sockets": 0}
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            fds, sockets = open_fds()
            peak["fds"] = max(peak["fds"], fds)
            peak["sockets"] = max(peak["sockets"], sockets)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_INTERVAL)

    sampler = asyncio.ensure_future(sample())
    started = time.perf_counter()
    results = await asyncio.gather(
        *(c.set_risk_offset_amount(ccy, "1.5") for c in clients for ccy in CCYS[:ccys]),
        return_exceptions=True,
    )
    wall = time.perf_counter() - started
    stop.set()
    await sampler
    for client in clients:
        await client.close()
    errors = Counter(type(r).__name__ for r in results if isinstance(r, BaseException))
    calls = len(results)
    return {
        "okx_async": str(Path(okx_async.__file__).parent),
        "calls": calls,
        "succeeded": calls - sum(errors.values()),
        "errors": dict(errors),
        "peak_fds": peak["fds"],
        "peak_sockets": peak["sockets"],
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "wall_s": round(wall, 3),
        "calls_per_s": round(calls / wall, 1),
    }


def child_main(args: argparse.Namespace) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(FD_LIMIT, hard), hard))
    result = asyncio.run(client_run(args.base_url, args.users, args.ccys))
    print(json.dumps(result))


def run_child(base_url: str, users: int, ccys: int, src: str | None) -> dict[str, Any]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    argv = [sys.executable, __file__, "--child", "--base-url", base_url]
    argv += ["--users", str(users), "--ccys", str(ccys)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        start = done.stderr.find("Traceback")
        raise RuntimeError(f"the client process failed:\n{done.stderr[start:][:3000]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def show(label: str, r: dict[str, Any], sim_before: dict[str, Any], sim_after: dict[str, Any]):
    errors = ", ".join(f"{k} {v}" for k, v in sorted(r["errors"].items())) or "none"
    print(f"{label}  ({r['okx_async']})")
    print(f"  calls succeeded       {r['succeeded']:>7} of {r['calls']}   errors: {errors}")
    print(f"  peak open descriptors {r['peak_fds']:>7}   peak open sockets {r['peak_sockets']}")
    print(f"  peak RSS              {r['peak_rss_mib']:>7.1f} MiB")
    print(f"  wall                  {r['wall_s']:>7.2f} s   {r['calls_per_s']:.0f} calls/s")
    requests = sim_after["requests"] - sim_before["requests"]
    refused = sim_after["rate_limited"] - sim_before["rate_limited"]
    print(f"  simulator received    {requests:>7} requests, {refused} x 50011")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--ccys", type=int, default=5, choices=range(1, len(CCYS) + 1))
    parser.add_argument("--baseline-src", help="another checkout's root, run the same way")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return

    ctx = multiprocessing.get_context("spawn")
    conn, child = ctx.Pipe()
    process = ctx.Process(target=simulator_process, args=(child, args.users), daemon=True)
    process.start()
    if not conn.poll(STARTUP_TIMEOUT):
        process.kill()
        raise SystemExit("the simulator process did not start")
    base_url = conn.recv()
    print(
        f"{args.users} users x {args.ccys} currencies at once = {args.users * args.ccys} calls, "
        f"client process RLIMIT_NOFILE {FD_LIMIT}, simulator in its own process"
    )
    try:
        runs = [("this tree", None)]
        if args.baseline_src:
            runs.append(("baseline", str(Path(args.baseline_src).resolve())))
        ours: dict[str, Any] | None = None
        for label, src in runs:
            conn.send("stats")
            before = conn.recv()
            result = run_child(base_url, args.users, args.ccys, src)
            conn.send("stats")
            after = conn.recv()
            show(label, result, before, after)
            if ours is None:
                ours = result
            time.sleep(2.5)  # let every user's window pass before the next run
    finally:
        conn.send("stop")
        conn.recv()
        process.join(10)
    assert ours is not None
    ok = ours["succeeded"] == ours["calls"] and ours["peak_fds"] <= TARGET_MAX_FDS
    print(
        f"{verdict(ok)}: every call succeeded ({ours['succeeded']}/{ours['calls']}) with at "
        f"most {TARGET_MAX_FDS} descriptors open (peak {ours['peak_fds']})"
    )


if __name__ == "__main__":
    main()
