"""Kept for imports from before the limiter had its own package (`okx_async._limiter`)."""

from __future__ import annotations

from ._limiter._memory import LocalKeyLimiter, LocalLimiterBackend, Pacer

__all__ = ["LocalKeyLimiter", "LocalLimiterBackend", "Pacer"]
