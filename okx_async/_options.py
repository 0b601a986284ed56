"""ClientOptions: OKXClient's keyword arguments, validated in one place.

Credentials are not options: they go straight into `Credentials` (and out of every frame
that could appear in a traceback). Everything else a client is built from is checked
here, in the order the constructor always checked it, and kept in one frozen object the
client then wires its parts from. The network options (`proxy`, `local_addr`,
`session`) are checked by the transport that uses them; the store options
(`limiter`, `limiter_url`, `redis_url` and their environment variables) by
`_limiter._urls.client_backend`.

`env_flag` is the one reading of a yes/no text (OKX_DEMO, `demo="true"`), shared with
the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import TYPE_CHECKING, Any, Final, TypedDict, cast

from ._defaults import (
    CONNECT_TIMEOUT,
    DEFAULT_BASE_URL,
    ENV_API_KEY,
    ENV_BASE_URL,
    ENV_DEMO,
    ENV_PASSPHRASE,
    ENV_SECRET_KEY,
    LANDING_HORIZON,
    REQUEST_TIMEOUT,
)
from ._errors import InvalidInputError
from ._retry import RetryPolicy
from ._urls import mask_url_credentials, masked, resolve_base_url

if TYPE_CHECKING:
    import aiohttp
    from opentelemetry.metrics import MeterProvider
    from typing_extensions import Unpack

    from ._limits import LimiterBackend
    from ._stats import ClientEvent

__all__ = [
    "ClientKeywords",
    "ClientOptions",
    "env_flag",
    "is_positive_number",
    "keywords_from_env",
    "mask_urls",
]

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


def env_flag(name: str, value: str) -> bool:
    """`value` as a bool: 1/true/yes/on or 0/false/no/off (any case, spaces around
    ignored; empty is False). InvalidInputError naming `name` for anything else."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidInputError(f"{name} must be 1/0, true/false, yes/no or on/off, not {value!r}")


def keywords_from_env(overrides: dict[str, Any]) -> dict[str, Any]:
    """OKXClient's keywords from OKX_API_KEY, OKX_SECRET_KEY, OKX_PASSPHRASE and the
    optional OKX_BASE_URL and OKX_DEMO (read by `env_flag`), `overrides` winning.
    InvalidInputError names a missing or malformed variable, never a secret's value;
    it is raised before any secret is read into a local of this frame."""
    names = {"api_key": ENV_API_KEY, "secret_key": ENV_SECRET_KEY, "passphrase": ENV_PASSPHRASE}
    missing = [
        env for arg, env in names.items() if arg not in overrides and not os.environ.get(env)
    ]
    if missing:
        raise InvalidInputError(f"missing environment variable(s): {', '.join(missing)}")
    keywords: dict[str, Any] = {}
    if "demo" not in overrides and ENV_DEMO in os.environ:
        keywords["demo"] = env_flag(ENV_DEMO, os.environ[ENV_DEMO])
    if "base_url" not in overrides and os.environ.get(ENV_BASE_URL):
        keywords["base_url"] = os.environ[ENV_BASE_URL]
    keywords.update((arg, os.environ[env]) for arg, env in names.items() if arg not in overrides)
    keywords.update(overrides)
    return keywords


def is_positive_number(value: object) -> bool:
    """A finite number of seconds above 0 (not a bool)."""
    # bool is an int; NaN fails "> 0"; inf would never time out, which is no timeout.
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")
    )


def _demo_flag(demo: object) -> bool:
    """`demo=` as a bool: a str is read exactly as OKX_DEMO is (`env_flag`)."""
    if isinstance(demo, bool):
        return demo
    if isinstance(demo, str):
        return env_flag("demo", demo)
    raise InvalidInputError(
        "demo must be a bool, or a str as OKX_DEMO takes it (1/0, true/false, yes/no or "
        f"on/off), not {type(demo).__name__} {demo!r}"[:160]
    )


def _check_bools(**flags: object) -> None:
    """The other yes/no options take a bool only: a str such as 'no' is truthy, so
    accepting any value would read coalesce='no' as True."""
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise InvalidInputError(
                f"{name} must be True or False, not {type(value).__name__} {value!r}"[:160]
            )


class ClientKeywords(TypedDict, total=False):
    """The keyword arguments of `OKXClient(...)` besides the credentials, each optional,
    as a caller passes them; `ClientOptions` holds them validated. Every problem with
    one raises InvalidInputError (a URL's credentials masked) before anything is sent."""

    base_url: str
    """Default "https://www.okx.com": a region name ("global", "eea", "us") or an https
    URL without path or query; plain http only to a loopback host, unless
    `allow_insecure_http`."""
    demo: bool | str
    """Default False: demo trading, a budget separate from live. A str is read as
    OKX_DEMO is: 1/0, true/false, yes/no, on/off."""
    user_id: str | None
    """OKX's User ID (digits) when known; default None: one `account/config` call
    learns it before the first set."""
    coalesce: bool
    """Default True: a newer value for a currency replaces older ones still waiting."""
    retry: RetryPolicy | None
    """Default None, meaning RetryPolicy(): 6 attempts, full-jitter backoff from
    0.25 s capped at 8 s."""
    request_timeout: float
    """Seconds, > 0 and finite, default 10.0: one attempt, end to end."""
    connect_timeout: float
    """Seconds, > 0 and finite, default 5.0: opening a connection."""
    allow_insecure_http: bool
    """Default False: True allows a plain-http `base_url` to a host not on loopback."""
    limiter: LimiterBackend | None
    """A rate-limit store shared with other clients, never closed by the client.
    Default None: the store of `limiter_url`, else of the environment's
    OKX_ASYNC_LIMITER_URL (alias OKX_ASYNC_REDIS_URL), else the event loop's
    in-process store."""
    limiter_url: str | None
    """"memory://", "sqlite:///ABS/PATH" (`?hold_new_file=false` to skip the new file's
    one-window hold), "redis://", "rediss://", "unix://" or "redis+cluster://": a store
    the client opens, and closes in `close()`; InvalidInputError for any other. Default
    None."""
    redis_url: str | None
    """An alias of `limiter_url` (passing both is an error). Default None."""
    redis_fallback_share: float | None
    """In (0, 1], default None: during a Redis outage, pace locally at this share of
    each limit instead of failing fast."""
    on_event: Callable[[ClientEvent], None] | None
    """Called synchronously with a ClientEvent for each request sent, answer, retry
    and superseded value; it should return quickly and not raise (nothing catches what
    it raises). Default None."""
    proxy: str | None
    """"http://[user:pass@]host:port", https, or socks4/socks5/socks5h (the `socks`
    extra); credentials masked in every message. Default None."""
    trust_env: bool
    """Default False: True takes the proxy from HTTPS_PROXY / HTTP_PROXY, honouring
    NO_PROXY."""
    local_addr: str | tuple[str, int] | None
    """The IPv4 or IPv6 source address, or (address, port 0-65535). Default None.
    Clients of one loop with equal network options share one connection pool (at most
    100 connections)."""
    session: aiohttp.ClientSession | None
    """The caller's own session, never closed by the client; excludes `proxy`,
    `trust_env` and `local_addr`. Default None."""
    meter_provider: MeterProvider | None
    """Where OpenTelemetry metrics go. Default None: the global provider, when
    opentelemetry-api is installed."""
    ssl: SSLContext | None
    """E.g. a context trusting a private CA. Default None: the system's trust store."""
    landing_horizon: float
    """Seconds, > 0 and finite, default 30.0: how long a request with an unknown
    outcome may still land at OKX; after it the newest value is re-asserted."""


_URL_OPTIONS: Final = ("base_url", "proxy", "limiter_url", "redis_url")


def mask_urls(keywords: ClientKeywords) -> None:
    """Wrap the URL options of `keywords` in place as `MaskedURL`s: URLs may carry
    passwords, and every frame that holds them from here on shows them masked."""
    for name in _URL_OPTIONS:
        if name in keywords:
            keywords[name] = masked(keywords[name])


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Everything but the credentials an OKXClient is built from, validated and final.

    `ClientOptions(**keywords)` (or `ClientOptions.build(**keywords)`) takes the
    keywords of `ClientKeywords`, with the defaults below; see OKXClient for each
    option's units and range. Raises InvalidInputError (a URL's credentials masked),
    in the order: the bool-only options (`coalesce`, `allow_insecure_http`,
    `trust_env`), `base_url`, the timeouts, `user_id`, `demo` (a bool, or a str read by
    `env_flag` as OKX_DEMO is), `ssl`. The network options (`proxy`, `local_addr`,
    `session`) are checked by the transport that uses them; the store options by
    `_limiter._urls.client_backend`."""

    base_url: str = DEFAULT_BASE_URL  # a checked URL without a trailing slash
    demo: bool = False  # a str given is read by env_flag
    user_id: str | None = None
    coalesce: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)  # None given: the default
    request_timeout: float = REQUEST_TIMEOUT
    connect_timeout: float = CONNECT_TIMEOUT
    allow_insecure_http: bool = False
    limiter: LimiterBackend | None = field(default=None, repr=False)
    limiter_url: str | None = field(default=None, repr=False)  # masked in __repr__
    redis_url: str | None = field(default=None, repr=False)
    redis_fallback_share: float | None = None
    on_event: Callable[[ClientEvent], None] | None = field(default=None, repr=False)
    proxy: str | None = field(default=None, repr=False)  # masked in __repr__
    trust_env: bool = False
    local_addr: str | tuple[str, int] | None = None
    session: aiohttp.ClientSession | None = field(default=None, repr=False)
    meter_provider: MeterProvider | None = field(default=None, repr=False)
    ssl: SSLContext | None = field(default=None, repr=False)
    landing_horizon: float = LANDING_HORIZON  # seconds; see the README's "last value"

    def __post_init__(self) -> None:
        _check_bools(
            coalesce=self.coalesce,
            allow_insecure_http=self.allow_insecure_http,
            trust_env=self.trust_env,
        )
        base_url = resolve_base_url(self.base_url, allow_insecure_http=self.allow_insecure_http)
        for name in ("request_timeout", "connect_timeout", "landing_horizon"):
            if not is_positive_number(getattr(self, name)):
                raise InvalidInputError(f"{name} must be a positive number of seconds")
        user_id = self.user_id
        if user_id is not None and (not isinstance(user_id, str) or not user_id.isdigit()):
            raise InvalidInputError("user_id must be OKX's numeric User ID as a string")
        demo = _demo_flag(self.demo)
        if self.ssl is not None and not isinstance(self.ssl, SSLContext):
            raise InvalidInputError(
                "ssl must be an ssl.SSLContext (e.g. ssl.create_default_context("
                f"cafile='/path/to/ca.pem')) or None, not {type(self.ssl).__name__}"
            )
        # Frozen: the normalised values are set the way dataclasses set fields.
        normalised = {
            "base_url": masked(base_url),
            "demo": demo,
            "retry": self.retry or RetryPolicy(),
            "landing_horizon": float(self.landing_horizon),
            "proxy": masked(self.proxy),
            "limiter_url": masked(self.limiter_url),
            "redis_url": masked(self.redis_url),
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    @classmethod
    def build(cls, **keywords: Unpack[ClientKeywords]) -> ClientOptions:
        """The same as `ClientOptions(**keywords)`, typed for what callers pass (`demo`
        may be a str, `retry` None)."""
        return cls(**cast("dict[str, Any]", keywords))

    def __repr__(self) -> str:
        proxy = None if self.proxy is None else mask_url_credentials(self.proxy)
        limiter_url = self.limiter_url or self.redis_url
        store = None if limiter_url is None else mask_url_credentials(limiter_url)
        return (
            f"ClientOptions(base_url={self.base_url!r}, demo={self.demo}, "
            f"user_id={self.user_id!r}, coalesce={self.coalesce}, retry={self.retry!r}, "
            f"request_timeout={self.request_timeout:g}, "
            f"connect_timeout={self.connect_timeout:g}, proxy={proxy!r}, "
            f"limiter_url={store!r}, trust_env={self.trust_env})"
        )
