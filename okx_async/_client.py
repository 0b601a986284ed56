"""OKXClient: orchestrates validation, ordering, rate limiting, signing and retries.

It sends nothing itself: `Transport` sends exactly one request, the limiter backend
decides when, and the lanes of `_ordering` decide which value goes out per currency.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from ssl import SSLContext
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from ._attempts import AttemptLoop, ClientState, first_row, last_words, within
from ._auth import Credentials, mask
from ._clock import ServerClock
from ._defaults import (
    ACCOUNT_CONFIG_PATH,
    BALANCE_PATH,
    CLOSE_DRAIN_TIMEOUT,
    CONNECT_TIMEOUT,
    DEFAULT_BASE_URL,
    ENV_API_KEY,
    ENV_BASE_URL,
    ENV_DEMO,
    ENV_PASSPHRASE,
    ENV_SECRET_KEY,
    LANDING_HORIZON,
    REQUEST_TIMEOUT,
    SET_RISK_OFFSET_PATH,
)
from ._errors import (
    ClientClosedError,
    DeadlineExceededError,
    InvalidInputError,
    OKXError,
)
from ._identity import mode
from ._lane_store import LaneStoreBase, SupersededElsewhereError
from ._limiter._urls import client_backend
from ._limits import LimiterBackend, LimiterKey
from ._models import (
    AccountConfig,
    RiskOffsetAmount,
    RiskOffsetResult,
    account_config_from_row,
    parse_decimal,
    risk_offset_amounts,
)
from ._options import ClientOptions, env_flag, is_positive_number
from ._ordering import Lane, LaneRegistry, SupersededError, Update
from ._retry import RetryPolicy
from ._shared import acquire_pool, lanes_for_running_loop
from ._stats import ClientEvent, ClientStats, StatsRecorder
from ._telemetry import client_metrics
from ._transport import Transport
from ._urls import masked
from ._validation import validate_amount, validate_ccy

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

__all__ = ["OKXClient"]

logger = logging.getLogger("okx_async")

_MAX_BALANCE_CCYS = 20  # OKX's limit per balance request


class OKXClient(AttemptLoop):
    """Async client for OKX's set-riskOffset-amt endpoint, with a strict per-user limiter.

    Every OKXClient in one event loop whose keys belong to one user shares that user's
    rate-limit budget and per-currency ordering, whichever API key it uses. All
    arguments are keyword-only; every problem with one raises InvalidInputError (URL
    credentials masked, secrets never shown) before anything is sent.

    Credentials: `api_key`, `secret_key`, `passphrase` (str, required, non-empty, printable
    ASCII; never in a repr, log or error).

    Where: `base_url` (str, default "https://www.okx.com"): a region name ("global",
    "eea", "us") or an https URL without path or query; plain http only to a loopback
    host unless `allow_insecure_http=True` (bool, default False). `demo` (bool, or a str
    read as OKX_DEMO is: 1/0, true/false, yes/no, on/off; default False): demo trading,
    a budget separate from live. `user_id` (str of digits | None, default None): OKX's
    User ID when known; else one `account/config` call learns it before the first set.

    Behaviour: `coalesce` (bool, default True): a newer value for a currency replaces
    older ones still waiting. `retry` (RetryPolicy | None, default RetryPolicy():
    6 attempts, full-jitter backoff from 0.25 s capped at 8 s). `request_timeout`
    (float seconds, > 0 and finite, default 10.0): one attempt, end to end.
    `connect_timeout` (float seconds, > 0 and finite, default 5.0): opening a
    connection. `on_event` (callable(ClientEvent) | None): called synchronously for
    each request sent, answer, retry and superseded value; it should return quickly
    and not raise (nothing catches what it raises).

    Rate-limit store: `limiter` (LimiterBackend | None): a store shared with other
    clients, never closed here; else `limiter_url` (str | None: "memory://",
    "sqlite:///PATH", "redis://..." / "rediss://..."), or its alias `redis_url` (not
    both); else the environment's OKX_ASYNC_LIMITER_URL (alias OKX_ASYNC_REDIS_URL);
    else the event loop's in-process store. A store opened from a URL is closed by
    `close()`. `redis_fallback_share` (float in (0, 1] | None, default None): during a
    Redis outage, pace locally at this share of each limit instead of failing fast.

    Network (credentials masked in every message): `proxy` (str | None):
    "http://[user:pass@]host:port", https, or socks4/socks5/socks5h (the `socks`
    extra). `trust_env` (bool, default False): the proxy from HTTPS_PROXY / HTTP_PROXY,
    honouring NO_PROXY. `local_addr` (str | (str, int) | None): the IPv4 or IPv6 source
    address, port 0-65535. Clients of one loop with equal options share one connection
    pool (at most 100 connections). `session` (aiohttp.ClientSession | None): the
    caller's own, never closed here; excludes the three options above. `ssl`
    (ssl.SSLContext | None): e.g. a context trusting a private CA.
    `meter_provider` (opentelemetry MeterProvider | None): where OpenTelemetry metrics
    go (default: the global provider, when opentelemetry-api is installed).

    Building a client sends nothing and needs no running loop; use it in one event loop
    at a time, and close it (`async with` or `await close()`).
    """

    __slots__ = (
        "_base_url",
        "_coalesce",
        "_credentials",
        "_demo",
        "_landing_horizon",
        "_lane_store",
        "_lanes",
        "_limiter_keys",
        "_metrics",
        "_mode",
        "_on_event",
        "_outstanding",
        "_owns_backend",
        "_retry",
        "_state",
        "_stats",
        "_transport",
        "_uid",
        "_uid_lookup",
    )

    def __init__(
        self,
        *,
        api_key: str,
        secret_key: str,
        passphrase: str,
        base_url: str = DEFAULT_BASE_URL,
        demo: bool | str = False,
        user_id: str | None = None,
        coalesce: bool = True,
        retry: RetryPolicy | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        redis_url: str | None = None,
        limiter_url: str | None = None,
        redis_fallback_share: float | None = None,
        limiter: LimiterBackend | None = None,
        allow_insecure_http: bool = False,
        on_event: Callable[[ClientEvent], None] | None = None,
        proxy: str | None = None,
        trust_env: bool = False,
        local_addr: str | tuple[str, int] | None = None,
        session: aiohttp.ClientSession | None = None,
        meter_provider: MeterProvider | None = None,
        ssl: SSLContext | None = None,
        landing_horizon: float = LANDING_HORIZON,
    ) -> None:
        try:
            self._credentials = Credentials(
                api_key=api_key, secret_key=secret_key, passphrase=passphrase
            )
        finally:
            # Reporters that capture frame locals show this frame in every traceback
            # raised from here on: keep no secret in it.
            del secret_key, passphrase
        # URLs may carry passwords: from here on every frame shows them masked.
        base_url, proxy = masked(base_url), masked(proxy)
        limiter_url, redis_url = masked(limiter_url), masked(redis_url)
        options = ClientOptions.build(
            base_url=base_url,
            demo=demo,
            user_id=user_id,
            coalesce=coalesce,
            retry=retry,
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
            landing_horizon=landing_horizon,
        )
        self._wire(options)

    def _wire(self, options: ClientOptions) -> None:
        """Build the client's parts from validated options."""
        self._base_url = options.base_url
        self._demo = options.demo
        # Budgets and lanes are the user's (see _identity): live and demo are separate.
        self._mode = mode(self._demo)
        self._uid = options.user_id
        self._uid_lookup: asyncio.Future[str] | None = None
        self._coalesce = options.coalesce
        # Seconds after an uncertain outcome before the newest value is sent again.
        self._landing_horizon = options.landing_horizon
        self._retry = options.retry
        self._transport = Transport(
            base_url=self._base_url,
            request_timeout=options.request_timeout,
            connect_timeout=options.connect_timeout,
            proxy=options.proxy,
            trust_env=options.trust_env,
            local_addr=options.local_addr,
            session=options.session,
            ssl=options.ssl,
            pools=acquire_pool,  # the loop's pools, shared by every client on it
        )
        self._clock: ServerClock | None = None  # the loop's shared clock for this host
        self._limiter_keys: dict[str, LimiterKey] = {}  # per path, once the subject is final
        # The loop's lane registry, remembered: looking it up costs a weakref per call.
        self._lanes: tuple[asyncio.AbstractEventLoop, LaneRegistry] | None = None
        self._stats = StatsRecorder()
        self._metrics = client_metrics(options.meter_provider, self._base_url)
        self._on_event = options.on_event
        self._outstanding: set[Update] = set()
        # Tasks inside _request now -> whether close() stopped them (see close()).
        self._active: dict[asyncio.Task[Any], bool] = {}
        self._drained: asyncio.Future[None] | None = None  # close(): the last one left
        self._state = ClientState.OPEN
        # (loop time, error) of the latest failed attempt: what a deadline error names.
        self._last_error: tuple[float, OKXError] | None = None
        # None: the loop's shared in-process backend, found on first use.
        self._backend: LimiterBackend | None
        self._backend, self._owns_backend = client_backend(
            limiter_url=options.limiter_url,
            redis_url=options.redis_url,
            limiter=options.limiter,
            redis_fallback_share=options.redis_fallback_share,
        )
        if self._metrics is not None and self._backend is not None:
            self._metrics.watch(self._backend)
        # Ordering shared with other processes, where the store offers it (sqlite).
        make_lanes = getattr(self._backend, "lane_store", None)
        self._lane_store: LaneStoreBase | None = make_lanes() if make_lanes else None

    @classmethod
    def from_env(cls, **overrides: Any) -> OKXClient:
        """Credentials from OKX_API_KEY, OKX_SECRET_KEY, OKX_PASSPHRASE (and optionally
        OKX_BASE_URL, OKX_DEMO, read as `demo=` is); keyword arguments win over the
        environment. Raises InvalidInputError naming a missing or malformed variable
        (never its value when it is a secret), or what the constructor raises."""
        names = {"api_key": ENV_API_KEY, "secret_key": ENV_SECRET_KEY, "passphrase": ENV_PASSPHRASE}
        kwargs: dict[str, Any] = {}
        try:
            missing = [
                env
                for arg, env in names.items()
                if arg not in overrides and not os.environ.get(env)
            ]
            if missing:
                raise InvalidInputError(f"missing environment variable(s): {', '.join(missing)}")
            if "demo" not in overrides and ENV_DEMO in os.environ:
                kwargs["demo"] = env_flag(ENV_DEMO, os.environ[ENV_DEMO])
            if "base_url" not in overrides and os.environ.get(ENV_BASE_URL):
                kwargs["base_url"] = os.environ[ENV_BASE_URL]
            kwargs.update(
                (arg, os.environ[env]) for arg, env in names.items() if arg not in overrides
            )
            kwargs.update(overrides)
            return cls(**kwargs)
        finally:
            # This frame is in the traceback of any error raised here or by the
            # constructor, and reporters may capture its locals: keep no secret in them.
            kwargs.clear()
            overrides.clear()

    # -- public calls -------------------------------------------------------------------

    async def set_risk_offset_amount(
        self, ccy: str, amount: str | Decimal | int, *, timeout: float | None = None
    ) -> RiskOffsetResult:
        """Set the user-defined spot risk offset amount of `ccy` (portfolio margin only).

        Values of one currency go out one at a time in submission order; a newer value
        replaces older ones still waiting (their results say `superseded=True`: never
        sent). `timeout` bounds queueing, retries and the request together. After a
        request with an unknown outcome, the newest applied value is re-asserted once
        the client's `landing_horizon` (seconds) has passed; see `RiskOffsetResult`.
        """
        ccy = validate_ccy(ccy)
        text, value = validate_amount(amount)
        deadline = None if timeout is None else self._deadline(timeout)
        self._check_open()
        uid = self._uid or await within(
            deadline, self._user_id(), "looking up the User ID", self._error_since
        )
        loop = asyncio.get_running_loop()
        lanes = self._lanes
        if lanes is None or lanes[0] is not loop:
            lanes = self._lanes = (loop, lanes_for_running_loop())
        lane = lanes[1].lane((self._mode, uid, ccy))
        update = Update(
            ccy=ccy,
            text=text,
            amount=value,
            deadline=deadline,
            send=self._send_update,
            future=loop.create_future(),
        )
        if self._lane_store is not None:  # the value's place in the store's order
            update.seq = await self._lane_store.submitted(_lane_name(lane), text)
        self._outstanding.add(update)
        future = update.future
        try:
            if lane.claim(update):
                await lane.run_inline(update)
            else:
                lane.submit(update, coalesce=self._coalesce)
            if future.done():  # sent inline; wait_for would add a timer and a loop turn
                result = future.result()
            elif deadline is None:
                result = await future
            else:
                result = await asyncio.wait_for(future, deadline - loop.time())
        except asyncio.TimeoutError:
            if update.future.done() and not update.future.cancelled():
                raise  # the update itself failed with a timeout of its own
            started = None if deadline is None or timeout is None else deadline - timeout
            cause = None if started is None else self._error_since(started)
            raise DeadlineExceededError(
                f"setting {ccy} to {text} did not finish within {timeout:g} s{last_words(cause)}"
            ) from cause
        finally:
            self._outstanding.discard(update)
        if result.superseded:
            self._stats.superseded += 1
            if self._metrics is not None:
                self._metrics.superseded()
            self._emit("superseded", SET_RISK_OFFSET_PATH, 0)
        return result

    async def get_account_config(self, *, timeout: float | None = None) -> AccountConfig:
        """Account configuration; also learns the User ID that keys the rate limiter.

        Raises: InvalidInputError (a bad `timeout`); ClientClosedError; DeadlineExceededError
        when `timeout` (float seconds > 0, default None: no bound) runs out; after the
        retries allowed: APIError subclasses (AuthenticationError, AccountModeError,
        ParameterError, RateLimitedError, ExchangeBusyError...), NetworkError,
        RequestTimeoutError, TLSError, TooManyOpenFilesError, UnexpectedResponseError;
        LimiterUnavailableError / QueueFullError from the rate-limit store. All are
        OKXError.
        """
        deadline = self._deadline(timeout)
        self._check_open()
        data = await self._request("GET", ACCOUNT_CONFIG_PATH, deadline=deadline)
        config = account_config_from_row(first_row(data, ACCOUNT_CONFIG_PATH))
        if self._uid is None:
            self._uid = config.uid
        return config

    async def get_risk_offset_amounts(
        self, ccys: list[str] | tuple[str, ...], *, timeout: float | None = None
    ) -> dict[str, RiskOffsetAmount]:
        """User-defined, in-use and maximum spot risk offset amounts per currency.

        `ccys`: currency codes (validated like set_risk_offset_amount's); the result maps
        each currency OKX returned to its amounts (OKX leaves out currencies the account
        holds none of). More than 20 currencies go out as several balance requests.

        Raises: InvalidInputError (a bad currency or `timeout`); ClientClosedError;
        DeadlineExceededError when `timeout` (float seconds > 0, default None: no
        bound) runs out; after the retries allowed: APIError subclasses
        (AuthenticationError, AccountModeError, ParameterError, RateLimitedError,
        ExchangeBusyError...), NetworkError, RequestTimeoutError, TLSError,
        TooManyOpenFilesError, UnexpectedResponseError; LimiterUnavailableError /
        QueueFullError from the rate-limit store. All are OKXError.
        """
        if isinstance(ccys, str):
            raise InvalidInputError("ccys must be a list of currency codes, e.g. ['BTC']")
        wanted = list(dict.fromkeys(validate_ccy(c) for c in ccys))
        if not wanted:
            raise InvalidInputError("ccys must name at least one currency")
        deadline = self._deadline(timeout)
        self._check_open()
        found: dict[str, RiskOffsetAmount] = {}
        for start in range(0, len(wanted), _MAX_BALANCE_CCYS):
            chunk = wanted[start : start + _MAX_BALANCE_CCYS]
            data = await self._request(
                "GET", BALANCE_PATH, query="?ccy=" + ",".join(chunk), deadline=deadline
            )
            found.update(risk_offset_amounts(first_row(data, BALANCE_PATH).get("details")))
        return found

    def stats(self) -> ClientStats:
        return self._stats.snapshot()

    @property
    def closed(self) -> bool:
        return self._state is not ClientState.OPEN

    async def close(self, *, timeout: float = CLOSE_DRAIN_TIMEOUT) -> None:
        """Stop taking calls, let pending ones finish for up to `timeout` seconds, then
        fail the rest with ClientClosedError and close the connection. Idempotent.

        `timeout`: float seconds >= 0, default 5.0. Raises nothing of its own; a store
        the client opened from a URL is closed too."""
        if self._state is not ClientState.OPEN:
            return
        self._state = ClientState.CLOSING
        pending = [u.future for u in self._outstanding if not u.future.done()]
        if pending and timeout > 0:
            await asyncio.wait(pending, timeout=timeout)
        closed = ClientClosedError("the client was closed before this update finished")
        for update in list(self._outstanding):
            update.fail(closed)
        if self._lanes is not None:  # no more re-asserts of values this client set
            unsettled = self._lanes[1].stop_settling(self._send_update)
            if unsettled:
                logger.debug("closed with %d currencies not yet settled", unsettled)
        # Requests still waiting for a slot or on the wire are this client's alone to stop;
        # the tasks running them may be shared lane workers, which carry on afterwards.
        if self._active:
            self._drained = asyncio.get_running_loop().create_future()
            for task in self._active:
                self._active[task] = True  # stopped by close(): see _stopped_by_close
                task.cancel()
            await self._drained
        await self._transport.aclose()
        if self._owns_backend and self._backend is not None:
            await self._backend.aclose()
        self._state = ClientState.CLOSED

    async def __aenter__(self) -> OKXClient:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        if not hasattr(self, "_state"):  # __init__ raised: reporters print its `self`
            return "OKXClient(<not constructed>)"
        state = self._state.value
        return (
            f"OKXClient(api_key={mask(self._credentials.api_key)!r}, "
            f"base_url={self._base_url!r}, demo={self._demo}, user_id={self._uid!r}, {state})"
        )

    # -- internals ----------------------------------------------------------------------

    @staticmethod
    def _deadline(timeout: float | None) -> float | None:
        if timeout is None:
            return None
        if not is_positive_number(timeout):
            raise InvalidInputError(
                f"timeout must be a positive number of seconds, not {timeout!r}"
            )
        return asyncio.get_running_loop().time() + timeout

    async def _user_id(self) -> str:
        """The User ID that keys limits and lanes; one config lookup per client."""
        if self._uid is not None:
            return self._uid
        if self._uid_lookup is None:
            lookup = asyncio.ensure_future(self._lookup_uid())
            lookup.add_done_callback(self._lookup_done)
            self._uid_lookup = lookup
        return await asyncio.shield(self._uid_lookup)

    async def _lookup_uid(self) -> str:
        return (await self.get_account_config()).uid

    def _lookup_done(self, lookup: asyncio.Future[str]) -> None:
        if lookup.cancelled() or lookup.exception() is not None:
            self._uid_lookup = None  # let the next call try again

    async def _send_update(self, update: Update, lane: Lane) -> Decimal:
        store = self._lane_store
        if store is None:
            return await self._send_value(update, lane)
        # Never two requests of one currency in flight across the processes sharing it.
        name = _lane_name(lane)
        try:
            claim = await store.claim(
                name,
                seq=update.seq,
                value=update.text,
                deadline=update.deadline,
                horizon=self._landing_horizon,
            )
        except SupersededElsewhereError as exc:
            raise SupersededError(Decimal(exc.value)) from None
        if claim.uncertain:
            lane.import_uncertain(claim.uncertain)
        lane.newer_elsewhere = partial(store.newer_elsewhere, name, update.seq)
        try:
            return await self._send_value(update, lane)
        finally:
            lane.newer_elsewhere = None
            await store.release(claim, lane.uncertain_entries())

    async def _send_value(self, update: Update, lane: Lane) -> Decimal:
        if update.reassert:
            self._stats.reasserted += 1
            self._emit("reasserted", SET_RISK_OFFSET_PATH, 0)
        body = orjson.dumps({"ccy": update.ccy, "clSpotInUseAmt": update.text})
        data = await self._request(
            "POST", SET_RISK_OFFSET_PATH, body=body, deadline=update.deadline, lane=lane
        )
        echoed = first_row(data, SET_RISK_OFFSET_PATH).get("clSpotInUseAmt")
        if echoed == update.text:
            return update.amount  # the usual answer: what we sent, already a Decimal
        applied = parse_decimal(echoed)
        # OKX echoes what it stored; an answer without it still means success (code 0).
        return update.amount if applied is None else applied


def _lane_name(lane: Lane) -> str:
    """The lane's key in a shared store: "mode:uid:ccy"."""
    return ":".join(map(str, lane.key))  # type: ignore[call-overload]
