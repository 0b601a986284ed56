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

from collections.abc import Callable
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import TYPE_CHECKING, Final

from ._defaults import CONNECT_TIMEOUT, DEFAULT_BASE_URL, LANDING_HORIZON, REQUEST_TIMEOUT
from ._errors import InvalidInputError
from ._retry import RetryPolicy
from ._urls import mask_url_credentials, resolve_base_url

if TYPE_CHECKING:
    import aiohttp
    from opentelemetry.metrics import MeterProvider

    from ._limits import LimiterBackend
    from ._stats import ClientEvent

__all__ = ["ClientOptions", "env_flag", "is_positive_number"]

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


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Everything but the credentials an OKXClient is built from (see OKXClient for each
    option's units, range and default). Build it with `ClientOptions.build(...)`, which
    validates; the fields are then final."""

    base_url: str  # checked, without a trailing slash
    demo: bool
    user_id: str | None
    coalesce: bool
    retry: RetryPolicy
    request_timeout: float
    connect_timeout: float
    allow_insecure_http: bool
    limiter: LimiterBackend | None = field(repr=False)
    limiter_url: str | None = field(repr=False)  # masked in __repr__
    redis_url: str | None = field(repr=False)
    redis_fallback_share: float | None
    on_event: Callable[[ClientEvent], None] | None = field(repr=False)
    proxy: str | None = field(repr=False)  # may carry proxy credentials: masked in __repr__
    trust_env: bool
    local_addr: str | tuple[str, int] | None
    session: aiohttp.ClientSession | None = field(repr=False)
    meter_provider: MeterProvider | None = field(repr=False)
    ssl: SSLContext | None = field(repr=False)
    landing_horizon: float = LANDING_HORIZON  # seconds; see the README's "last value"

    @classmethod
    def build(
        cls,
        *,
        base_url: object = DEFAULT_BASE_URL,
        demo: bool | str = False,
        user_id: str | None = None,
        coalesce: bool = True,
        retry: RetryPolicy | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        allow_insecure_http: bool = False,
        limiter: LimiterBackend | None = None,
        limiter_url: str | None = None,
        redis_url: str | None = None,
        redis_fallback_share: float | None = None,
        on_event: Callable[[ClientEvent], None] | None = None,
        proxy: str | None = None,
        trust_env: bool = False,
        local_addr: str | tuple[str, int] | None = None,
        session: aiohttp.ClientSession | None = None,
        meter_provider: MeterProvider | None = None,
        ssl: SSLContext | None = None,
        landing_horizon: float = LANDING_HORIZON,
    ) -> ClientOptions:
        """Validated options. Raises InvalidInputError (a URL's credentials masked).
        `coalesce`, `allow_insecure_http` and `trust_env` take a bool only; `demo` a bool
        or a str read by `env_flag`, as OKX_DEMO is."""
        _check_bools(
            coalesce=coalesce, allow_insecure_http=allow_insecure_http, trust_env=trust_env
        )
        checked_url = resolve_base_url(base_url, allow_insecure_http=allow_insecure_http)
        for name, value in (
            ("request_timeout", request_timeout),
            ("connect_timeout", connect_timeout),
            ("landing_horizon", landing_horizon),
        ):
            if not is_positive_number(value):
                raise InvalidInputError(f"{name} must be a positive number of seconds")
        if user_id is not None and (not isinstance(user_id, str) or not user_id.isdigit()):
            raise InvalidInputError("user_id must be OKX's numeric User ID as a string")
        demo_flag = _demo_flag(demo)
        if ssl is not None and not isinstance(ssl, SSLContext):
            raise InvalidInputError(
                "ssl must be an ssl.SSLContext (e.g. ssl.create_default_context("
                f"cafile='/path/to/ca.pem')) or None, not {type(ssl).__name__}"
            )
        return cls(
            base_url=checked_url,
            demo=demo_flag,
            user_id=user_id,
            coalesce=coalesce,
            retry=retry or RetryPolicy(),
            request_timeout=request_timeout,
            connect_timeout=connect_timeout,
            allow_insecure_http=allow_insecure_http,
            limiter=limiter,
            limiter_url=limiter_url,
            redis_url=redis_url,
            redis_fallback_share=redis_fallback_share,
            on_event=on_event,
            proxy=proxy,
            trust_env=trust_env,
            local_addr=local_addr,
            session=session,
            meter_provider=meter_provider,
            ssl=ssl,
            landing_horizon=float(landing_horizon),
        )

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
