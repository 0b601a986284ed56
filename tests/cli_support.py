"""What the CLI tests share: running `main()` beside the test's own event loop, and
handing a simulator key to the CLI through the environment."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from okx_async.cli import main
from okx_async.simulator import SimKey, Simulator, SimulatorConfig, SimulatorServer, SimUser


async def run_cli(*argv: str | Path) -> int:
    """main() in a worker thread: it runs its own event loop, the simulator runs in ours."""
    return await asyncio.to_thread(main, [str(a) for a in argv])


@contextlib.asynccontextmanager
async def served(users: Iterable[SimUser]) -> AsyncIterator[tuple[Simulator, str]]:
    """A simulator of `users` on a free loopback port: (the simulator, its base URL)."""
    simulator = Simulator(SimulatorConfig(users=list(users)))
    async with SimulatorServer(simulator) as server:
        yield simulator, server.base_url


def use_key(monkeypatch: pytest.MonkeyPatch, url: str, key: SimKey) -> None:
    """Point the CLI at `url` with `key`'s credentials, as a user's environment would."""
    monkeypatch.setenv("OKX_API_KEY", key.api_key)
    monkeypatch.setenv("OKX_SECRET_KEY", key.secret_key)
    monkeypatch.setenv("OKX_PASSPHRASE", key.passphrase)
    monkeypatch.setenv("OKX_BASE_URL", url)
