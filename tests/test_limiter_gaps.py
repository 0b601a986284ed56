"""The in-process limiter: the cases mutation testing showed the other tests leave open.

Every check is on behaviour seen through the public methods on the virtual clock: when
grants happen, which calls are refused at once, which wait and then expire. Limits with
binary-exact intervals (8 per 2 s: 0.25 s; 2 per 1 s: 0.5 s) keep the edges exact.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Coroutine
from math import inf
from typing import Any

import pytest
from virtual_time import VirtualTimeLoop, run_virtual

from okx_async._defaults import RATE_LIMIT_RECOVERY_WINDOWS, SET_RISK_OFFSET_PATH
from okx_async._errors import DeadlineExceededError, QueueFullError
from okx_async._limiter._memory import LocalKeyLimiter, LocalLimiterBackend, Pacer
from okx_async._limiter._rules import earliest_grant, gcra_allowed_at, recover
from okx_async._limits import Lease, LimiterKey, RateLimit

KEY = LimiterKey("www.okx.com|live", "uid:7", SET_RISK_OFFSET_PATH)
TEN = RateLimit(10, 2.0, "user")  # the endpoint's limit: pacer interval 0.2 s
EIGHT = RateLimit(8, 2.0, "user")  # pacer interval 0.25 s
ONE = RateLimit(1, 2.0, "user")
RECOVERY = RATE_LIMIT_RECOVERY_WINDOWS * 2.0  # for the 2 s windows


def now() -> float:
    return asyncio.get_running_loop().time()


async def sleep_until(t: float) -> None:
    await asyncio.sleep(t - now())


async def timed(limiter: LocalKeyLimiter, deadline: float | None = None) -> float:
    """Acquire, note the grant time, release at once."""
    lease = await limiter.acquire(deadline=deadline)
    granted = now()
    await limiter.release(lease)
    return granted


def acquire_now(limiter: LocalKeyLimiter) -> Lease:
    """acquire() run one step: it must grant without suspending."""
    coro = limiter.acquire()
    with pytest.raises(StopIteration) as stop:
        coro.send(None)
    lease: Lease = stop.value.value
    return lease


def decide(limiter: LocalKeyLimiter, deadline: float) -> str:
    """What acquire(deadline=...) does at this instant: "granted", "refused" (at once) or
    "queued" (then withdrawn again, leaving the limiter as it was)."""
    coro = limiter.acquire(deadline=deadline)
    try:
        coro.send(None)
    except StopIteration as stop:
        asyncio.get_running_loop().create_task(limiter.release(stop.value))
        return "granted"
    except DeadlineExceededError:
        return "refused"
    with contextlib.suppress(asyncio.CancelledError):
        coro.throw(asyncio.CancelledError())
    return "queued"


async def granted_at_once(limiter: LocalKeyLimiter, count: int = 10) -> int:
    """Start `count` acquisitions now; how many are granted at this very instant (the
    burst the pacer allows), each released at once."""
    start = now()
    times = await asyncio.gather(*(timed(limiter) for _ in range(count)))
    return sum(1 for t in times if t == start)


def stall(seconds: float) -> None:
    """The loop is busy for `seconds` (a long callback): its clock jumps, no timer runs."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop)
    loop.advance(seconds)


# -- burst recovery while the key is busy -----------------------------------------------


def test_burst_recovers_on_the_fast_path_while_a_lease_is_held() -> None:
    async def main() -> None:
        # max_pending=0: a call that is not granted on the spot fails with QueueFullError.
        limiter = LocalKeyLimiter(KEY, TEN, max_pending=0)
        held = acquire_now(limiter)  # in flight throughout: the key never goes idle
        await limiter.on_rate_limited()  # burst 10 -> 5, recovers at RECOVERY
        await sleep_until(RECOVERY)
        assert limiter.snapshot().burst == 10  # from this very instant
        # The other nine slots at once, on the spot: the burst is 10 again.
        leases = [acquire_now(limiter) for _ in range(9)]
        assert now() == RECOVERY
        with pytest.raises(QueueFullError):
            await limiter.acquire()  # all ten slots taken: this one would have to wait
        for lease in [held, *leases]:
            await limiter.release(lease)

    run_virtual(main)


def test_burst_recovers_in_dispatch_while_waiters_queue() -> None:
    async def main() -> list[float]:
        limiter = LocalKeyLimiter(KEY, EIGHT)
        held = acquire_now(limiter)
        await limiter.on_rate_limited()  # burst 8 -> 4 (tolerance 0.75 s), recovers at 20
        await sleep_until(RECOVERY - 0.25)
        first = [acquire_now(limiter) for _ in range(4)]  # the halved burst; the pacer
        # then allows the next at exactly RECOVERY, when the burst is 8 again: the three
        # waiters go together, not 0.25 s apart.
        times = await asyncio.gather(*(timed(limiter) for _ in range(3)))
        for lease in [held, *first]:
            await limiter.release(lease)
        return list(times)

    assert run_virtual(main) == [RECOVERY] * 3


def test_a_waiter_held_by_the_pacer_is_woken_when_the_burst_recovers() -> None:
    """The halved burst's pacer would hold the head until RECOVERY + 0.15; the burst
    doubles at RECOVERY, and from then the pacer allows it: it goes at RECOVERY."""

    async def main() -> float:
        limiter = LocalKeyLimiter(KEY, EIGHT)
        held = acquire_now(limiter)
        await limiter.on_rate_limited()  # burst 8 -> 4 (interval 0.25 s), recovers at 20
        await sleep_until(RECOVERY - 0.1)
        first = [acquire_now(limiter) for _ in range(4)]  # the halved burst
        granted = await timed(limiter)
        for lease in [held, *first]:
            await limiter.release(lease)
        return granted

    assert run_virtual(main) == RECOVERY


def test_burst_doubles_step_by_step_after_two_incidents() -> None:
    async def main() -> list[int]:
        limiter = LocalKeyLimiter(KEY, TEN)
        await limiter.on_rate_limited()  # 10 -> 5, hold until 2
        await sleep_until(2.0)
        await limiter.on_rate_limited()  # a new incident: 5 -> 2, recovers from 22
        seen = []
        for at in (5.0, 2.0 + RECOVERY + 1, 2.0 + 2 * RECOVERY + 1, 2.0 + 3 * RECOVERY + 1):
            await sleep_until(at)
            seen.append(await granted_at_once(limiter))
        return seen

    assert run_virtual(main) == [2, 4, 8, 10]


def test_an_idle_key_catches_up_several_doublings_at_once() -> None:
    async def main() -> int:
        limiter = LocalKeyLimiter(KEY, TEN)
        await limiter.on_rate_limited()
        await sleep_until(2.0)
        await limiter.on_rate_limited()  # burst 2; 4 at 22, 8 at 42
        await sleep_until(2.0 + 2 * RECOVERY + 1)
        return await granted_at_once(limiter)

    assert run_virtual(main) == 8


def test_after_two_incidents_the_backend_keeps_the_key_until_it_has_recovered() -> None:
    """Dropping the key early would forget its 50011 backoff: a new limiter would start
    with the full burst while the old one would still allow only part of it."""

    async def main() -> None:
        backend = LocalLimiterBackend()
        await backend.limiter(KEY, TEN).on_rate_limited()
        await sleep_until(2.0)
        await backend.limiter(KEY, TEN).on_rate_limited()  # 2, then 4 at 22, 8 at 42
        await sleep_until(2.0 + 2 * RECOVERY + 8)  # idle for 48 s
        assert await granted_at_once(backend.limiter(KEY, TEN)) == 8
        await sleep_until(2.0 + 3 * RECOVERY - 0.01)
        assert KEY in backend
        await sleep_until(2.0 + 3 * RECOVERY + 0.01)  # whole again: nothing to remember
        assert KEY not in backend

        # 8 -> 4 -> 2 doubles back in two steps, at 20 and 40 s: kept until then only.
        await backend.limiter(KEY, EIGHT).on_rate_limited()
        start = now()
        await sleep_until(start + 2.0)
        await backend.limiter(KEY, EIGHT).on_rate_limited()
        await sleep_until(start + 2.0 + 2 * RECOVERY - 0.01)
        assert KEY in backend
        await sleep_until(start + 2.0 + 2 * RECOVERY + 0.01)
        assert KEY not in backend

    run_virtual(main)


def test_a_key_whose_burst_is_1_is_kept_while_a_50011_holds_it() -> None:
    async def main() -> float:
        backend = LocalLimiterBackend()
        limiter = backend.limiter(KEY, ONE)
        await limiter.release(acquire_now(limiter))  # cooling until 2.0
        await sleep_until(1.0)
        await limiter.on_rate_limited()  # held until 3.0, after the cooldown
        await sleep_until(2.5)
        assert KEY in backend
        return await timed(backend.limiter(KEY, ONE))

    assert run_virtual(main) == 3.0


def test_a_backend_gives_its_limiters_its_max_pending_and_burst() -> None:
    async def main() -> None:
        backend = LocalLimiterBackend(max_pending=1)
        limiter = backend.limiter(KEY, ONE)
        held = acquire_now(limiter)
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError):
            await backend.limiter(KEY, ONE).acquire()
        waiter.cancel()
        await limiter.release(held)

        paced = LocalLimiterBackend(burst=3)
        assert await granted_at_once(paced.limiter(KEY, TEN)) == 3

        # Every live key's state, for the slots-in-use metric.
        fresh = LocalLimiterBackend()
        lease = acquire_now(fresh.limiter(KEY, ONE))
        assert fresh.snapshots() == [(KEY, fresh.limiter(KEY, ONE).snapshot())]
        assert fresh.snapshots()[0][1].in_flight == 1
        await fresh.limiter(KEY, ONE).release(lease)

    run_virtual(main)


# -- deadline refusals with a limit above 1 ----------------------------------------------


def test_deadline_against_the_first_cooling_slot() -> None:
    async def main() -> float:
        limiter = LocalKeyLimiter(KEY, TEN)
        assert decide(limiter, now()) == "refused"  # a deadline reached: even a free slot
        leases = [acquire_now(limiter) for _ in range(10)]
        await sleep_until(0.5)
        await limiter.release(leases[0])  # frees at 2.5
        await sleep_until(1.0)
        for lease in leases[1:]:
            await limiter.release(lease)  # free at 3.0
        assert decide(limiter, 2.4) == "refused"
        assert decide(limiter, 2.5) == "refused"  # granted strictly before the deadline
        assert decide(limiter, 2.625) == "queued"
        return await timed(limiter, deadline=2.625)

    assert run_virtual(main) == 2.5


def test_deadline_with_every_slot_in_flight() -> None:
    async def main() -> None:
        limiter = LocalKeyLimiter(KEY, TEN)
        leases = [acquire_now(limiter) for _ in range(10)]
        await sleep_until(0.5)
        # A release now frees a slot at 2.5 at the soonest.
        assert decide(limiter, 2.5) == "refused"
        assert decide(limiter, 2.625) == "queued"
        for lease in leases:
            await limiter.release(lease)

    run_virtual(main)


def test_deadline_against_the_pacer_with_a_burst_above_1() -> None:
    async def main() -> float:
        limiter = LocalKeyLimiter(KEY, EIGHT, burst=3)  # tolerance 0.5 s
        leases = [acquire_now(limiter) for _ in range(3)]  # the next is paced to 0.25
        assert decide(limiter, 0.25) == "refused"
        assert decide(limiter, 0.375) == "queued"
        granted = await timed(limiter, deadline=0.375)
        for lease in leases:
            await limiter.release(lease)
        return granted

    assert run_virtual(main) == 0.25


def test_a_deadline_met_only_because_the_burst_recovers_meanwhile_is_accepted() -> None:
    async def main() -> float:
        limiter = LocalKeyLimiter(KEY, EIGHT)
        held = acquire_now(limiter)
        await limiter.on_rate_limited()  # burst 4 until 20, then 8
        await sleep_until(RECOVERY - 0.125)
        first = [acquire_now(limiter) for _ in range(4)]
        # With burst 4 the pacer allows the next at 20.125; with 8 (from 20) at once.
        assert decide(limiter, RECOVERY) == "refused"  # recovering at the deadline is late
        # Accepted, and granted the instant the burst recovers (the key's timer is
        # armed for the recovery, not for the halved burst's pacer).
        granted = await timed(limiter, deadline=RECOVERY + 0.0625)
        for lease in [held, *first]:
            await limiter.release(lease)
        return granted

    assert run_virtual(main) == RECOVERY


def test_a_waiter_is_never_granted_at_or_after_its_deadline() -> None:
    """The loop was busy past a waiter's deadline (its expiry timer has not run yet); the
    next call to the limiter must expire it and give the slot to the one behind, and keep
    counting the one still waiting."""

    async def main() -> None:
        backend = LocalLimiterBackend()
        limiter = backend.limiter(KEY, TEN)
        leases = [acquire_now(limiter) for _ in range(10)]
        late = asyncio.create_task(limiter.acquire(deadline=2.5))
        patient = asyncio.create_task(timed(limiter))
        await asyncio.sleep(0)
        await limiter.release(leases[0])  # frees at 2.0
        stall(2.5)
        assert now() == 2.5
        coro = limiter.acquire()  # a call arrives first: the expired head leaves,
        pending = coro.send(None)  # `patient` gets the free slot, this one waits
        with pytest.raises(DeadlineExceededError):
            await late
        assert await patient == 2.5
        await limiter.release(leases[1])  # the next slot frees at 4.5
        await asyncio.wait([asyncio.ensure_future(pending)])
        with pytest.raises(StopIteration) as stop:
            coro.send(None)
        assert now() == 4.5
        for lease in [*leases[2:], stop.value.value]:
            await limiter.release(lease)
        await sleep_until(6.5 + 0.01)
        assert KEY not in backend  # nothing is counted as waiting any more: dropped

    run_virtual(main)


def test_a_timer_that_runs_late_judges_by_the_real_time() -> None:
    async def main() -> None:
        limiter = LocalKeyLimiter(KEY, TEN)
        leases = [acquire_now(limiter) for _ in range(10)]
        late = asyncio.create_task(limiter.acquire(deadline=2.5))
        await asyncio.sleep(0)
        await limiter.release(leases[0])  # frees at 2.0: the limiter's timer is for 2.0
        stall(2.5)  # it runs at 2.5, at the waiter's deadline: too late for a grant
        with pytest.raises(DeadlineExceededError):
            await late
        assert now() == 2.5
        for lease in [*leases[1:], acquire_now(limiter)]:
            await limiter.release(lease)

    run_virtual(main)


def test_granted_on_the_spot_at_the_exact_instant_each_constraint_lifts() -> None:
    """max_pending=0 refuses any call that would have to wait, so the fast path itself
    must see each constraint lift at its instant (not a moment later through the queue);
    snapshot() agrees."""

    async def main() -> None:
        # Two slots: one cooling until 2.0, one held throughout (so the key stays busy and
        # no idle check clears the cooled slot before the call does).
        cooling = LocalKeyLimiter(KEY, RateLimit(2, 2.0, "user"), max_pending=0)
        busy = acquire_now(cooling)
        await cooling.release(acquire_now(cooling))
        held = LocalKeyLimiter(KEY, TEN, max_pending=0)
        await held.on_rate_limited()  # held until 2.0
        paced = LocalKeyLimiter(KEY, EIGHT, burst=1, max_pending=0)  # one per 0.25 s
        leases = [acquire_now(paced)]

        await sleep_until(0.25)
        leases.append(acquire_now(paced))
        with pytest.raises(QueueFullError):
            await paced.acquire()

        await sleep_until(2.0)
        assert cooling.snapshot().cooling == 0
        leases.append(acquire_now(cooling))
        assert held.snapshot().held_until is None
        assert repr(held).endswith("in_flight=0 cooling=0 queued=0>")
        leases.append(acquire_now(held))
        for lease, limiter in zip(
            [*leases, busy], [paced, paced, cooling, held, cooling], strict=True
        ):
            await limiter.release(lease)

    run_virtual(main)


def test_a_deadline_counts_on_recovery_when_the_limit_is_2() -> None:
    """2 per 4 s, halved to 1: the pacer is a whole interval (2 s) ahead after one send.
    A deadline after the recovery can use the full burst's tolerance, one before cannot."""

    async def main() -> None:
        rate = RateLimit(2, 4.0, "user")
        recovery = RATE_LIMIT_RECOVERY_WINDOWS * 4.0
        limiter = LocalKeyLimiter(KEY, rate)
        await limiter.on_rate_limited()  # burst 1 until `recovery`
        await sleep_until(recovery - 1.0)
        lease = acquire_now(limiter)  # next paced to recovery + 1.0 at burst 1
        assert decide(limiter, recovery + 0.5) == "queued"  # at burst 2: from now
        assert decide(limiter, recovery) == "refused"
        await limiter.release(lease)

    run_virtual(main)


def test_a_pacer_defaults_to_no_burst() -> None:
    pacer = Pacer(0.25)
    assert (pacer.burst, pacer.tolerance) == (1, 0.0)
    assert pacer.try_commit(0.0) and not pacer.try_commit(0.125) and pacer.try_commit(0.25)


# -- grants handed back before they ran ----------------------------------------------------


@pytest.mark.parametrize("w", [1.0, 4.0])  # pacer interval 0.5 s and 2 s
def test_a_grant_cancelled_before_it_ran_hands_its_slot_on_and_is_accounted_once(
    w: float,
) -> None:
    """2 per `w` seconds. Two waiters are granted at w; the first to run cancels the second,
    whose grant is then handed back (no cooldown, its pacer turn returned). While that
    grant is pending a newcomer's deadline counts on it; after it, refusals are decided as
    if it never was."""

    async def main() -> None:
        limiter = LocalKeyLimiter(KEY, RateLimit(2, w, "user"))
        for lease in [acquire_now(limiter), acquire_now(limiter)]:
            await limiter.release(lease)  # both free at w
        second: asyncio.Task[float] | None = None

        async def first() -> tuple[Lease, Awaitable[Any], Coroutine[Any, Any, Lease]]:
            lease = await limiter.acquire()
            assert now() == w
            # `second` holds a grant but has not run: it may still hand it back.
            coro = limiter.acquire(deadline=1.375 * w)
            pending = coro.send(None)  # not refused: queued
            assert second is not None
            second.cancel()
            return lease, pending, coro

        task = asyncio.create_task(first())
        second = asyncio.create_task(timed(limiter))
        lease_1, pending, coro = await task
        with pytest.raises(asyncio.CancelledError):
            await second
        await asyncio.wait([asyncio.ensure_future(pending)])
        with pytest.raises(StopIteration) as stop:
            coro.send(None)  # the handed-back slot and pacer turn went to the newcomer
        assert now() == w
        lease_n: Lease = stop.value.value

        # Both slots in flight and no grant pending: the earliest is one window from now
        # (the pacer would allow 1.5 w), so 2.5 w is refused at once and 2.625 w may wait.
        await sleep_until(1.5 * w)
        assert decide(limiter, 2.5 * w) == "refused"
        assert decide(limiter, 2.625 * w) == "queued"
        for lease in (lease_1, lease_n):
            await limiter.release(lease)

    run_virtual(main)


# -- the pure rules, at the edges the stores do not reach ---------------------------------


def test_gcra_counts_sends_ahead_from_now_when_the_pacer_is_rested() -> None:
    # The sqlite store asks for the `ahead`-th send after the next one.
    assert gcra_allowed_at(tat=0.0, interval=0.25, burst=1, now=10.0, ahead=2) == 10.5
    assert gcra_allowed_at(tat=10.5, interval=0.25, burst=2, now=10.0, ahead=2) == 10.75


def test_recovery_stops_at_the_maximum_burst() -> None:
    # Doubling 5 -> 10 at 20; at 50 nothing more to recover: recover_at stays at 40.
    assert recover(burst=5, max_burst=10, recover_at=20.0, recovery=20.0, now=50.0) == (10, 40.0)
    assert recover(burst=2, max_burst=10, recover_at=20.0, recovery=20.0, now=45.0) == (8, 60.0)


def test_earliest_grant_is_never_in_the_past() -> None:
    kw = {"window": 2.0, "held_until": -inf, "paced_at": -inf}
    assert earliest_grant(slot_at=1.0, now=5.0, **kw) == 5.0
    assert earliest_grant(slot_at=inf, now=5.0, **kw) == 7.0
