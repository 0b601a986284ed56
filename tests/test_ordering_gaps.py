"""Lanes: the cases mutation testing showed the ordering tests did not pin down.

Each runs on the virtual loop, so a caller left waiting forever is a VirtualDeadlockError
(the loop has nothing left to do), not a hung test.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from test_ordering import ScriptedSender, make, run_ready, submitted
from virtual_time import run_virtual

from okx_async import RiskOffsetResult
from okx_async._ordering import Lane, LaneRegistry, SupersededError, Update
from okx_async._shared import lanes_for_running_loop


def test_a_head_that_absorbed_values_also_answers_a_superseded_retry() -> None:
    """ "3" absorbed "2" while "1" was in flight; "1" is then superseded and joins "3" too.
    Every caller gets "3": none of the earlier-absorbed ones may be forgotten."""

    async def main() -> list[RiskOffsetResult]:
        sender = ScriptedSender()
        sender.supersede_on = {"1"}
        lane = LaneRegistry().lane("k")
        u1, u2, u3 = make(sender, "1"), make(sender, "2"), make(sender, "3")
        lane.submit(u1, coalesce=True)
        await run_ready()
        lane.submit(u2, coalesce=True)
        lane.submit(u3, coalesce=True)  # absorbs "2"
        sender.open("1")  # "1" fails and would retry, but "3" waits: it joins "3"
        await run_ready()
        sender.open("3")
        results = await asyncio.gather(u1.future, u2.future, u3.future)
        assert sender.sent == ["1", "3"]
        return results

    r1, r2, r3 = run_virtual(main)
    assert r1 == RiskOffsetResult("BTC", Decimal(3), Decimal(1), True)
    assert r2 == RiskOffsetResult("BTC", Decimal(3), Decimal(2), True)
    assert r3 == RiskOffsetResult("BTC", Decimal(3), Decimal(3), False)


def test_without_coalescing_the_worker_goes_on_after_skipping_a_cancelled_value() -> None:
    async def main() -> list[str]:
        sender, _, (u1, u2, u3) = submitted(3, coalesce=False)
        await run_ready()
        u2.future.cancel()  # its caller left before it was sent
        sender.open("1")
        sender.open("3")
        assert (await u3.future).amount == Decimal(3)
        assert (await u1.future).amount == Decimal(1)
        return sender.sent

    assert run_virtual(main) == ["1", "3"]


def test_an_idle_lane_leaves_the_registry_only_if_it_is_still_the_registered_one() -> None:
    """A caller may still hold a lane the registry dropped (and replaced) meanwhile; when
    that old lane goes idle again it must not drop its busy successor, else a third lane
    would send a second value of the currency while the successor's is in flight."""

    async def main() -> ScriptedSender:
        registry = LaneRegistry()
        sender = ScriptedSender()
        stale = registry.lane("k")
        first = make(sender, "1")
        assert stale.claim(first)
        sender.open("1")
        await stale.run_inline(first)
        assert len(registry) == 0  # idle: dropped

        current = registry.lane("k")
        assert current is not stale
        second = make(sender, "2")
        current.submit(second, coalesce=True)
        await run_ready()  # "2" is in flight

        late = make(sender, "9")  # through the lane it looked up long ago
        stale.submit(late, coalesce=True)
        sender.open("9")
        await late.future
        await run_ready()  # the stale lane's worker has finished: it is idle again
        probe = make(sender, "8")
        assert stale.claim(probe)  # idle means claimable: nothing left marked busy
        sender.open("8")
        await stale.run_inline(probe)

        assert registry.lane("k") is current
        third = make(sender, "3")
        registry.lane("k").submit(third, coalesce=True)
        await run_ready()
        assert sender.sent == ["1", "2", "9", "8"]  # "3" waits behind "2"
        sender.open("2")
        sender.open("3")
        await asyncio.gather(second.future, third.future)
        await run_ready()
        assert len(registry) == 0
        return sender

    sender = run_virtual(main)
    assert sender.sent == ["1", "2", "9", "8", "3"]


def test_values_looked_up_through_the_registry_share_one_lane() -> None:
    async def main() -> ScriptedSender:
        registry = LaneRegistry()
        sender = ScriptedSender()
        updates = [make(sender, str(i)) for i in range(1, 4)]
        for u in updates:  # each caller looks its lane up, as the client does
            registry.lane("k").submit(u, coalesce=False)
            await run_ready()
        assert len(registry) == 1
        assert sender.sent == ["1"]  # one in flight per key
        for u in updates:
            sender.open(u.text)
            await u.future
        return sender

    sender = run_virtual(main)
    assert sender.sent == ["1", "2", "3"] and sender.max_in_flight == 1


def test_one_registry_per_event_loop() -> None:
    async def main() -> LaneRegistry:
        registry = lanes_for_running_loop()
        assert lanes_for_running_loop() is registry
        return registry

    first, second = run_virtual(main), run_virtual(main)
    assert isinstance(first, LaneRegistry) and first is not second


def test_cancelling_the_worker_cancels_every_waiting_caller() -> None:
    """The loop shutting down cancels the lane's worker mid-send: the value being sent and
    those queued behind it end cancelled, none is left waiting forever."""

    async def main() -> None:
        sender, _, updates = submitted(3, coalesce=False)
        await run_ready()
        assert sender.sent == ["1"]
        (worker,) = asyncio.all_tasks() - {asyncio.current_task()}
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        for u in updates:
            assert isinstance(u.future.exception(), asyncio.CancelledError)
        assert sender.sent == ["1"]

    run_virtual(main)


def test_a_superseded_value_with_nothing_newer_waiting_is_sent_again() -> None:
    """SupersededError means "a newer value answers for this one"; if none waits (it was
    withdrawn), the value is the latest again and must still be applied."""
    calls: list[str] = []

    async def flaky(update: Update, lane: Lane) -> Decimal:
        await asyncio.sleep(0)
        calls.append(update.text)
        if len(calls) == 1:
            raise SupersededError
        return update.amount

    async def main() -> RiskOffsetResult:
        lane = LaneRegistry().lane("k")
        only = make(flaky, "1")
        assert lane.claim(only)
        await lane.run_inline(only)
        return await only.future

    assert run_virtual(main) == RiskOffsetResult("BTC", Decimal(1), Decimal(1), False)
    assert calls == ["1", "1"]


def test_reprs_say_what_waits() -> None:
    async def main() -> None:
        sender = ScriptedSender()
        lane = LaneRegistry().lane("k")
        a, b, c = make(sender, "1"), make(sender, "2"), make(sender, "3")
        assert repr(lane) == "Lane('k', idle, waiting=0)"
        lane.submit(a, coalesce=True)
        await run_ready()
        lane.submit(b, coalesce=True)
        lane.submit(c, coalesce=True)
        assert repr(lane) == "Lane('k', sending, waiting=1)"
        assert repr(c) == "Update(BTC -> 3, waiting=2)"
        for text in ("1", "3"):
            sender.open(text)
        await asyncio.gather(a.future, c.future)

    run_virtual(main)
