"""A request that got no answer keeps its slot until it can no longer reach OKX.

The lease rule frees a slot one window after the moment the server's count can no longer
move: its response. A request that timed out, was cancelled on the wire or lost its
connection has no such moment; it may reach OKX up to the landing horizon later. Against
the simulator with a slow, jittery network, on a virtual clock (tests/virtual_time.py).
"""

from __future__ import annotations

import asyncio

import pytest
from virtual_time import run_virtual

from okx_async import NetworkError, OKXClient, RequestTimeoutError, RetryPolicy
from okx_async._retry import outcome_unknown
from okx_async.simulator import (
    SET_PATH,
    SimKey,
    Simulator,
    SimulatorConfig,
    SimulatorServer,
    SimUser,
)

KEY = SimKey("un-key", "un-secret-value", "un-passphrase")
UID = "6006"
CCYS = [f"C{i:02d}" for i in range(20)]


def late_then_fast(landing_horizon: float) -> Simulator:
    """20 currencies set at once, one attempt each, request timeout 0.3 s. The first 10
    reach OKX 1.5 s after they were sent, long after the client gave up on them; from
    then on the network is instant. Under the old rule (cool one window from the
    timeout) the next 10 went out at 2.3 s and arrived with the first 10 inside one
    window."""

    async def main() -> Simulator:
        config = SimulatorConfig(users=[SimUser(uid=UID, keys=[KEY], margin_ccys=CCYS)])
        simulator = Simulator(config)

        async def network_recovers() -> None:
            await asyncio.sleep(0.35)  # after the first ten timed out
            simulator.latency = (0.0, 0.0)

        async with SimulatorServer(simulator) as server:
            client = OKXClient(
                api_key=KEY.api_key,
                secret_key=KEY.secret_key,
                passphrase=KEY.passphrase,
                base_url=server.base_url,
                user_id=UID,
                request_timeout=0.3,
                retry=RetryPolicy(max_attempts=1),
                landing_horizon=landing_horizon,
            )
            async with client:
                await client.get_account_config()  # the clock sync, on a fast network
                simulator.latency = (1.5, 1.5)
                recovering = asyncio.ensure_future(network_recovers())
                results = await asyncio.gather(
                    *(client.set_risk_offset_amount(c, "1") for c in CCYS),
                    return_exceptions=True,
                )
                await recovering
                timed_out = [r for r in results if isinstance(r, RequestTimeoutError)]
                assert len(timed_out) == 10
                await asyncio.sleep(landing_horizon + 5)  # every late arrival is in
        assert len([r for r in simulator.records if r.path == SET_PATH]) == 20
        return simulator

    return run_virtual(main)


def test_timed_out_requests_keep_their_slots_until_the_landing_horizon() -> None:
    simulator = late_then_fast(landing_horizon=3.0)
    assert simulator.rate_limited_count() == 0
    assert simulator.max_in_window(UID, SET_PATH) <= 10


def test_releasing_at_the_timeout_would_overspend() -> None:
    """The same run with a landing horizon of ~0 (the old rule) puts all 20 in one
    window: the scenario can catch the bug."""
    simulator = late_then_fast(landing_horizon=1e-6)
    assert simulator.rate_limited_count() == 10


def test_a_connection_never_made_is_not_an_uncertain_outcome() -> None:
    refused = NetworkError("connection to OKX failed, nothing sent", path=SET_PATH)
    refused.sent = False
    assert not outcome_unknown(refused)
    assert outcome_unknown(NetworkError("connection dropped", path=SET_PATH))


async def test_a_refused_connection_says_nothing_was_sent() -> None:
    # A port nobody listens on: bind, read the port, close.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with OKXClient(
        api_key=KEY.api_key,
        secret_key=KEY.secret_key,
        passphrase=KEY.passphrase,
        base_url=f"http://127.0.0.1:{port}",
        user_id=UID,
        retry=RetryPolicy(max_attempts=1),
    ) as client:
        with pytest.raises(NetworkError) as info:
            await client.get_risk_offset_amounts(["BTC"])
    assert info.value.sent is False
