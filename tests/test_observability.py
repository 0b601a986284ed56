"""stats(), the metrics hook and DEBUG retry logs tell what happened, and why."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from okx_async import ClientEvent, OKXClient, RetryPolicy
from okx_async.simulator import SimKey, Simulator, SimulatorConfig, SimulatorServer, SimUser

KEY = SimKey("obs-key", "obs-secret-value", "obs-passphrase")


@pytest.fixture
async def sim() -> AsyncIterator[tuple[Simulator, str]]:
    simulator = Simulator(SimulatorConfig(users=[SimUser(uid="4004", keys=[KEY])]))
    async with SimulatorServer(simulator) as server:
        yield simulator, server.base_url


async def test_events_stats_and_debug_logs(
    sim: tuple[Simulator, str], caplog: pytest.LogCaptureFixture
) -> None:
    simulator, url = sim
    events: list[ClientEvent] = []
    caplog.set_level(logging.DEBUG, logger="okx_async")
    client = OKXClient(
        api_key=KEY.api_key,
        secret_key=KEY.secret_key,
        passphrase=KEY.passphrase,
        base_url=url,
        user_id="4004",
        retry=RetryPolicy(backoff_base=0.01, backoff_cap=0.02),
        on_event=events.append,
    )
    async with client:
        simulator.script_faults(["busy_50013", "html_502"])
        await client.set_risk_offset_amount("BTC", "1")
        # Three values at once: the idle lane sends the first at once, the second waits
        # and is replaced by the third.
        results = await asyncio.gather(
            *(client.set_risk_offset_amount("ETH", v) for v in ("1", "2", "3"))
        )
        stats = client.stats()
    assert [(r.superseded, r.amount, r.requested) for r in results] == [
        (False, 1, 1),
        (True, 3, 2),
        (False, 3, 3),
    ]
    assert simulator.values("4004") == {"BTC": "1", "ETH": "3"}
    kinds = [e.kind for e in events if e.path.endswith("set-riskOffset-amt")]
    assert kinds.count("retry") == 2 and kinds.count("superseded") == 1
    assert kinds.count("sent") == 5 and kinds.count("succeeded") == 3
    retry_errors = [e.error for e in events if e.kind == "retry"]
    assert retry_errors == ["ExchangeBusyError 50013", "UnexpectedResponseError"]
    assert all(e.delay >= 0 for e in events)
    assert (stats.retried, stats.superseded, stats.succeeded, stats.failed) == (2, 1, 3, 0)
    assert stats.sent >= 5 and stats.queued == 0 and stats.in_flight == 0
    assert 0 <= stats.queue_wait_p50 <= stats.queue_wait_p99
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("50013" in line and "attempt 1" in line for line in lines), lines
    assert any("UnexpectedResponseError" in line and "attempt 2" in line for line in lines)
