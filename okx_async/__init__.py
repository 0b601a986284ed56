"""okx_async: an asyncio client for OKX's "Set risk offset amount" endpoint.

It never exceeds OKX's per-user rate limit, keeps the last value asked for per currency,
and raises typed errors. See README.md.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._auth import Credentials, format_timestamp, parse_timestamp, sign
from ._client import OKXClient
from ._defaults import EEA_URL, GLOBAL_URL, OPENAPI_URL, US_URL
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
    TransportError,
    UnexpectedResponseError,
)
from ._limits import ENDPOINT_LIMITS, LimiterBackend, LimiterKey, LimiterSnapshot, RateLimit
from ._models import AccountConfig, RiskOffsetAmount, RiskOffsetResult
from ._retry import RetryPolicy, backoff, should_retry
from ._stats import ClientEvent, ClientStats
from ._validation import validate_amount, validate_ccy

try:
    __version__ = version("okx_async")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "ENDPOINT_LIMITS",
    "EEA_URL",
    "GLOBAL_URL",
    "OPENAPI_URL",
    "US_URL",
    "APIError",
    "AccountConfig",
    "AccountModeError",
    "AuthenticationError",
    "ClientClosedError",
    "ClientEvent",
    "ClientStats",
    "Credentials",
    "DeadlineExceededError",
    "ExchangeBusyError",
    "InvalidInputError",
    "LimiterBackend",
    "LimiterKey",
    "LimiterSnapshot",
    "LimiterUnavailableError",
    "NetworkError",
    "OKXClient",
    "OKXError",
    "ParameterError",
    "QueueFullError",
    "RateLimit",
    "RateLimitedError",
    "RequestTimeoutError",
    "RetryPolicy",
    "RiskOffsetAmount",
    "RiskOffsetResult",
    "TLSError",
    "TimestampExpiredError",
    "TransportError",
    "UnexpectedResponseError",
    "__version__",
    "backoff",
    "format_timestamp",
    "parse_timestamp",
    "should_retry",
    "sign",
    "validate_amount",
    "validate_ccy",
]
