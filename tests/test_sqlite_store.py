"""The sqlite limiter store: the lease rules on a virtual clock, shared across backends
(as separate processes would), crashed holders, replaced files, and one timeline replayed
through every store.

Timing tests pass the virtual loop's clock as the store's wall clock, so every grant time
is exact and nothing sleeps for real. Real OS processes run where the claim is about them
(a holder killed with SIGKILL).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sim_support import client_of, served
from virtual_time import run_virtual

from okx_async import (
    DeadlineExceededError,
    InvalidInputError,
    LimiterBackend,
    LimiterUnavailableError,
    LocalLimiterBackend,
    OKXClient,
    QueueFullError,
    SqliteLimiterBackend,
    limiter_from_url,
)
from okx_async._defaults import RATE_LIMIT_RECOVERY_WINDOWS, SET_RISK_OFFSET_PATH
from okx_async._limits import Lease, LimiterKey, RateLimit
from okx_async.simulator import SimKey, Simulator, SimulatorConfig, SimulatorServer, SimUser

KEY = LimiterKey("www.okx.com", "uid:42", SET_RISK_OFFSET_PATH)
RATE = RateLimit(3, 2.0, "user")
ROOT = Path(__file__).resolve().parent.parent


def now() -> float:
    return asyncio.get_running_loop().time()


def sqlite_backend(path: Path, **kwargs: Any) -> SqliteLimiterBackend:
    """A store on the running (virtual) loop's clock. A test's file is new but has no
    history: not held (test_a_new_file_starts_held covers the hold)."""
    kwargs.setdefault("hold_new_file", False)
    return SqliteLimiterBackend(path, clock=asyncio.get_running_loop().time, **kwargs)


async def grant_times(limiter: Any, n: int, hold: float) -> list[float]:
    """`n` callers at once; each holds its slot `hold` seconds. Their grant times."""
    times: list[float] = []

    async def one() -> None:
        lease = await limiter.acquire()
        times.append(now())
        await asyncio.sleep(hold)
        await limiter.release(lease)

    await asyncio.gather(*(one() for _ in range(n)))
    return times


# -- lease rules on a virtual clock --------------------------------------------------------


def test_slots_are_held_in_flight_and_one_window_after_release(tmp_path: Path) -> None:
    async def main() -> list[float]:
        async with sqlite_backend(tmp_path / "l.db") as backend:
            return await grant_times(backend.limiter(KEY, RATE), 7, hold=0.25)

    # Three at once; each frees at release (0.25) + window; pacing (burst 3) allows it.
    assert run_virtual(main) == [0.0, 0.0, 0.0, 2.25, 2.25, 2.25, 4.5]


def test_a_wall_clock_stepped_back_stalls_no_longer_than_a_window(tmp_path: Path) -> None:
    """Times in the file are wall-clock times. After a step back of 20 s a slot that
    cools until 2.25 (old clock) looks 22 s away; no rule keeps one more than a window
    ahead, so it is taken as at most one window away (never less than the truth)."""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        step = [0.0]
        async with SqliteLimiterBackend(
            tmp_path / "l.db", clock=lambda: loop.time() - step[0], hold_new_file=False
        ) as backend:
            limiter = backend.limiter(KEY, RATE)
            first = await grant_times(limiter, 3, hold=0.25)  # cooling until 2.25
            step[0] = 20.0  # the wall clock jumps back 20 s at 0.25
            return first + await grant_times(limiter, 3, hold=0.0)

    granted = run_virtual(main)
    assert granted[:3] == [0.0, 0.0, 0.0]
    # At most a window after the step (0.25 + 2.0), not 22 s later; never before 2.25,
    # when the slots really free (the step is not known to be one).
    assert [round(t, 6) for t in granted[3:]] == [2.25, 2.25, 2.25]


def test_fifo_and_deadline_refused_at_once_without_taking_a_slot(tmp_path: Path) -> None:
    async def main() -> None:
        async with sqlite_backend(tmp_path / "l.db") as backend:
            limiter = backend.limiter(KEY, RATE)
            held = [await limiter.acquire() for _ in range(3)]
            order: list[str] = []

            async def waiter(name: str) -> None:
                lease = await limiter.acquire()
                order.append(f"{name}@{now():g}")
                await limiter.release(lease)

            tasks = [asyncio.create_task(waiter(n)) for n in "abc"]
            await asyncio.sleep(0.5)
            with pytest.raises(DeadlineExceededError):
                await limiter.acquire(deadline=now() + 1.0)  # slots free at 2.5 at best
            assert now() == 0.5  # refused at once, not at the deadline
            for lease in held:
                await limiter.release(lease)
            await asyncio.gather(*tasks)
            assert order == ["a@2.5", "b@2.5", "c@2.5"]

    run_virtual(main)


def test_a_crashed_holders_lease_is_in_flight_until_its_ttl(tmp_path: Path) -> None:
    async def main() -> None:
        async with sqlite_backend(tmp_path / "l.db", inflight_ttl=10.0) as backend:
            limiter = backend.limiter(KEY, RATE)
            for _ in range(3):
                await limiter.acquire()  # never released: the holder "died"
            lease = await limiter.acquire()
            assert now() == 10.0  # the TTL, not a window after anything

            await limiter.release(lease)

    run_virtual(main)


def test_50011_holds_a_window_halves_the_burst_and_recovers(tmp_path: Path) -> None:
    rate = RateLimit(8, 2.0, "user")  # interval 0.25

    async def main() -> None:
        async with sqlite_backend(tmp_path / "l.db") as backend:
            limiter = backend.limiter(KEY, rate)
            lease = await limiter.acquire()
            await limiter.release(lease)
            await limiter.on_rate_limited()
            await limiter.on_rate_limited()  # the same incident: halve once
            assert limiter.snapshot().burst == 4
            # Held until 2.0; then 4 at once, the rest paced 0.25 apart.
            times = await grant_times(limiter, 6, hold=0.0)
            assert times == [2.0, 2.0, 2.0, 2.0, 2.25, 2.5]
            await asyncio.sleep(RATE_LIMIT_RECOVERY_WINDOWS * rate.window)
            times = await grant_times(limiter, 8, hold=0.0)
            assert limiter.snapshot().burst == 8
            assert len(set(times)) == 1  # the whole burst again

    run_virtual(main)


def test_local_lease_records_stay_bounded(tmp_path: Path) -> None:
    """What this process remembers of its leases (for snapshots and re-registration)
    is pruned as they cool, snapshot or not."""

    async def main() -> None:
        async with sqlite_backend(tmp_path / "l.db") as backend:
            limiter = backend.limiter(KEY, RATE)
            for _ in range(200):
                await limiter.release(await limiter.acquire())
                await asyncio.sleep(1.0)
            assert len(limiter._cooling) <= RATE.limit

    run_virtual(main)


def test_queue_full(tmp_path: Path) -> None:
    async def main() -> None:
        async with sqlite_backend(tmp_path / "l.db", max_pending=1) as backend:
            limiter = backend.limiter(KEY, RateLimit(1, 2.0, "user"))
            await limiter.acquire()
            head = asyncio.create_task(limiter.acquire())
            second = asyncio.create_task(limiter.acquire())
            await asyncio.sleep(0)
            with pytest.raises(QueueFullError):
                await limiter.acquire()
            head.cancel()
            second.cancel()
            await asyncio.gather(head, second, return_exceptions=True)

    run_virtual(main)


def test_two_backends_on_one_file_share_the_budget_fifo(tmp_path: Path) -> None:
    """Two backends on one file behave as two processes: one budget, FIFO across them."""

    async def main() -> list[str]:
        path = tmp_path / "l.db"
        async with sqlite_backend(path) as a, sqlite_backend(path) as b:
            la, lb = a.limiter(KEY, RATE), b.limiter(KEY, RATE)
            held = [await la.acquire() for _ in range(3)]
            order: list[str] = []

            async def waiter(limiter: Any, name: str) -> None:
                lease = await limiter.acquire()
                order.append(f"{name}@{now():g}")
                await asyncio.sleep(0.1)
                await limiter.release(lease)

            tasks = []
            for limiter, name in ((lb, "b1"), (la, "a1"), (lb, "b2"), (la, "a2")):
                tasks.append(asyncio.create_task(waiter(limiter, name)))
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.5)
            for lease in held:
                await la.release(lease)
            await asyncio.gather(*tasks)
            return order

    order = run_virtual(main)
    # Three slots free at 2.54 for four waiters: the first three to arrive, whichever
    # backend they came through, get them; a2 (last) waits for the next free slot.
    assert sorted(order[:3]) == ["a1@2.54", "b1@2.54", "b2@2.54"], order
    assert order[3] == "a2@4.64", order


def test_a_head_whose_ticket_lapsed_is_not_blocked_by_its_own_followers(
    tmp_path: Path,
) -> None:
    """A head's ticket lapsed (its process stalled past the grace) while its followers'
    did not: asking again, it takes a ticket newer than theirs. Its followers cannot ask
    before it, so they must not count as ahead of it (else, with `limit` of them, every
    head waits for ever)."""

    async def main() -> list[str]:
        path = tmp_path / "l.db"
        async with sqlite_backend(path) as a, sqlite_backend(path) as b:
            la, lb = a.limiter(KEY, RATE), b.limiter(KEY, RATE)
            held = [await lb.acquire() for _ in range(3)]
            order: list[str] = []

            async def waiter(name: str) -> None:
                lease = await la.acquire()
                order.append(f"{name}@{now():g}")
                await la.release(lease)

            tasks = [asyncio.create_task(waiter(n)) for n in ("h", "f1", "f2", "f3")]
            await asyncio.sleep(0.1)
            wipe = sqlite3.connect(path, isolation_level=None)
            wipe.execute(
                "DELETE FROM ticket WHERE id = (SELECT id FROM ticket ORDER BY seq LIMIT 1)"
            )
            wipe.close()
            await asyncio.sleep(0.4)
            for lease in held:
                await lb.release(lease)  # the slots free at 2.5
            await asyncio.wait_for(asyncio.gather(*tasks), 20.0)
            return order

    assert run_virtual(main) == ["h@2.5", "f1@2.5", "f2@2.5", "f3@4.5"]


def test_a_waiting_head_of_another_process_is_not_overtaken(tmp_path: Path) -> None:
    """A head of process B waits with a ticket; a newcomer of process A asking later
    must see that ticket (the budget row counts a key's tickets, so the ticket table
    is read only when it has some) and let B's head take the first free slot."""

    async def main() -> list[str]:
        path = tmp_path / "l.db"
        async with sqlite_backend(path) as a, sqlite_backend(path) as b:
            la, lb = a.limiter(KEY, RATE), b.limiter(KEY, RATE)
            held = [await la.acquire() for _ in range(3)]
            order: list[str] = []

            async def waiter(limiter: Any, name: str) -> None:
                await limiter.acquire()  # held to the end: the store is closed then
                order.append(f"{name}@{now():g}")

            head = asyncio.create_task(waiter(lb, "b-head"))
            await asyncio.sleep(0.2)
            await la.release(held[0])  # cooling until 2.2
            await asyncio.sleep(0.1)
            newcomer = asyncio.create_task(waiter(la, "a-new"))
            await asyncio.sleep(3.0)
            for lease in held[1:]:
                await la.release(lease)
            await asyncio.wait_for(asyncio.gather(head, newcomer), 20.0)
            return order

    assert run_virtual(main) == ["b-head@2.2", "a-new@5.3"]


def remove_database(path: Path, suffixes: tuple[str, ...]) -> None:
    for suffix in suffixes:
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@pytest.mark.parametrize("suffixes", [("",), ("", "-wal", "-shm")], ids=["db", "db+wal+shm"])
def test_replaced_file_does_not_regrant_spent_slots(
    tmp_path: Path, suffixes: tuple[str, ...]
) -> None:
    async def main() -> None:
        path = tmp_path / "l.db"
        async with sqlite_backend(path) as a:
            la = a.limiter(KEY, RATE)
            leases = [await la.acquire() for _ in range(3)]
            await asyncio.sleep(0.5)
            for lease in leases[:2]:
                await la.release(lease)  # cooling until 2.5; the third still in flight
            remove_database(path, suffixes)
            # Another process creates the file afresh, knowing nothing.
            async with sqlite_backend(path) as b:
                lb = b.limiter(KEY, RATE)
                # This process notices the new file on its next operation: it
                # re-registers its live and cooling leases and holds the key a window.
                with pytest.raises(DeadlineExceededError):
                    await la.acquire(deadline=now() + 1.0)
                with pytest.raises(DeadlineExceededError):
                    await lb.acquire(deadline=now() + 1.0)
                lease = await lb.acquire()
                assert now() == 2.5  # the hold (0.5 + window) and the cooling slots
                await lb.release(lease)
                await la.release(leases[2])

    run_virtual(main)


def test_a_wiped_file_with_the_same_inode_is_detected(tmp_path: Path) -> None:
    async def main() -> None:
        path = tmp_path / "l.db"
        async with sqlite_backend(path) as a:
            la = a.limiter(KEY, RATE)
            leases = [await la.acquire() for _ in range(3)]
            for lease in leases:
                await la.release(lease)
            wipe = sqlite3.connect(path)
            wipe.executescript("DELETE FROM meta; DELETE FROM budget;")
            wipe.close()
            lease = await la.acquire()
            assert now() == 2.0  # not granted at once: the cooling leases are back
            await la.release(lease)

    run_virtual(main)


def test_a_new_file_starts_held_one_window(tmp_path: Path) -> None:
    """A file this store creates has no history: what was spent through a deleted file
    in the last window still counts at OKX, so every key starts held one window from
    the file's creation. A file that exists is not held again; `hold_new_file=False`
    (or `?hold_new_file=false` in the URL) opts out."""

    async def main() -> None:
        clock = asyncio.get_running_loop().time
        await asyncio.sleep(0.5)
        async with SqliteLimiterBackend(tmp_path / "new.db", clock=clock) as backend:
            limiter = backend.limiter(KEY, RATE)
            with pytest.raises(DeadlineExceededError):
                await limiter.acquire(deadline=now() + 1.0)
            assert now() == 0.5  # refused at once: nothing frees before 2.5
            assert limiter.snapshot().held_until == 2.5
            await asyncio.sleep(1.0)
            # A key first used later in the same new file is held until 2.5 too.
            other = backend.limiter(LimiterKey("www.okx.com", "uid:43", SET_RISK_OFFSET_PATH), RATE)
            times = await grant_times(other, 3, hold=0.0)
            assert times == [2.5, 2.5, 2.5]
        await asyncio.sleep(5.0)
        async with SqliteLimiterBackend(tmp_path / "new.db", clock=clock) as again:
            lease = await again.limiter(KEY, RATE).acquire()  # the file exists: no hold
            assert now() == 7.5
            await again.limiter(KEY, RATE).release(lease)
        url = limiter_from_url(f"sqlite://{tmp_path}/free.db?hold_new_file=false")
        assert isinstance(url, SqliteLimiterBackend)
        url._clock = clock
        async with url:
            lease = await url.limiter(KEY, RATE).acquire()
            assert now() == 7.5
            await url.limiter(KEY, RATE).release(lease)

    run_virtual(main)


@pytest.mark.parametrize("text", ["?hold_new_file=maybe", "?mode=ro", "?hold_new_file"])
def test_a_sqlite_url_takes_only_hold_new_file(text: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="hold_new_file"):
        limiter_from_url(f"sqlite://{tmp_path}/l.db{text}")
    held = limiter_from_url(f"sqlite://{tmp_path}/l.db?hold_new_file=TRUE")
    assert isinstance(held, SqliteLimiterBackend) and held._hold_new_file


async def test_sqlite_leases_are_in_the_slots_gauge(tmp_path: Path) -> None:
    """The OpenTelemetry gauge okx_async.limiter.slots.in_use counts this process's
    sqlite leases, in flight and cooling."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    backend = SqliteLimiterBackend(tmp_path / "l.db", hold_new_file=False)
    OKXClient(
        api_key="k",
        secret_key="s",
        passphrase="p",
        limiter=backend,
        meter_provider=MeterProvider(metric_readers=[reader]),
    )

    def gauge() -> int:
        data = reader.get_metrics_data()
        assert data is not None
        found = [
            point.value
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == "okx_async.limiter.slots.in_use"
            for point in metric.data.data_points
        ]
        assert len(found) == 1
        return int(found[0])

    limiter = backend.limiter(KEY, RATE)
    first, second = await limiter.acquire(), await limiter.acquire()
    await limiter.release(first)
    assert gauge() == 2  # one in flight, one cooling
    await limiter.release(second)
    await backend.limiter(KEY, RateLimit(5, 2.0, "user")).acquire()  # another budget
    assert gauge() == 3
    await backend.aclose()


def test_a_wiped_file_another_process_wrote_first_is_detected(tmp_path: Path) -> None:
    """The file is wiped and another process writes to it first (a new epoch): this
    process, whose next transaction reads only its budget row, still notices the other
    epoch, re-registers its cooling leases and holds its key a window."""

    async def main() -> None:
        path = tmp_path / "l.db"
        async with sqlite_backend(path) as a, sqlite_backend(path) as b:
            la, lb = a.limiter(KEY, RATE), b.limiter(KEY, RATE)
            for lease in [await la.acquire() for _ in range(3)]:
                await la.release(lease)  # cooling until 2.0
            wipe = sqlite3.connect(path)
            wipe.executescript("DELETE FROM meta; DELETE FROM budget;")
            wipe.close()
            other = b.limiter(LimiterKey("www.okx.com", "uid:43", SET_RISK_OFFSET_PATH), RATE)
            await other.release(await other.acquire())  # b writes a new epoch first
            lease = await la.acquire()
            assert now() == 2.0  # not granted at once: the cooling leases are back
            await la.release(lease)
            assert lb.key == KEY

    run_virtual(main)


def test_a_held_write_lock_is_waited_for_in_a_thread_not_on_the_loop(tmp_path: Path) -> None:
    """Another process holds the write lock: the transaction waits in a worker thread
    (the loop keeps running), fails after busy_timeout, and succeeds once it is free."""
    path = tmp_path / "l.db"

    async def main() -> None:
        async with SqliteLimiterBackend(path, busy_timeout=0.3) as backend:
            limiter = backend.limiter(KEY, RATE)
            await limiter.release(await limiter.acquire())  # the file exists now
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.01)

            task = asyncio.create_task(ticker())
            with pytest.raises(LimiterUnavailableError, match="locked"):
                await limiter.acquire()
            assert ticks >= 10  # the loop ran while the thread waited 0.3 s
            asyncio.get_running_loop().call_later(0.05, blocker.execute, "COMMIT")
            lease = await limiter.acquire()
            await limiter.release(lease)
            task.cancel()
            blocker.close()

    asyncio.run(main())


# -- real processes ------------------------------------------------------------------------

_HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from okx_async import SqliteLimiterBackend
    from okx_async._limits import LimiterKey, RateLimit

    async def main():
        backend = SqliteLimiterBackend(sys.argv[1], clock=lambda: 1000.0, hold_new_file=False)
        limiter = backend.limiter(LimiterKey(*sys.argv[2:5]), RateLimit(3, 2.0, "user"))
        for _ in range(3):
            await limiter.acquire()
        print("held", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def test_leases_of_a_killed_process_expire(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), *KEY],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate()
    clock = [1001.0]  # the holder granted at 1000 with the default TTL of 60 s

    async def main() -> None:
        async with SqliteLimiterBackend(path, clock=lambda: clock[0]) as backend:
            limiter = backend.limiter(KEY, RATE)
            with pytest.raises(DeadlineExceededError):
                await limiter.acquire(deadline=asyncio.get_running_loop().time() + 5)
            clock[0] = 1060.0
            lease = await limiter.acquire(deadline=asyncio.get_running_loop().time() + 5)
            await limiter.release(lease)

    asyncio.run(main())


def test_a_new_file_locked_by_another_process_is_waited_for_off_the_loop(
    tmp_path: Path,
) -> None:
    """Another process holds a fresh file's lock while this one opens it: the open is
    contention to wait out in a worker thread, never an outage and never a blocked loop."""
    import threading

    path = tmp_path / "locked.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")  # a rollback-journal file, locked for writing

    async def main() -> int:
        threading.Timer(0.4, lambda: other.execute("COMMIT")).start()
        ticks = 0

        async def ticking() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.ensure_future(ticking())
        async with SqliteLimiterBackend(path, busy_timeout=5.0) as backend:
            limiter = backend.limiter(KEY, RATE)
            await limiter.release(await limiter.acquire())
        ticker.cancel()
        return ticks

    try:
        ticks = asyncio.run(main())
    finally:
        other.close()
    assert ticks >= 20  # the loop ran through the 0.4 s the file was locked


# -- URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://relative/limits.db",
        "sqlite:limits.db",
        "sqlite:///x.db?mode=ro",
        "postgres://admin:hunter2pw@db/limits",
        "redis:/admin:hunter2pw@host",  # no "//": no netloc to mask, so not shown at all
        "memory://somewhere",
        "limits.db",
    ],
)
def test_a_bad_url_says_what_to_pass_and_hides_the_password(url: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        limiter_from_url(url)
    message = str(info.value)
    assert "hunter2pw" not in message
    assert "sqlite:///" in message


def test_urls_pick_the_store(tmp_path: Path) -> None:
    assert isinstance(limiter_from_url("memory://"), LocalLimiterBackend)
    backend = limiter_from_url(f"sqlite://{tmp_path}/l.db")
    assert isinstance(backend, SqliteLimiterBackend)
    assert backend.path == f"{tmp_path}/l.db"
    redis = pytest.importorskip("redis")
    assert redis is not None
    from okx_async import RedisLimiterBackend

    assert isinstance(limiter_from_url("redis://:pw@localhost:1/0"), RedisLimiterBackend)


def test_client_limiter_url_and_its_alias(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = {"api_key": "k", "secret_key": "s", "passphrase": "p"}
    url = f"sqlite://{tmp_path}/l.db"
    with pytest.raises(InvalidInputError, match="not both"):
        OKXClient(**creds, limiter_url=url, redis_url=url)
    assert isinstance(OKXClient(**creds, limiter_url=url)._budgets.backend, SqliteLimiterBackend)
    assert isinstance(OKXClient(**creds, redis_url=url)._budgets.backend, SqliteLimiterBackend)
    monkeypatch.setenv("OKX_ASYNC_LIMITER_URL", url)
    assert isinstance(OKXClient(**creds)._budgets.backend, SqliteLimiterBackend)
    monkeypatch.setenv("OKX_ASYNC_LIMITER_URL", "memory://")
    assert OKXClient(**creds)._budgets.backend is None  # the loop's shared in-process store
    monkeypatch.setenv("OKX_ASYNC_LIMITER_URL", "ftp://u:secretpw@x")
    with pytest.raises(InvalidInputError) as info:
        OKXClient(**creds)
    assert "secretpw" not in str(info.value)
    assert str(info.value).startswith("OKX_ASYNC_LIMITER_URL: unknown limiter store 'ftp'")
    monkeypatch.delenv("OKX_ASYNC_LIMITER_URL")
    monkeypatch.setenv("OKX_ASYNC_REDIS_URL", "sqlite://relative.db")
    with pytest.raises(InvalidInputError, match=r"^OKX_ASYNC_REDIS_URL: a sqlite limiter URL"):
        OKXClient(**creds)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///", "names a file, not a directory"),
        ("sqlite:///tmp/", "names a file, not a directory, as sqlite:///ABSOLUTE/PATH, got "),
        ("sqlite:///tmp", "names a file, not a directory"),
        ("sqlite:///:memory:", "would be one process's store, not a shared one: pass memory://"),
        ("sqlite:///tmp/x.db#frag", "takes no #fragment"),
    ],
)
def test_a_sqlite_url_naming_no_shareable_file_is_refused_at_once(url: str, message: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        limiter_from_url(url)
    assert message in str(info.value)
    assert "absolute file path" not in str(info.value)
    with pytest.raises(InvalidInputError, match="is a directory"):
        SqliteLimiterBackend("/tmp")


# -- one timeline through every store -------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """At `at`: a caller `name` acquires (holding the slot `hold` s, `deadline` relative
    to `at`), or OKX answers 50011 (`name` == "50011")."""

    at: float
    name: str
    hold: float = 0.0
    deadline: float | None = None


TIMELINE = [
    *(Step(0.0, f"a{i}", hold=0.3 + 0.1 * i) for i in range(6)),  # 4 at once, 2 wait
    Step(1.0, "50011"),  # burst 4 -> 2, hold until 3.0
    Step(1.1, "late", deadline=0.5),  # refused: nothing frees before 3.0
    Step(1.2, "b0", hold=1.0),
    Step(1.2, "b1", hold=0.0),
    Step(2.9, "50011"),  # the same incident (still held): no second halving
    Step(8.0, "c0"),
    Step(8.0, "c1"),
    Step(8.0, "c2"),  # burst 2: paced 0.5 apart after two
    Step(22.7, "e0"),
    Step(22.7, "e1"),
    Step(22.7, "e2"),  # paced to 23.2 at burst 2; the burst doubles at 22.9 (clean since 2.9)
    *(Step(40.0, f"d{i}", hold=0.2) for i in range(6)),  # recovered: burst 4 again
]
LIMIT4 = RateLimit(4, 2.0, "user")

StoreFactory = Callable[[Path], Any]


@asynccontextmanager
async def memory_store(_: Path) -> AsyncIterator[LimiterBackend]:
    yield LocalLimiterBackend()


@asynccontextmanager
async def sqlite_store(path: Path) -> AsyncIterator[LimiterBackend]:
    async with sqlite_backend(path / "l.db") as backend:
        yield backend


# Every store joins here: name -> async context manager yielding a backend on the running
# loop. A store whose clock is the loop's (memory; sqlite given `clock=loop.time`) replays on
# the virtual loop exactly. Redis (given `clock=loop.time`, on a loop that holds its clock
# while redis-server answers) replays TIMELINE in test_redis_timeline.py.
STORES: dict[str, StoreFactory] = {"memory": memory_store, "sqlite": sqlite_store}


async def replay(backend: LimiterBackend, timeline: list[Step]) -> list[tuple[str, str]]:
    limiter = backend.limiter(KEY, LIMIT4)
    start = now()
    outcome: list[tuple[str, str]] = []

    async def caller(step: Step) -> None:
        deadline = None if step.deadline is None else now() + step.deadline
        try:
            lease: Lease = await limiter.acquire(deadline=deadline)
        except DeadlineExceededError:
            outcome.append((step.name, f"refused@{now() - start:.6f}"))
            return
        outcome.append((step.name, f"granted@{now() - start:.6f}"))
        await asyncio.sleep(step.hold)
        await limiter.release(lease)

    tasks = []
    for step in timeline:
        await asyncio.sleep(max(0.0, start + step.at - now()))
        if step.name == "50011":
            await limiter.on_rate_limited()
        else:
            tasks.append(asyncio.create_task(caller(step)))
            await asyncio.sleep(0)  # let it queue before the next caller of this instant
    await asyncio.gather(*tasks)
    return outcome


@pytest.mark.parametrize("store", sorted(STORES))
def test_one_timeline_gives_the_same_grants_in_every_store(store: str, tmp_path: Path) -> None:
    async def main(factory: StoreFactory) -> list[tuple[str, str]]:
        async with factory(tmp_path) as backend:
            return await replay(backend, TIMELINE)

    expected = run_virtual(lambda: main(memory_store))
    assert expected[:4] == [(f"a{i}", "granted@0.000000") for i in range(4)]
    assert ("late", "refused@1.100000") in expected
    assert ("e2", "granted@22.900000") in expected  # woken by the burst's recovery
    got = run_virtual(lambda: main(STORES[store]))
    assert got == expected


# -- real `okx-async apply` processes against the simulator --------------------------------

SET_PATH = SET_RISK_OFFSET_PATH
UID = "7001"
SIM_KEYS = [SimKey(f"proc-key-{i}", f"proc-secret-{i}-xyz", f"proc-pass-{i}-xyz") for i in range(3)]
CCYS = [f"C{i:02d}" for i in range(30)]


def cli_env(tmp_path: Path, base_url: str, key: SimKey) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OKX_")}
    env.update(
        OKX_API_KEY=key.api_key,
        OKX_SECRET_KEY=key.secret_key,
        OKX_PASSPHRASE=key.passphrase,
        OKX_BASE_URL=base_url,
        XDG_CONFIG_HOME=str(tmp_path / "config"),  # no profiles file
        XDG_STATE_HOME=str(tmp_path / "state"),  # the default limiter file goes here
    )
    return env


async def apply_run(
    tmp_path: Path, base_url: str, key: SimKey, ccys: list[str], *flags: str
) -> asyncio.subprocess.Process:
    plan = tmp_path / f"plan-{ccys[0]}.csv"
    plan.write_text("profile,ccy,amount\n" + "".join(f"default,{c},1\n" for c in ccys))
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "okx_async",
        "apply",
        "-q",
        str(plan),
        *flags,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(tmp_path, base_url, key),
    )


async def finish(proc: asyncio.subprocess.Process) -> None:
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, (out + err).decode()[-2000:]


def sim_for_processes() -> Simulator:
    user = SimUser(uid=UID, keys=SIM_KEYS, margin_ccys=frozenset(CCYS))
    return Simulator(SimulatorConfig(users=[user], latency=(0.0, 0.02)))


@pytest.mark.parametrize("limiter", ["default", "memory://"])
async def test_apply_runs_back_to_back_share_the_budget(limiter: str, tmp_path: Path) -> None:
    """Two `okx-async apply` runs of one user, the second started as the first ends.
    With the CLI's default store (a sqlite file in the state directory) the second run
    waits for the first one's slots: no 50011. With `memory://` (each process on its
    own, as before the sqlite store) the second run bursts into the same window."""
    simulator = sim_for_processes()
    flags = () if limiter == "default" else ("--limiter-url", limiter)
    async with SimulatorServer(simulator) as server:
        first = await apply_run(tmp_path, server.base_url, SIM_KEYS[0], CCYS[:10], *flags)
        await finish(first)
        second = await apply_run(tmp_path, server.base_url, SIM_KEYS[1], CCYS[10:20], *flags)
        await finish(second)
    sent = sorted(r.arrival for r in simulator.records if r.path == SET_PATH)
    print(f"\nback to back, {limiter}: {simulator.rate_limited_count()} x 50011")
    if limiter == "default":
        assert (tmp_path / "state" / "okx-async" / "limits.db").exists()
        assert simulator.rate_limited_count() == 0
        assert simulator.max_in_window(UID, SET_PATH) <= 10
        assert len(sent) == 20
    else:
        # The scenario is sharp only if the second run started inside the first one's
        # window (a slow machine may start Python more slowly than that).
        if sent[10] - sent[0] >= 2.0:  # pragma: no cover - depends on the machine
            pytest.skip("the second process started more than a window after the first")
        assert simulator.rate_limited_count() > 0


@pytest.mark.parametrize("limiter", ["sqlite", "memory"])
async def test_three_apply_processes_at_once_share_the_budget(limiter: str, tmp_path: Path) -> None:
    """Three `okx-async apply` processes of one user at once (different API keys), 10
    rows each, through one sqlite file: no 50011 at the simulator. The memory:// case
    shows the test's teeth: each process alone spends a whole window's budget."""
    simulator = sim_for_processes()
    url = f"sqlite://{tmp_path}/shared.db" if limiter == "sqlite" else "memory://"
    async with SimulatorServer(simulator) as server:
        procs = [
            await apply_run(
                tmp_path, server.base_url, key, CCYS[10 * i : 10 * i + 10], "--limiter-url", url
            )
            for i, key in enumerate(SIM_KEYS)
        ]
        for proc in procs:
            await finish(proc)
    sent = [r for r in simulator.records if r.path == SET_PATH]
    print(f"\nthree at once, {limiter}: {simulator.rate_limited_count()} x 50011")
    if limiter == "sqlite":
        assert simulator.rate_limited_count() == 0
        assert simulator.max_in_window(UID, SET_PATH) <= 10
        assert sum(r.code == "0" for r in sent) == 30
    else:
        assert simulator.rate_limited_count() > 0


@pytest.mark.parametrize("hold", ["default", "hold_new_file=false"])
async def test_a_deleted_file_does_not_regrant_the_last_processs_window(
    hold: str, tmp_path: Path
) -> None:
    """One `okx-async apply` process spends the window's 10 and exits; the limiter file
    is deleted while no process runs; the next process on the same path must not send
    in the rest of that window: the new file starts held one window. With
    `?hold_new_file=false` (how the store behaved before the hold) it bursts at once
    into the same window and OKX answers 50011."""
    simulator = sim_for_processes()
    path = tmp_path / "limits.db"
    url = f"sqlite://{path}" + ("" if hold == "default" else "?hold_new_file=false")
    async with SimulatorServer(simulator) as server:
        first = await apply_run(
            tmp_path, server.base_url, SIM_KEYS[0], CCYS[:10], "--limiter-url", url
        )
        await finish(first)
        remove_database(path, ("", "-wal", "-shm"))
        second = await apply_run(
            tmp_path, server.base_url, SIM_KEYS[1], CCYS[10:20], "--limiter-url", url
        )
        await finish(second)
    sent = sorted(r.arrival for r in simulator.records if r.path == SET_PATH)
    # Sharp only if the second run could have sent inside the first one's window.
    if sent[10] - sent[9] >= 2.0 and hold != "default":  # pragma: no cover - slow machine
        pytest.skip("the second process started more than a window after the first")
    print(f"\ndeleted file, {hold}: {simulator.rate_limited_count()} x 50011")
    if hold == "default":
        assert simulator.rate_limited_count() == 0
        assert simulator.max_in_window(UID, SET_PATH) <= 10
        assert len(sent) == 20
        # Not one request of the second run in the window of the first run's last.
        assert sent[10] - sent[9] >= 2.0 - 0.05
    else:
        assert simulator.rate_limited_count() > 0


async def test_cli_reports_a_bad_limiter_url_once(tmp_path: Path) -> None:
    simulator = sim_for_processes()
    async with SimulatorServer(simulator) as server:
        proc = await apply_run(
            tmp_path, server.base_url, SIM_KEYS[0], CCYS[:5], "--limiter-url", "redis:/x:pw@h"
        )
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    text = err.decode()
    assert text.count("not a limiter URL") == 1, text  # once, not once per row
    assert "pw" not in text and "sqlite:///" in text
    assert simulator.records == []


async def test_cli_limiter_url_from_the_config_file(tmp_path: Path) -> None:
    """`limiter_url` at the top of the config file picks the store (here a file of our
    choosing instead of the state directory's)."""
    simulator = sim_for_processes()
    shared = tmp_path / "from-config.db"
    config = tmp_path / "config" / "okx-async" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'limiter_url = "sqlite://{shared}"\n')
    config.chmod(0o600)
    async with SimulatorServer(simulator) as server:
        await finish(await apply_run(tmp_path, server.base_url, SIM_KEYS[0], CCYS[:3]))
    assert shared.exists()
    assert not (tmp_path / "state" / "okx-async" / "limits.db").exists()


# -- files that are not (or not yet) this store's ---------------------------------------------

LAYOUT_1_SCRIPT = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE budget (
    key TEXT PRIMARY KEY, tat REAL NOT NULL, held_until REAL NOT NULL,
    burst INTEGER NOT NULL, recover_at REAL NOT NULL, next_ticket INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE lease (
    key TEXT NOT NULL, id TEXT NOT NULL, expires REAL NOT NULL, cooling INTEGER NOT NULL,
    PRIMARY KEY (key, id)
) WITHOUT ROWID;
CREATE TABLE ticket (
    key TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, beat REAL NOT NULL,
    PRIMARY KEY (key, id)
) WITHOUT ROWID;
INSERT INTO meta VALUES ('epoch', 'old');
INSERT INTO budget VALUES ('k', 1.0, 0.0, 3, 0.0, 1);
INSERT INTO lease VALUES ('k', 'x:1', 1.0, 0);
"""


def file_state(path: Path) -> tuple[int, str, list[tuple[str, ...]]]:
    """(user_version, journal_mode, every table's rows) of the file at `path`."""
    conn = sqlite3.connect(path)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        rows = [(n, *map(str, conn.execute(f"SELECT * FROM {n}").fetchall())) for n in names]
        return version, mode, rows
    finally:
        conn.close()


def test_an_application_database_is_refused_untouched(tmp_path: Path) -> None:
    """limiter_url naming an application's own database (with a `budget` table, as
    layout 1 had): refused before anything is sent, its tables, rows and journal mode
    as they were."""
    path = tmp_path / "app.db"
    app = sqlite3.connect(path)
    app.executescript(
        "CREATE TABLE budget (dept TEXT, amount REAL); INSERT INTO budget VALUES ('ops', 5);"
    )
    app.close()
    before = file_state(path)

    async def main() -> None:
        user = SimUser(uid=UID, keys=SIM_KEYS[:1], margin_ccys=frozenset(CCYS))
        async with served([user]) as (simulator, url):
            async with client_of(SIM_KEYS[0], url, limiter_url=f"sqlite://{path}") as client:
                with pytest.raises(LimiterUnavailableError) as info:
                    await client.set_risk_offset_amount("C00", "1")
            assert simulator.values(UID) == {}  # nothing reached OKX
            assert simulator.max_in_window(UID, SET_PATH) == 0
        message = str(info.value)
        assert f"the file {path} is not an okx_async limiter file" in message
        assert "tables: budget" in message
        assert "point limiter_url at a file of its own, e.g. sqlite:///" in message

    asyncio.run(main())
    assert file_state(path) == before == (0, "delete", [("budget", "('ops', 5.0)")])


def test_a_layout_1_file_is_upgraded_and_held(tmp_path: Path) -> None:
    """This store's own layout 1 (user_version 0, a `lease` table): its budgets are
    dropped, the file takes the current layout and its keys start held one window."""
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(LAYOUT_1_SCRIPT)
    old.close()

    async def main() -> None:
        async with sqlite_backend(path, hold_new_file=True) as backend:
            lease = await backend.limiter(KEY, RATE).acquire()
            assert now() == RATE.window  # held one window: what was spent is unknown
            await backend.limiter(KEY, RATE).release(lease)

    run_virtual(main)
    version, mode, rows = file_state(path)
    assert (version, mode) == (2, "wal")
    assert "lease" not in [r[0] for r in rows]


@pytest.mark.parametrize(
    "script",
    [
        "PRAGMA user_version=3; CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);",
        "PRAGMA user_version=3;",
    ],
)
def test_a_file_of_a_newer_layout_is_refused(script: str, tmp_path: Path) -> None:
    assert_refused_untouched(tmp_path / "new.db", script, "written by a newer okx_async")


def assert_refused_untouched(path: Path, script: str, message: str) -> None:
    """A file made by `script`: the store's first acquire on it is refused with
    `message`, and the file is left exactly as it was."""
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.close()
    before = file_state(path)

    async def main() -> None:
        async with sqlite_backend(path) as backend:
            with pytest.raises(LimiterUnavailableError, match=message):
                await backend.limiter(KEY, RATE).acquire()

    run_virtual(main)
    assert file_state(path) == before


@pytest.mark.parametrize(
    "script",
    [
        # layout 1 with a column of its budget table changed
        LAYOUT_1_SCRIPT.replace("burst INTEGER", "bursts INTEGER"),
        # layout 1's tables beside one of the application's
        LAYOUT_1_SCRIPT + "CREATE TABLE orders (id INTEGER);",
        # the current layout's number, without this store's tables
        "PRAGMA user_version=2; CREATE TABLE budget (dept TEXT, amount REAL);",
        # layout 1's budget and lease, without the meta marker
        LAYOUT_1_SCRIPT.replace("CREATE TABLE meta", "CREATE TABLE other").replace(
            "INTO meta", "INTO other"
        ),
    ],
)
def test_a_file_of_an_unknown_layout_is_refused_untouched(script: str, tmp_path: Path) -> None:
    assert_refused_untouched(tmp_path / "odd.db", script, "not an okx_async limiter file")


def test_a_stores_lease_outlives_every_request_that_may_still_land(tmp_path: Path) -> None:
    """An unanswered request keeps its slot request_timeout + landing_horizon after its
    grant; a lease that lapsed in the store sooner would hand the slot to another process
    (test_a_crashed_holders_lease_is_in_flight_until_its_ttl: a lease lasts its TTL). A
    store made from a URL gets a TTL past that; a store passed in with a shorter one is
    refused, naming the bound."""
    creds = {"api_key": "k", "secret_key": "s", "passphrase": "p"}
    slow = {"request_timeout": 20.0, "landing_horizon": 100.0}
    url = f"sqlite://{tmp_path}/l.db"
    backend = OKXClient(**creds, limiter_url=url, **slow)._budgets.backend
    assert isinstance(backend, SqliteLimiterBackend) and backend.inflight_ttl == 125.0
    backend = OKXClient(**creds, limiter_url=url)._budgets.backend  # defaults: 10 + 30 + 5
    assert isinstance(backend, SqliteLimiterBackend) and backend.inflight_ttl == 60.0
    with pytest.raises(InvalidInputError) as info:
        OKXClient(**creds, limiter=SqliteLimiterBackend(tmp_path / "l.db"), **slow)
    assert str(info.value).startswith(
        "the limiter store's inflight_ttl (60 s) must be at least request_timeout + "
        "landing_horizon + 5 s (125 s)"
    )
    long = SqliteLimiterBackend(tmp_path / "l.db", inflight_ttl=125.0)
    assert OKXClient(**creds, limiter=long, **slow)._budgets.backend is long
    if importlib.util.find_spec("redis") is not None:
        redis = OKXClient(**creds, limiter_url="redis://127.0.0.1:1/0", **slow)._budgets.backend
        assert getattr(redis, "inflight_ttl", None) == 125.0


# -- the CLI's store that cannot be used -------------------------------------------------------


def unwritable_dir(tmp_path: Path) -> Path:
    """A directory this user cannot create files in: mode 0500, or (as root, whom modes
    do not stop) a path under a regular file, which fails for everyone."""
    if os.geteuid() == 0:
        (tmp_path / "file.txt").write_text("")
        return tmp_path / "file.txt"
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    return folder


def unopenable(tmp_path: Path) -> Path:
    """A path sqlite cannot open, for root too: a link to a path under a regular file."""
    (tmp_path / "file.txt").write_text("")
    link = tmp_path / "limits.db"
    link.symlink_to(tmp_path / "file.txt" / "limits.db")
    return link


def run_cli_process(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OKX_")}
    clean.update(
        OKX_API_KEY="k",
        OKX_SECRET_KEY="s",
        OKX_PASSPHRASE="p",
        OKX_BASE_URL="http://127.0.0.1:9",  # never reached: the store is refused first
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "okx_async", *argv],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_an_unwritable_state_home_exits_2_saying_what_to_do(tmp_path: Path) -> None:
    state = unwritable_dir(tmp_path)
    done = run_cli_process(tmp_path, "set", "BTC", "1", XDG_STATE_HOME=str(state))
    assert done.returncode == 2, done.stderr
    path = state / "okx-async" / "limits.db"
    assert done.stderr.startswith(f"error: the default limiter file {path} cannot be created (")
    assert done.stderr.endswith(
        f"pass --limiter-url or set OKX_ASYNC_LIMITER_URL, or make {state} writable\n"
    )


def test_cli_an_unwritable_limiter_file_exits_2_saying_what_to_do(tmp_path: Path) -> None:
    folder = unwritable_dir(tmp_path)
    url = f"sqlite://{folder}/limits.db"
    done = run_cli_process(tmp_path, "set", "BTC", "1", "--limiter-url", url)
    assert done.returncode == 2, done.stderr
    if os.geteuid() == 0:  # under a file: "does not exist", checked before writability
        assert "which does not exist" in done.stderr
        return
    assert done.stderr == (
        f"error: the limiter file {folder}/limits.db cannot be written ({folder} is not "
        f"writable by this user): pass another --limiter-url, or make {folder} writable\n"
    )


def test_an_unopenable_file_says_to_check_its_path_not_that_a_store_runs(
    tmp_path: Path,
) -> None:
    """Past the CLI's own checks (the file became unopenable since): sqlite's message,
    and a hint about the file, not about a server."""
    path = unopenable(tmp_path)

    async def main() -> None:
        async with sqlite_backend(path) as backend:
            with pytest.raises(LimiterUnavailableError) as info:
                await backend.limiter(KEY, RATE).acquire()
        assert str(info.value) == (
            f"the sqlite limiter at {path} failed: unable to open database file (check "
            "that its directory exists and this user may write it)"
        )

    run_virtual(main)


def test_cli_an_unopenable_limiter_file_says_to_check_its_path(tmp_path: Path) -> None:
    path = unopenable(tmp_path)  # the CLI's checks pass; sqlite cannot open it
    done = run_cli_process(tmp_path, "set", "BTC", "1", "--limiter-url", f"sqlite://{path}")
    assert done.returncode == 2, done.stderr
    assert "unable to open database file" in done.stderr
    assert "check the file's path and its permissions and that --limiter-url" in done.stderr
    assert "limiter store runs" not in done.stderr


def test_cli_a_bad_limiter_url_in_the_environment_names_the_variable(tmp_path: Path) -> None:
    done = run_cli_process(tmp_path, "set", "BTC", "1", OKX_ASYNC_LIMITER_URL="sqlite://rel/x.db")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: OKX_ASYNC_LIMITER_URL: a sqlite limiter URL names an")
