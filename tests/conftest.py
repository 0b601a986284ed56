"""Shared test set-up."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import aioresponses.core
import pytest

from okx_async import Credentials


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


@pytest.fixture(autouse=True)
def no_secret_in_any_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Across every test's scenario: no secret key, passphrase or signature made during
    the test appears in any log record (okx_async, aiohttp, asyncio), at DEBUG."""
    secrets: set[str] = set()
    original_init = Credentials.__init__
    original_signature = Credentials.signature

    def init(self: Credentials, *, api_key: str, secret_key: str, passphrase: str) -> None:
        original_init(self, api_key=api_key, secret_key=secret_key, passphrase=passphrase)
        secrets.update((secret_key, passphrase))

    def signature(self: Credentials, *args: Any) -> str:
        sig = original_signature(self, *args)
        secrets.add(sig)
        return sig

    monkeypatch.setattr(Credentials, "__init__", init)
    monkeypatch.setattr(Credentials, "signature", signature)
    caplog.set_level(logging.DEBUG)
    yield
    texts = [r.getMessage() + str(r.exc_info or "") for r in caplog.records]
    leaked = [s for s in secrets if len(s) >= 4 and any(s in t for t in texts)]
    assert not leaked, "a secret appeared in a log record"
