"""Per-currency lanes: one in flight, in order, newer values supersede older waiting ones."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest
from virtual_time import run_virtual

from okx_async import RiskOffsetResult
from okx_async._ordering import Lane, LaneRegistry, SupersededError, Update


class ScriptedSender:
    """Records the order of sends; each send waits until the test releases it."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.gates: dict[str, asyncio.Future[None]] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.supersede_on: set[str] = set()

    async def __call__(self, update: Update, lane: Lane) -> Decimal:
        self.sent.append(update.text)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            gate = self.gates.setdefault(update.text, asyncio.get_running_loop().create_future())
            await gate
            if update.text in self.supersede_on and lane.has_newer():
                raise SupersededError
            return update.amount
        finally:
            self.in_flight -= 1

    def open(self, text: str) -> None:
        self.gates.setdefault(text, asyncio.get_running_loop().create_future())
        if not self.gates[text].done():
            self.gates[text].set_result(None)


def make(send: Callable[[Update, Lane], Awaitable[Decimal]], text: str) -> Update:
    """An update of BTC to `text`, sent by `send`, whose caller waits on its future."""
    return Update(
        ccy="BTC",
        text=text,
        amount=Decimal(text),
        deadline=None,
        send=send,
        future=asyncio.get_running_loop().create_future(),
    )


def submitted(count: int, *, coalesce: bool) -> tuple[ScriptedSender, Lane, list[Update]]:
    """A new lane with the values "1" to `count` submitted at once, one sender for all."""
    sender = ScriptedSender()
    lane = LaneRegistry().lane("k")
    updates = [make(sender, str(i)) for i in range(1, count + 1)]
    for u in updates:
        lane.submit(u, coalesce=coalesce)
    return sender, lane, updates


async def run_ready() -> None:
    """Let the loop run what is ready, a few turns deep (a lane hands work on in steps)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_coalescing_sends_first_and_last_only() -> None:
    registry = LaneRegistry()
    sender = ScriptedSender()
    lane = registry.lane("k")
    updates = [make(sender, str(i)) for i in range(1, 6)]
    for u in updates:
        lane.submit(u, coalesce=True)
        await run_ready()
    sender.open("1")
    await run_ready()
    sender.open("5")
    results = await asyncio.gather(*(u.future for u in updates))
    assert sender.sent == ["1", "5"]
    assert results[0] == RiskOffsetResult("BTC", Decimal(1), Decimal(1), False)
    for i, r in enumerate(results[1:4], start=2):
        assert r == RiskOffsetResult("BTC", Decimal(5), Decimal(i), True)
    assert results[4] == RiskOffsetResult("BTC", Decimal(5), Decimal(5), False)
    assert sender.max_in_flight == 1
    await run_ready()
    assert len(registry) == 0  # idle lanes are dropped


async def test_without_coalescing_every_value_goes_in_order() -> None:
    sender, _, updates = submitted(4, coalesce=False)
    for i in range(1, 5):
        await run_ready()
        sender.open(str(i))
    results = await asyncio.gather(*(u.future for u in updates))
    assert sender.sent == ["1", "2", "3", "4"]
    assert not any(r.superseded for r in results)
    assert sender.max_in_flight == 1


async def test_superseded_retry_is_answered_by_the_newer_value() -> None:
    sender = ScriptedSender()
    sender.supersede_on = {"1"}
    lane = LaneRegistry().lane("k")
    first, second = make(sender, "1"), make(sender, "2")
    lane.submit(first, coalesce=False)
    await run_ready()
    lane.submit(second, coalesce=False)
    sender.open("1")  # "1" fails and would retry, but "2" waits: give up on "1"
    await run_ready()
    sender.open("2")
    r1, r2 = await asyncio.gather(first.future, second.future)
    assert sender.sent == ["1", "2"]
    assert r1 == RiskOffsetResult("BTC", Decimal(2), Decimal(1), True)
    assert r2.amount == Decimal(2) and not r2.superseded


async def test_failure_reaches_every_caller_waiting_on_the_value() -> None:
    async def failing(update: Update, lane: Lane) -> Decimal:
        await asyncio.sleep(0)
        raise RuntimeError("exchange said no")

    lane = LaneRegistry().lane("k")
    blocker = ScriptedSender()
    a = make(blocker, "1")
    lane.submit(a, coalesce=True)
    await run_ready()
    b, c = make(failing, "2"), make(failing, "3")
    lane.submit(b, coalesce=True)
    lane.submit(c, coalesce=True)
    blocker.open("1")
    assert (await a.future).amount == Decimal(1)
    for fut in (b.future, c.future):
        with pytest.raises(RuntimeError, match="exchange said no"):
            await fut


async def test_a_value_nobody_waits_for_is_not_sent() -> None:
    sender = ScriptedSender()
    lane = LaneRegistry().lane("k")
    first, second = make(sender, "1"), make(sender, "2")
    lane.submit(first, coalesce=False)
    await run_ready()
    lane.submit(second, coalesce=False)
    second.future.cancel()  # its caller went away before it was sent
    sender.open("1")
    await first.future
    await run_ready()
    assert sender.sent == ["1"]


async def test_a_cancelled_newest_value_still_goes_if_older_callers_wait_on_it() -> None:
    sender = ScriptedSender()
    lane = LaneRegistry().lane("k")
    a, b, c = make(sender, "1"), make(sender, "2"), make(sender, "3")
    lane.submit(a, coalesce=True)
    await run_ready()
    lane.submit(b, coalesce=True)
    lane.submit(c, coalesce=True)
    c.future.cancel()
    sender.open("1")
    await run_ready()
    sender.open("3")
    result = await b.future
    assert sender.sent == ["1", "3"]
    assert result == RiskOffsetResult("BTC", Decimal(3), Decimal(2), True)


async def test_an_idle_lane_is_driven_by_the_caller_and_handed_on() -> None:
    registry = LaneRegistry()
    sender = ScriptedSender()
    lane = registry.lane("k")
    first, second = make(sender, "1"), make(sender, "2")
    assert lane.claim(first)
    assert not lane.claim(second)  # busy: the second must queue
    inline = asyncio.ensure_future(lane.run_inline(first))
    await run_ready()
    lane.submit(second, coalesce=True)
    sender.open("1")
    await inline
    assert (await first.future).amount == Decimal(1)
    sender.open("2")
    # A worker took over the queue (a hang here means nobody did).
    assert (await asyncio.wait_for(second.future, 5)).amount == Decimal(2)
    assert sender.sent == ["1", "2"] and sender.max_in_flight == 1
    await run_ready()
    assert len(registry) == 0


async def test_inline_retry_superseded_by_a_queued_value() -> None:
    sender = ScriptedSender()
    sender.supersede_on = {"1"}
    lane = LaneRegistry().lane("k")
    first, second = make(sender, "1"), make(sender, "2")
    assert lane.claim(first)
    inline = asyncio.ensure_future(lane.run_inline(first))
    await run_ready()
    lane.submit(second, coalesce=False)
    sender.open("1")
    await inline
    sender.open("2")
    assert await asyncio.wait_for(first.future, 5) == RiskOffsetResult(
        "BTC", Decimal(2), Decimal(1), True
    )
    assert sender.sent == ["1", "2"]


async def test_cancelling_the_inline_caller_frees_the_lane() -> None:
    registry = LaneRegistry()
    sender = ScriptedSender()
    lane = registry.lane("k")
    first = make(sender, "1")
    assert lane.claim(first)
    inline = asyncio.ensure_future(lane.run_inline(first))
    await run_ready()
    inline.cancel()
    with pytest.raises(asyncio.CancelledError):
        await inline
    assert first.future.cancelled()
    assert len(registry) == 0 and lane.claim(make(sender, "2"))


# -- settling uncertain outcomes (virtual time) -------------------------------------------


class Exchange:
    """A fake exchange behind a lane. `script[text]` says how the next request of that
    value goes: "ok", or ("late", apply_at, landing): the request's outcome is unknown
    (the lane is told its landing horizon), the exchange applies it at `apply_at`, and
    a retry of the same value succeeds at once; or "fail": refused, not applied."""

    def __init__(self) -> None:
        self.value: str | None = None
        self.sent: list[tuple[float, str, bool]] = []  # (time, value, re-assert)
        self.script: dict[str, object] = {}

    async def __call__(self, update: Update, lane: Lane) -> Decimal:
        loop = asyncio.get_running_loop()
        self.sent.append((loop.time(), update.text, update.reassert))
        lane.attempt_sent()
        how = self.script.pop(update.text, "ok") if not update.reassert else "ok"
        if how == "fail":
            raise RuntimeError("refused")
        if isinstance(how, tuple):
            _, apply_at, landing = how
            loop.call_at(apply_at, setattr, self, "value", update.text)
            lane.note_uncertain(landing)
            lane.attempt_sent()  # the retry
        self.value = update.text
        return update.amount


def send(lane: Lane, exchange: Exchange, text: str) -> asyncio.Future[RiskOffsetResult]:
    update = make(exchange, text)
    lane.submit(update, coalesce=True)
    return update.future


async def uncertain_lane() -> tuple[LaneRegistry, Exchange, Lane, RiskOffsetResult]:
    """A lane whose first value "1" was answered by its retry while its first request's
    outcome stays unknown: the exchange applies that request at 4.0 s, and the lane
    holds it uncertain up to its landing horizon, 5.0 s. Also the answer to "1"."""
    registry, exchange = LaneRegistry(), Exchange()
    lane = registry.lane("k")
    exchange.script["1"] = ("late", 4.0, 5.0)
    first = await send(lane, exchange, "1")
    return registry, exchange, lane, first


def test_the_newest_value_is_reasserted_after_the_horizon() -> None:
    async def main() -> None:
        registry, exchange, lane, first = await uncertain_lane()
        assert (first.attempts, first.sent) == (2, True)
        await send(lane, exchange, "2")
        await asyncio.sleep(4.5)
        assert exchange.value == "1"  # the uncertain request landed after the newer value
        assert len(registry) == 1  # the lane waits to settle
        await asyncio.sleep(1)
        assert exchange.value == "2"
        assert exchange.sent[-1] == (5.0, "2", True)  # exactly at the landing horizon
        await asyncio.sleep(10)
        assert len(exchange.sent) == 3 and len(registry) == 0  # settled, once

    run_virtual(main)


def test_no_reassert_while_the_newest_value_is_the_uncertain_one() -> None:
    async def main() -> None:
        registry, exchange, _, _ = await uncertain_lane()
        await asyncio.sleep(4.9)
        assert len(registry) == 1  # kept: a newer value would have to wait the entry out
        await asyncio.sleep(0.2)
        assert len(registry) == 0 and [s[1] for s in exchange.sent] == ["1"]

    run_virtual(main)


def test_a_newest_value_that_failed_is_never_replaced_by_an_older_one() -> None:
    async def main() -> None:
        registry, exchange, lane, _ = await uncertain_lane()
        exchange.script["2"] = "fail"
        with pytest.raises(RuntimeError):
            await send(lane, exchange, "2")
        await asyncio.sleep(4.5)
        assert [s[1] for s in exchange.sent] == ["1", "2"]  # "1" is not re-asserted
        assert exchange.value == "1" and len(registry) == 1
        # A later value still waits out the older uncertain request.
        await send(registry.lane("k"), exchange, "3")
        await asyncio.sleep(10)
        assert exchange.sent[-1] == (5.0, "3", True) and exchange.value == "3"
        assert len(registry) == 0

    run_virtual(main)


def test_a_value_set_during_the_wait_is_the_one_reasserted() -> None:
    async def main() -> None:
        _, exchange, lane, _ = await uncertain_lane()
        await send(lane, exchange, "2")
        await asyncio.sleep(4.5)
        await send(lane, exchange, "3")
        await asyncio.sleep(1)
        assert exchange.value == "3"
        assert exchange.sent[-1] == (5.0, "3", True)

    run_virtual(main)


def test_stop_settling_drops_only_the_closing_senders_reasserts() -> None:
    async def main() -> None:
        registry, exchange, lane, _ = await uncertain_lane()
        other = Exchange()
        await send(lane, exchange, "2")
        assert registry.stop_settling(other) == 0
        assert registry.stop_settling(exchange) == 1
        await asyncio.sleep(10)
        assert exchange.value == "1"  # what close() leaves uncertain
        assert len(exchange.sent) == 2 and len(registry) == 0

    run_virtual(main)


def test_after_the_newest_value_failed_no_older_value_is_reasserted() -> None:
    async def main() -> None:
        _, exchange, lane, _ = await uncertain_lane()
        exchange.script["3"] = "fail"
        await send(lane, exchange, "2")  # a re-assert of "2" is now due at 5.0
        with pytest.raises(RuntimeError):
            await send(lane, exchange, "3")
        await asyncio.sleep(10)
        assert [s[1] for s in exchange.sent] == ["1", "2", "3"]

    run_virtual(main)


def test_after_the_newest_value_was_cancelled_on_the_wire_no_older_value_is_reasserted() -> None:
    async def main() -> None:
        registry, exchange, lane, _ = await uncertain_lane()
        await send(lane, exchange, "2")

        async def hangs(update: Update, lane: Lane) -> Decimal:
            lane.attempt_sent()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                lane.note_uncertain(asyncio.get_running_loop().time() + 5)
                raise
            raise AssertionError("not reached")

        third = make(exchange, "3")
        third.send = hangs
        assert lane.claim(third)
        inline = asyncio.ensure_future(lane.run_inline(third))
        await asyncio.sleep(1)
        inline.cancel()
        with pytest.raises(asyncio.CancelledError):
            await inline
        await asyncio.sleep(10)
        # "3" may have been applied: re-asserting "2" could undo it.
        assert [s[1] for s in exchange.sent] == ["1", "2"]
        assert len(registry) == 0

    run_virtual(main)
