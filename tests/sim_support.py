"""What tests against the simulator share: serving one, a client for one of its keys,
and for the CLI, running `main()` beside the test's own event loop and handing a key
to it through the environment."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from okx_async import OKXClient
from okx_async.cli import main
from okx_async.simulator import SimKey, Simulator, SimulatorConfig, SimulatorServer, SimUser


async def run_cli(*argv: str | Path) -> int:
    """main() in a worker thread: it runs its own event loop, the simulator runs in ours."""
    return await asyncio.to_thread(main, [str(a) for a in argv])


@contextlib.asynccontextmanager
async def served(
    users: Iterable[SimUser],
    *,
    prepare: Callable[[Simulator], object] | None = None,
    **config: Any,
) -> AsyncIterator[tuple[Simulator, str]]:
    """A simulator of `users` on a free loopback port: (the simulator, its base URL).
    `prepare` gets the simulator before it serves (to add aiohttp middleware, which a
    running app no longer takes); `config`: SimulatorConfig's other fields."""
    simulator = Simulator(SimulatorConfig(users=list(users), **config))
    if prepare is not None:
        prepare(simulator)
    async with SimulatorServer(simulator) as server:
        yield simulator, server.base_url


def use_key(monkeypatch: pytest.MonkeyPatch, url: str, key: SimKey) -> None:
    """Point the CLI at `url` with `key`'s credentials, as a user's environment would."""
    monkeypatch.setenv("OKX_API_KEY", key.api_key)
    monkeypatch.setenv("OKX_SECRET_KEY", key.secret_key)
    monkeypatch.setenv("OKX_PASSPHRASE", key.passphrase)
    monkeypatch.setenv("OKX_BASE_URL", url)


def client_of(key: SimKey, base_url: str, **kwargs: Any) -> OKXClient:
    """An OKXClient signing with `key` (live or demo as the key is) against `base_url`;
    `kwargs` are OKXClient's other keyword arguments."""
    kwargs.setdefault("demo", key.demo)
    return OKXClient(
        api_key=key.api_key,
        secret_key=key.secret_key,
        passphrase=key.passphrase,
        base_url=base_url,
        **kwargs,
    )
