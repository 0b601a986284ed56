"""Limiter cost: what one grant of the in-process strict limiter costs, in microseconds.

No network: this times `okx_async.LocalKeyLimiter` and `LocalLimiterBackend`
directly (private imports are fine in this micro-benchmark), against baselines timed in
the same run.

(b1) Uncontended: a slot is free and nobody waits, so `acquire()` never suspends (its
     fast path) and `release()` only starts the slot's cooldown. A huge limit with a short
     window (10**6 per 1 ms) keeps one key in that state for every iteration; each
     iteration does the same work as one of the first 10 requests of a real 10/2 s key
     (expired cooldowns are popped, never scanned). Loop of `await acquire(); await
     release()`. Baselines: `asyncio.Semaphore` acquire+release and
     `aiolimiter.AsyncLimiter` acquire (it has no release), both never blocking.
     Also shown: the real rate (10 / 2 s) through `LocalLimiterBackend`, a fresh key
     every 10 grants, as the client does it (a backend lookup per call, a limiter
     created per key, one cooldown timer armed per key).
(b2) 1,000 waiters: all 10 slots are held, 1,000 tasks queue on the key, then the slots
     are released and the queue drains (each task: acquire, release). The window is
     1 ns, so a released slot is free again at the next loop iteration: what is timed is
     the wait path itself (future, FIFO queue, timer, grant, task wake-up), not the
     window. Reported as CPU time per grant (`time.process_time`, so the event loop's
     sleeps, which round up to 1 ms in epoll, do not count) and wall time. Baseline: the
     same drain on an `asyncio.Semaphore(10)`, which hands a freed slot straight to the
     next waiter.
(c)  1,000 user IDs at once: 1,000 keys of `LocalLimiterBackend` (10 per 0.2 s), each
     taking its 10 slots and releasing them: total time and us per acquire+release. Then
     idle keys must be dropped: the backend's key count must return to 0 once the window
     has passed. Memory per busy key is measured with tracemalloc in a separate pass.

Target: <= 5 us per uncontended acquire+release (b1). (c) must drop every idle key.

Run:   python benchmarks/limiter_cost.py [--quick]
Takes about 20 s (about 6 s with --quick).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable

from _common import verdict

from okx_async import LimiterKey, LocalKeyLimiter, LocalLimiterBackend, RateLimit

try:
    from aiolimiter import AsyncLimiter
except ImportError:  # pragma: no cover - depends on the environment
    AsyncLimiter = None  # type: ignore[assignment,misc]

PATH = "/api/v5/account/set-riskOffset-amt"
TARGET_UNCONTENDED_US = 5.0
WAITERS = 1_000
USERS = 1_000


def key(subject: str = "uid:1") -> LimiterKey:
    return LimiterKey("bench", subject, PATH)


async def per_op_us(loop_body: Callable[[int], Awaitable[None]], n: int, repeats: int) -> float:
    """Median over `repeats` of the wall time of `loop_body(n)`, in microseconds per op."""
    samples = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        await loop_body(n)
        samples.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(samples)


# -- (b1) uncontended ----------------------------------------------------------------


async def local_fast_path(n: int) -> None:
    limiter = LocalKeyLimiter(key(), RateLimit(1_000_000, 0.001, "user"))
    acquire, release = limiter.acquire, limiter.release
    for _ in range(n):
        await release(await acquire())


async def backend_real_rate(n: int) -> None:
    backend = LocalLimiterBackend()
    rate = RateLimit(10, 2.0, "user")
    for k in range(n // 10):
        lk = key(f"uid:{k}")
        for _ in range(10):
            limiter = backend.limiter(lk, rate)
            await limiter.release(await limiter.acquire())


async def semaphore_loop(n: int) -> None:
    sem = asyncio.Semaphore(10)
    for _ in range(n):
        await sem.acquire()
        sem.release()


async def aiolimiter_loop(n: int) -> None:
    assert AsyncLimiter is not None
    limiter = AsyncLimiter(1e12, 1.0)  # never out of capacity
    for _ in range(n):
        await limiter.acquire()


# -- (b2) 1,000 waiters --------------------------------------------------------------


async def drain(
    hold: Callable[[], Awaitable[Callable[[], Awaitable[None]]]],
    worker: Callable[[], Awaitable[None]],
    waiters: int,
) -> tuple[float, float, float]:
    """Hold every slot, queue `waiters` workers, free the slots, time the drain.

    Returns (enqueue CPU us per waiter, drain CPU us per grant, drain wall us per grant).
    `hold()` takes all slots and returns a coroutine function that frees them.
    """
    free_all = await hold()
    started = 0

    async def one() -> None:
        nonlocal started
        started += 1
        await worker()

    gc.collect()
    cpu0 = time.process_time()
    tasks = [asyncio.create_task(one()) for _ in range(waiters)]
    await asyncio.sleep(0)  # the new tasks run first: each runs to its first suspension
    assert started == waiters
    cpu1, wall1 = time.process_time(), time.perf_counter()
    await free_all()
    await asyncio.gather(*tasks)
    cpu2, wall2 = time.process_time(), time.perf_counter()
    return (
        (cpu1 - cpu0) / waiters * 1e6,
        (cpu2 - cpu1) / waiters * 1e6,
        (wall2 - wall1) / waiters * 1e6,
    )


async def drain_local(waiters: int) -> tuple[float, float, float]:
    limiter = LocalKeyLimiter(key(), RateLimit(10, 1e-9, "user"), max_pending=waiters + 1)

    async def hold() -> Callable[[], Awaitable[None]]:
        leases = [await limiter.acquire() for _ in range(10)]
        assert limiter.snapshot().in_flight == 10

        async def free_all() -> None:
            for lease in leases:
                await limiter.release(lease)

        return free_all

    async def worker() -> None:
        await limiter.release(await limiter.acquire())

    result = await drain(hold, worker, waiters)
    snap = limiter.snapshot()
    assert snap.queued == 0 and snap.in_flight == 0, snap
    return result


async def drain_semaphore(waiters: int) -> tuple[float, float, float]:
    sem = asyncio.Semaphore(10)

    async def hold() -> Callable[[], Awaitable[None]]:
        for _ in range(10):
            await sem.acquire()

        async def free_all() -> None:
            for _ in range(10):
                sem.release()

        return free_all

    async def worker() -> None:
        async with sem:
            pass

    return await drain(hold, worker, waiters)


async def median_drain(
    run: Callable[[int], Awaitable[tuple[float, float, float]]], repeats: int
) -> tuple[float, float, float]:
    samples = [await run(WAITERS) for _ in range(repeats)]
    e, d, w = zip(*samples, strict=True)
    return statistics.median(e), statistics.median(d), statistics.median(w)


# -- (c) 1,000 user IDs --------------------------------------------------------------


async def many_users(
    backend: LocalLimiterBackend, users: int, rate: RateLimit, start: int = 0
) -> float:
    """Every user takes its `rate.limit` slots at once, then frees them; seconds taken."""

    async def user(k: int) -> None:
        lk = key(f"uid:{start + k}")
        limiter = backend.limiter(lk, rate)
        leases = [await limiter.acquire() for _ in range(rate.limit)]
        for lease in leases:
            await limiter.release(lease)

    gc.collect()
    t0 = time.perf_counter()
    await asyncio.gather(*(user(k) for k in range(users)))
    return time.perf_counter() - t0


async def wait_until_empty(backend: LocalLimiterBackend, timeout: float) -> float | None:
    """Seconds until the backend holds no key, or None if it still does after `timeout`."""
    t0 = time.perf_counter()
    while len(backend):
        if time.perf_counter() - t0 > timeout:
            return None
        await asyncio.sleep(0.005)
    return time.perf_counter() - t0


# -- main ----------------------------------------------------------------------------


async def main_async(quick: bool) -> None:
    n = 20_000 if quick else 200_000
    repeats = 3 if quick else 7
    print(f"limiter_cost: {n} iterations x {repeats} repeats (median), python event loop")

    # (b1)
    local = await per_op_us(local_fast_path, n, repeats)
    real = await per_op_us(backend_real_rate, n, repeats)
    sem = await per_op_us(semaphore_loop, n, repeats)
    aio = await per_op_us(aiolimiter_loop, n, repeats) if AsyncLimiter is not None else None
    print("\n(b1) uncontended acquire+release, wall time per op")
    print(f"{'what':<58} {'us/op':>7} {'vs Semaphore':>12} {'vs aiolimiter':>13}")
    rows = [
        ("LocalKeyLimiter fast path (10**6 per 1 ms, one key)", local),
        ("LocalLimiterBackend, 10/2 s, fresh key every 10 grants", real),
        ("baseline: asyncio.Semaphore acquire+release", sem),
    ]
    if aio is not None:
        rows.append(("baseline: aiolimiter.AsyncLimiter acquire", aio))
    for name, us in rows:
        vs_aio = f"{us / aio:.2f}x" if aio else "-"
        print(f"{name:<58} {us:>7.3f} {us / sem:>11.2f}x {vs_aio:>13}")
    if aio is None:
        print("aiolimiter is not installed: its baseline is skipped")
    # The real-rate keys armed cooldown timers (2 s): let them fire and drop their keys
    # now, not in the middle of the next measurement.
    await asyncio.sleep(2.2)

    # (b2)
    d_repeats = 3 if quick else 5
    local_e, local_d, local_w = await median_drain(drain_local, d_repeats)
    sem_e, sem_d, sem_w = await median_drain(drain_semaphore, d_repeats)
    print(f"\n(b2) {WAITERS} waiters queued on one key, then drained (median of {d_repeats})")
    print(f"{'what':<44} {'enqueue CPU us':>14} {'grant CPU us':>12} {'grant wall us':>13}")
    print(
        f"{'LocalKeyLimiter (10 slots, 1 ns window)':<44} {local_e:>14.2f} {local_d:>12.2f} "
        f"{local_w:>13.2f}"
    )
    print(f"{'baseline: asyncio.Semaphore(10)':<44} {sem_e:>14.2f} {sem_d:>12.2f} {sem_w:>13.2f}")
    print(
        f"{'ratio':<44} {local_e / sem_e:>13.2f}x {local_d / sem_d:>11.2f}x "
        f"{local_w / sem_w:>12.2f}x"
    )
    print(
        "(enqueue includes creating and first-running each task; grant includes the "
        "worker's release and its task wake-up)"
    )

    # (c)
    rate = RateLimit(10, 0.2, "user")
    backend = LocalLimiterBackend()
    took = await many_users(backend, USERS, rate)
    busy_keys = len(backend)
    dropped_after = await wait_until_empty(backend, timeout=10 * rate.window)
    # Memory, in a separate pass (tracemalloc slows everything down).
    mem_backend = LocalLimiterBackend()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    await many_users(mem_backend, USERS, rate, start=USERS)
    busy_bytes = tracemalloc.get_traced_memory()[0] - base
    await wait_until_empty(mem_backend, timeout=10 * rate.window)
    gc.collect()
    idle_bytes = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    ops = USERS * rate.limit
    print(f"\n(c) {USERS} user IDs at once, {rate.limit} slots each, window {rate.window:g} s")
    print(f"total {took * 1000:.1f} ms for {ops} acquire+release = {took / ops * 1e6:.2f} us/op")
    print(
        f"keys right after: {busy_keys}; memory held by the busy keys "
        f"{busy_bytes / 1024:.0f} KiB ({busy_bytes / USERS:.0f} B/key); "
        f"after they went idle: {idle_bytes / 1024:.0f} KiB"
    )
    if dropped_after is None:
        print(f"keys still held after {10 * rate.window:g} s: {len(backend)}")
    else:
        print(
            f"all keys dropped {dropped_after * 1000:.0f} ms after the last release "
            f"(window {rate.window * 1000:.0f} ms)"
        )

    print()
    print(
        f"{verdict(local <= TARGET_UNCONTENDED_US)} uncontended acquire+release: "
        f"{local:.2f} us (target <= {TARGET_UNCONTENDED_US:g} us); "
        f"{local / sem:.2f}x asyncio.Semaphore"
        + (f", {local / aio:.2f}x aiolimiter" if aio else "")
    )
    print(
        f"INFO with {WAITERS} waiters: {local_d:.2f} us CPU per grant, "
        f"{local_d / sem_d:.2f}x asyncio.Semaphore (no target)"
    )
    print(
        f"{verdict(busy_keys == USERS and dropped_after is not None)} {USERS} user IDs: "
        f"{took / ops * 1e6:.2f} us/op; key count {busy_keys} -> 0 "
        + (f"within {dropped_after * 1000:.0f} ms" if dropped_after is not None else "NOT reached")
        + " of going idle"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    asyncio.run(main_async(args.quick))


if __name__ == "__main__":
    main()
