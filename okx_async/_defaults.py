"""Every default of okx_async, named in one place."""

from __future__ import annotations

from typing import Final

# Hosts. A key only works on the host of the region it was made in (else 50119).
GLOBAL_URL: Final = "https://www.okx.com"
OPENAPI_URL: Final = "https://openapi.okx.com"
EEA_URL: Final = "https://eea.okx.com"
US_URL: Final = "https://us.okx.com"
REGION_URLS: Final = {"global": GLOBAL_URL, "eea": EEA_URL, "us": US_URL}
DEFAULT_BASE_URL: Final = GLOBAL_URL

# Endpoint paths.
SET_RISK_OFFSET_PATH: Final = "/api/v5/account/set-riskOffset-amt"
ACCOUNT_CONFIG_PATH: Final = "/api/v5/account/config"
BALANCE_PATH: Final = "/api/v5/account/balance"
SERVER_TIME_PATH: Final = "/api/v5/public/time"

# Environment variables, read only when the matching argument is not given.
ENV_API_KEY: Final = "OKX_API_KEY"
ENV_SECRET_KEY: Final = "OKX_SECRET_KEY"
ENV_PASSPHRASE: Final = "OKX_PASSPHRASE"
ENV_BASE_URL: Final = "OKX_BASE_URL"
ENV_DEMO: Final = "OKX_DEMO"
ENV_REDIS_URL: Final = "OKX_ASYNC_REDIS_URL"  # an alias of ENV_LIMITER_URL for Redis URLs
ENV_LIMITER_URL: Final = "OKX_ASYNC_LIMITER_URL"

# Transport.
CONNECT_TIMEOUT: Final = 5.0
REQUEST_TIMEOUT: Final = 10.0
CONNECTION_LIMIT: Final = 100
ERROR_BODY_PREVIEW: Final = 200  # characters of a non-OKX body kept in the error
CLOSE_DRAIN_TIMEOUT: Final = 5.0  # close() lets pending calls finish this long

# Clock: OKX rejects timestamps more than 30 s off (50102).
SERVER_CLOCK_TOLERANCE: Final = 30.0

# Uncertain outcomes (a request timed out, dropped, cancelled on the wire, or answered
# 50004/5xx) may still be applied by OKX later. The client assumes none is applied more
# than this many seconds after the client stopped waiting for it, and re-asserts the
# newest value once that much time has passed (see README, "The last value sticks").
# 30 s: OKX refuses a request whose timestamp is over 30 s off its clock (50102), and it
# is 3x the default request timeout.
LANDING_HORIZON: Final = 30.0

# Retries: capped exponential backoff with full jitter.
MAX_ATTEMPTS: Final = 6
BACKOFF_BASE: Final = 0.25
BACKOFF_CAP: Final = 8.0

# Rate limiting.
RATE_LIMIT_RECOVERY_WINDOWS: Final = 10  # clean windows before the burst doubles again
MAX_PENDING_PER_KEY: Final = 10_000
QUEUE_WAIT_SAMPLES: Final = 2048  # queue-wait samples kept for p50/p99

# Redis limiter.
REDIS_KEY_PREFIX: Final = "okx_async"
REDIS_INFLIGHT_TTL: Final = 60.0  # a lease whose holder died expires after this
REDIS_OPERATION_TIMEOUT: Final = 1.0
REDIS_TICKET_GRACE: Final = 2.0  # a waiter's ticket outlives its answered try-at by this
REDIS_FALLBACK_PROBE_INTERVAL: Final = 1.0  # during an outage, ping Redis this often
REDIS_EPOCH_TTL: Final = 86_400.0  # a budget's epoch marker outlives its idle state this long

# sqlite limiter.
SQLITE_INFLIGHT_TTL: Final = REDIS_INFLIGHT_TTL  # a lease whose holder died expires after this
SQLITE_BUSY_TIMEOUT: Final = 1.0  # seconds to wait for the write lock before giving up
SQLITE_TICKET_GRACE: Final = 2.0  # a waiter's ticket outlives its answered try-at by this
DEFAULT_LIMITER_URL: Final = "memory://"
# A shared store's lease must outlive its request: an unanswered one is released only at
# request_timeout + landing_horizon after its grant (this margin covers the steps between
# the grant and the send, and the store's wall clock against the loop's).
LEASE_TTL_MARGIN: Final = 5.0
# A lane claim (cross-process ordering, sqlite) not renewed for this long lapses: a
# crashed holder blocks its currency at most this long; waiters re-check this often.
LANE_CLAIM_TTL: Final = 2.0

# Input limits.
CCY_MAX_LENGTH: Final = 20
AMOUNT_MAX_DIGITS: Final = 40  # digits of a plain amount string; beyond this it is absurd
