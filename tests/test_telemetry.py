"""OpenTelemetry metrics, read back through the SDK's InMemoryMetricReader."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sim_support import client_of, served
from virtual_time import run_virtual
from yarl import URL

from okx_async import OKXClient, RetryPolicy
from okx_async.simulator import SET_PATH, SimKey, SimUser

KEY = SimKey("otel-key", "otel-secret-value", "otel-passphrase")
UID = "6006"


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Every data point of every metric, by metric name."""
    found: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def make_client(url: str, provider: Any, **kwargs: Any) -> OKXClient:
    return client_of(
        KEY,
        url,
        user_id=UID,
        retry=RetryPolicy(backoff_base=0.01, backoff_cap=0.02),
        meter_provider=provider,
        **kwargs,
    )


def test_every_instrument_records_what_happened() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        async with served([SimUser(uid=UID, keys=[KEY])]) as (simulator, url):
            client = make_client(url, provider)
            async with client:
                simulator.script_faults(["busy_50013"])
                await client.set_risk_offset_amount("BTC", "1")  # one retry, then 200
                # Three values at once: the second is superseded by the third.
                await asyncio.gather(
                    *(client.set_risk_offset_amount("ETH", v) for v in ("1", "2", "3"))
                )
                # Every request so far was answered within the last window: all cooling.
                seen["slots"] = points(reader).get("okx_async.limiter.slots.in_use")
                seen["sent_by_then"] = client.stats().sent + client.stats().lookups
                # One slot per 2 s at the simulator: the second call at once gets 50011.
                simulator.limits[SET_PATH] = (1, 2.0)
                await asyncio.sleep(2.5)
                await asyncio.gather(
                    client.set_risk_offset_amount("SOL", "1"),
                    client.set_risk_offset_amount("XRP", "1"),
                )
                seen["stats"] = client.stats()
                seen["port"] = URL(url).port

    run_virtual(scenario)
    stats = seen["stats"]
    found = points(reader)

    durations = found["http.client.request.duration"]
    ok = [p for p in durations if "error.type" not in p.attributes]
    failed = [p for p in durations if "error.type" in p.attributes]
    # Set requests are `sent`; the clock sync is one of the `lookups`.
    assert sum(p.count for p in durations) == stats.sent + stats.lookups
    assert {dict(p.attributes)["http.request.method"] for p in ok} == {"GET", "POST"}
    post = next(p for p in ok if p.attributes["http.request.method"] == "POST")
    assert dict(post.attributes) == {
        "http.request.method": "POST",
        "server.address": "127.0.0.1",
        "server.port": seen["port"],
        "url.scheme": "http",
        "http.response.status_code": 200,
    }
    # 50013 and 50011 both come with HTTP 429: the convention's error.type is the status.
    assert {p.attributes["error.type"] for p in failed} == {"429"}
    assert sum(p.count for p in failed) == stats.retried == 1 + stats.rate_limited

    waits = found["okx_async.limiter.wait.duration"]
    assert sum(p.count for p in waits) == stats.sent + stats.lookups
    assert max(p.max for p in waits) >= 1.0  # the retry after 50011 waited out the hold

    (limited,) = found["okx_async.rate_limited"]
    assert limited.value == stats.rate_limited >= 1
    retries = {p.attributes["okx_async.retry.reason"]: p.value for p in found["okx_async.retries"]}
    assert retries == {"ExchangeBusyError 50013": 1, "RateLimitedError 50011": stats.rate_limited}
    (superseded,) = found["okx_async.superseded"]
    assert superseded.value == stats.superseded == 1

    # Just after the calls, their slots cool down: held plus cooling, in one total.
    (slots,) = seen["slots"]
    assert not slots.attributes
    assert slots.value == seen["sent_by_then"] == 5  # clock sync, BTC twice, ETH twice

    every_value = [
        str(v)
        for name in found
        for p in found[name]
        for v in list(p.attributes.values()) + list(p.attributes.keys())
    ]
    assert not [v for v in every_value if UID in v or KEY.api_key in v]


async def test_no_op_provider_means_no_metrics_object() -> None:
    client = make_client("http://127.0.0.1:1", NoOpMeterProvider())
    assert client._metrics is None
    default = make_client("http://127.0.0.1:1", None)  # the API's global proxy provider
    assert default._metrics is not None  # records once the application installs an SDK


@pytest.mark.parametrize("count", [3])
async def test_clients_share_one_set_of_instruments(count: int) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    clients = [make_client("http://127.0.0.1:1", provider) for _ in range(count)]
    assert len({id(c._metrics._instruments) for c in clients if c._metrics}) == 1


async def test_backends_are_watched_weakly_and_odd_ones_tolerated() -> None:
    from okx_async._redis_limiter import RedisLimiterBackend

    class SlotsOnly:  # a backend of another author: no weak references, no snapshots()
        __slots__ = ()

        def limiter(self, key: Any, rate: Any) -> Any:
            raise NotImplementedError

        async def aclose(self) -> None:
            pass

    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    make_client("http://127.0.0.1:1", provider, limiter=SlotsOnly())
    redis = RedisLimiterBackend("redis://127.0.0.1:1/0")
    client = make_client("http://127.0.0.1:1", provider, limiter=redis)
    assert client._metrics is not None and redis in client._metrics._instruments.backends
    await redis.aclose()
