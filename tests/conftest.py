"""Shared test set-up."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

import aiohttp
import aioresponses.core


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
