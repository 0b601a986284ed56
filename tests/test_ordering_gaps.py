"""Lanes: the cases mutation testing showed the ordering tests did not pin down.

Each runs on the virtual loop, so a caller left waiting forever is a VirtualDeadlockError
(the loop has nothing left to do), not a hung test.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from test_ordering import ScriptedSender, make, settle
from virtual_time import run_virtual

from okx_async import RiskOffsetResult
from okx_async._ordering import LaneRegistry


def test_a_head_that_absorbed_values_also_answers_a_superseded_retry() -> None:
    """"3" absorbed "2" while "1" was in flight; "1" is then superseded and joins "3" too.
    Every caller gets "3": none of the earlier-absorbed ones may be forgotten."""

    async def main() -> list[RiskOffsetResult]:
        sender = ScriptedSender()
        sender.supersede_on = {"1"}
        lane = LaneRegistry().lane("k")
        u1, u2, u3 = make(sender, "1"), make(sender, "2"), make(sender, "3")
        lane.submit(u1, coalesce=True)
        await settle()
        lane.submit(u2, coalesce=True)
        lane.submit(u3, coalesce=True)  # absorbs "2"
        sender.open("1")  # "1" fails and would retry, but "3" waits: it joins "3"
        await settle()
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
        sender = ScriptedSender()
        lane = LaneRegistry().lane("k")
        u1, u2, u3 = make(sender, "1"), make(sender, "2"), make(sender, "3")
        for u in (u1, u2, u3):
            lane.submit(u, coalesce=False)
        await settle()
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
        await settle()  # "2" is in flight

        late = make(sender, "9")  # through the lane it looked up long ago
        stale.submit(late, coalesce=True)
        sender.open("9")
        await late.future
        await settle()  # the stale lane's worker has finished: it is idle again

        assert registry.lane("k") is current
        third = make(sender, "3")
        registry.lane("k").submit(third, coalesce=True)
        await settle()
        assert sender.sent == ["1", "2", "9"]  # "3" waits behind "2"
        sender.open("2")
        sender.open("3")
        await asyncio.gather(second.future, third.future)
        await settle()
        assert len(registry) == 0
        return sender

    sender = run_virtual(main)
    assert sender.sent == ["1", "2", "9", "3"]
