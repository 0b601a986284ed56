"""okx_async: an asyncio client for OKX's "Set risk offset amount" endpoint.

It never exceeds OKX's per-user rate limit, keeps the last value asked for per currency,
and raises typed errors. See README.md.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from ._auth import Credentials, format_timestamp, parse_timestamp, sign
from ._client import OKXClient
from ._defaults import (
    ACCOUNT_CONFIG_PATH,
    BALANCE_PATH,
    EEA_URL,
    GLOBAL_URL,
    LANDING_HORIZON,
    OPENAPI_URL,
    REGION_URLS,
    SERVER_TIME_PATH,
    SET_RISK_OFFSET_PATH,
    US_URL,
)
from ._errors import (
    AccountModeError,
    APIError,
    AuthenticationError,
    ClientClosedError,
    DeadlineExceededError,
    ExchangeBusyError,
    InvalidInputError,
    LimiterUnavailableError,
    NetworkError,
    OKXError,
    ParameterError,
    QueueFullError,
    RateLimitedError,
    RequestTimeoutError,
    TimestampExpiredError,
    TLSError,
    TooManyOpenFilesError,
    TransportError,
    UnexpectedResponseError,
)
from ._limiter._memory import LocalKeyLimiter, LocalLimiterBackend
from ._limiter._sqlite import SqliteKeyLimiter, SqliteLimiterBackend
from ._limiter._urls import limiter_from_url
from ._limits import (
    ENDPOINT_LIMITS,
    KeyLimiter,
    Lease,
    LimiterBackend,
    LimiterKey,
    LimiterSnapshot,
    RateLimit,
    busiest_window,
)
from ._models import AccountConfig, RiskOffsetAmount, RiskOffsetResult
from ._options import ClientKeywords, ClientOptions, env_flag
from ._retry import RetryPolicy, backoff, outcome_unknown, should_retry
from ._stats import ClientEvent, ClientStats
from ._validation import validate_amount, validate_ccy

if TYPE_CHECKING:
    from ._redis_limiter import RedisKeyLimiter, RedisLimiterBackend

# Imported on first use, so that the `redis` package stays optional.
_LAZY = {"RedisKeyLimiter": "._redis_limiter", "RedisLimiterBackend": "._redis_limiter"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


try:
    __version__ = version("okx_async")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "ACCOUNT_CONFIG_PATH",
    "BALANCE_PATH",
    "ENDPOINT_LIMITS",
    "EEA_URL",
    "GLOBAL_URL",
    "LANDING_HORIZON",
    "OPENAPI_URL",
    "REGION_URLS",
    "SERVER_TIME_PATH",
    "SET_RISK_OFFSET_PATH",
    "US_URL",
    "APIError",
    "AccountConfig",
    "AccountModeError",
    "AuthenticationError",
    "ClientClosedError",
    "ClientEvent",
    "ClientKeywords",
    "ClientOptions",
    "ClientStats",
    "Credentials",
    "DeadlineExceededError",
    "ExchangeBusyError",
    "InvalidInputError",
    "KeyLimiter",
    "Lease",
    "LimiterBackend",
    "LimiterKey",
    "LimiterSnapshot",
    "LimiterUnavailableError",
    "LocalKeyLimiter",
    "LocalLimiterBackend",
    "NetworkError",
    "OKXClient",
    "OKXError",
    "ParameterError",
    "QueueFullError",
    "RateLimit",
    "RateLimitedError",
    "RedisKeyLimiter",
    "RedisLimiterBackend",
    "RequestTimeoutError",
    "RetryPolicy",
    "RiskOffsetAmount",
    "RiskOffsetResult",
    "SqliteKeyLimiter",
    "SqliteLimiterBackend",
    "TLSError",
    "TimestampExpiredError",
    "TooManyOpenFilesError",
    "TransportError",
    "UnexpectedResponseError",
    "__version__",
    "backoff",
    "busiest_window",
    "env_flag",
    "format_timestamp",
    "limiter_from_url",
    "outcome_unknown",
    "parse_timestamp",
    "should_retry",
    "sign",
    "validate_amount",
    "validate_ccy",
]
