"""ServerClock: the offset from OKX's clock, and the timestamps signed with it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from okx_async import _clock, format_timestamp
from okx_async._clock import ServerClock


@pytest.mark.parametrize("local", [1704067157.507, 1704067199.9995, 1607418537.715])
def test_timestamp_is_the_local_time_plus_the_measured_offset(
    local: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    readings = iter([local - 0.2, local + 0.2])  # before and after the server's answer

    async def server_time() -> float:
        return local + 42.5

    clock = ServerClock()
    # Only the clock module's view of time.time: asyncio's own use of it stays real.
    monkeypatch.setattr(_clock, "time", SimpleNamespace(time=lambda: next(readings)))
    asyncio.run(clock.ensure_synced(server_time))
    assert clock.synced
    assert clock.offset == pytest.approx(42.5)

    monkeypatch.setattr(_clock, "time", SimpleNamespace(time=lambda: local))
    assert clock.timestamp() == format_timestamp(local + clock.offset)
