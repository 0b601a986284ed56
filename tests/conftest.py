"""Shared test set-up."""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import aioresponses.core
import pytest

from okx_async import Credentials, OKXClient, OKXError


def _patch_aioresponses_for_aiohttp_314() -> None:
    """aioresponses 0.7.9 builds ClientResponse without the `stream_writer` argument that
    aiohttp 3.14 made required (pnuckowski/aioresponses#289). Supply a stand-in writer
    that reports no upload. Does nothing once either side no longer needs it."""
    params = inspect.signature(aiohttp.ClientResponse.__init__).parameters
    if "stream_writer" not in params or getattr(aioresponses.core, "_okx_patched", False):
        return

    class _CompatResponse(aiohttp.ClientResponse):
        def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
            kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
            super().__init__(method, url, **kwargs)

    original = aioresponses.core.RequestMatch._build_response

    def build_response(self: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("response_class") is None:
            kwargs["response_class"] = _CompatResponse
        return original(self, *args, **kwargs)

    aioresponses.core.RequestMatch._build_response = build_response  # type: ignore[method-assign]
    aioresponses.core._okx_patched = True  # type: ignore[attr-defined]


_patch_aioresponses_for_aiohttp_314()


# Which event loop pytest-asyncio runs the async tests on: OKX_ASYNC_TEST_LOOP=uvloop (.ci/run
# runs the suite once so) or "asyncio" (the default). Tests that make their own loop
# (tests/virtual_time.py, asyncio.run in a sync test) keep asyncio's. pytest-asyncio 1.4+
# takes loop factories from this hook (overriding the event_loop_policy fixture is
# deprecated there); it is only defined when it has something to return, because an
# implementation that returns nothing is a usage error.
TEST_LOOP = os.environ.get("OKX_ASYNC_TEST_LOOP", "asyncio")
if TEST_LOOP == "uvloop":

    @pytest.hookimpl(optionalhook=True)
    def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Any:
        import uvloop

        return {"uvloop": uvloop.new_event_loop}

elif TEST_LOOP != "asyncio":
    raise pytest.UsageError(f"OKX_ASYNC_TEST_LOOP={TEST_LOOP!r}: expected 'asyncio' or 'uvloop'")


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and what it was raised from (or during), a few levels deep."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(seen) < 6 and current not in seen:
        seen.append(current)
        yield current
        current = current.__cause__ or current.__context__


@pytest.fixture(autouse=True)
def no_secret_in_any_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Across every test's scenario: no secret key, passphrase or signature made during
    the test appears in any log record (okx_async, aiohttp, asyncio, at DEBUG), in any
    okx_async exception created (str, repr, and what it was raised from), or in the repr
    of any client or its stats."""
    secrets: set[str] = set()
    errors: list[OKXError] = []
    clients: list[OKXClient] = []
    original_init = Credentials.__init__
    original_headers = Credentials.headers  # every signature is made in headers()
    original_client_init = OKXClient.__init__

    def init(self: Credentials, *, api_key: str, secret_key: str, passphrase: str) -> None:
        original_init(self, api_key=api_key, secret_key=secret_key, passphrase=passphrase)
        secrets.update((secret_key, passphrase))

    def headers(self: Credentials, *args: Any) -> dict[str, str]:
        made = original_headers(self, *args)
        secrets.add(made["OK-ACCESS-SIGN"])
        return made

    def error_init(self: OKXError, *args: Any) -> None:
        Exception.__init__(self, *args)
        errors.append(self)

    def client_init(self: OKXClient, **kwargs: Any) -> None:
        original_client_init(self, **kwargs)
        clients.append(self)

    monkeypatch.setattr(Credentials, "__init__", init)
    monkeypatch.setattr(Credentials, "headers", headers)
    monkeypatch.setattr(OKXError, "__init__", error_init)
    monkeypatch.setattr(OKXClient, "__init__", client_init)
    caplog.set_level(logging.DEBUG)
    yield
    texts = [r.getMessage() + str(r.exc_info or "") for r in caplog.records]
    for error in errors:
        texts += [f"{e}{e!r}" for e in _chain(error)]
    texts += [f"{c!r}{c.stats()!r}" for c in clients]
    leaked = [s for s in secrets if len(s) >= 4 and any(s in t for t in texts)]
    assert not leaked, "a secret appeared in a log record, an exception or a repr"
