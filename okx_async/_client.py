"""OKXClient: options, public calls and lifecycle. It sends nothing itself: its parts
(`Transport`, `Budgets`, `Reporter`, `Submitter`), built once from `ClientOptions`, and
the inherited `AttemptLoop` do; see docs/architecture.md for the path of one call."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ._attempts import AttemptLoop, ClientState, deadline_after, first_row
from ._auth import Credentials, mask
from ._budgets import Budgets
from ._defaults import ACCOUNT_CONFIG_PATH, BALANCE_PATH, CLOSE_DRAIN_TIMEOUT
from ._errors import ClientClosedError, InvalidInputError
from ._events import Reporter
from ._models import (
    AccountConfig,
    RiskOffsetAmount,
    RiskOffsetResult,
    account_config_from_row,
    risk_offset_amounts,
)
from ._options import ClientOptions, keywords_from_env, mask_urls
from ._shared import acquire_pool
from ._stats import ClientStats
from ._submit import Submitter
from ._telemetry import client_metrics
from ._transport import Transport
from ._validation import validate_amount, validate_ccy

if TYPE_CHECKING:
    import aiohttp  # noqa: F401  # ClientKeywords' `session`
    from typing_extensions import Unpack

    from ._options import ClientKeywords

__all__ = ["OKXClient"]

_MAX_BALANCE_CCYS = 20  # OKX's limit per balance request


class OKXClient(AttemptLoop):
    """Async client for OKX's set-riskOffset-amt endpoint, with a strict per-user limiter.

    Every OKXClient in one event loop whose keys belong to one user shares that user's
    rate-limit budget and per-currency ordering, whichever API key it uses.

    Credentials: `api_key`, `secret_key`, `passphrase` (str, required, non-empty, printable
    ASCII; never in a repr, log or error). Every other argument is one of
    `ClientKeywords` (where, behaviour, rate-limit store, network: each with its units,
    range and default), all keyword-only and optional. Every problem with one raises
    InvalidInputError (URL credentials masked, secrets never shown) before anything is
    sent.

    Building a client sends nothing and needs no running loop; use it in one event loop
    at a time, and close it (`async with` or `await close()`).
    """

    __slots__ = (
        "_budgets",
        "_credentials",
        "_metrics",
        "_options",
        "_report",
        "_state",
        "_submitter",
        "_transport",
    )

    def __init__(
        self,
        *,
        api_key: str,
        secret_key: str,
        passphrase: str,
        **options: Unpack[ClientKeywords],
    ) -> None:
        try:
            self._credentials = Credentials(
                api_key=api_key, secret_key=secret_key, passphrase=passphrase
            )
        finally:
            # Reporters that capture frame locals show this frame in every traceback
            # raised from here on: keep no secret in it.
            del secret_key, passphrase
        mask_urls(options)  # URLs may carry passwords: every frame shows them masked
        self._wire(ClientOptions.build(**options))

    def _wire(self, options: ClientOptions) -> None:
        """Build the client's parts from validated options; each checks the options that
        are its own (the transport the network's, the budgets the store's)."""
        self._options = options
        # The loop's pools, shared by every client on it with the same network settings.
        self._transport = Transport.for_options(options, pools=acquire_pool)
        self._metrics = client_metrics(options.meter_provider, options.base_url)
        self._report = Reporter(metrics=self._metrics, on_event=options.on_event)
        self._budgets = Budgets(options=options, metrics=self._metrics)
        self._submitter = Submitter(
            options,
            store=self._budgets.lane_store(),
            report=self._report,
            request=self._request,
            error_since=self._error_since,
            bind_loop=self._attempt_clock,
        )
        self._start_requests()
        self._state = ClientState.OPEN

    @classmethod
    def from_env(cls, **overrides: Any) -> OKXClient:
        """Credentials from OKX_API_KEY, OKX_SECRET_KEY, OKX_PASSPHRASE (and optionally
        OKX_BASE_URL, OKX_DEMO, read as `demo=` is); keyword arguments win over the
        environment. Raises InvalidInputError naming a missing or malformed variable
        (never its value when it is a secret), or what the constructor raises."""
        keywords: dict[str, Any] = {}
        try:
            keywords = keywords_from_env(overrides)
            return cls(**keywords)
        finally:
            # This frame is in the traceback of any error raised here or by the
            # constructor, and reporters may capture its locals: keep no secret in them.
            keywords.clear()
            overrides.clear()

    # -- public calls -------------------------------------------------------------------

    async def set_risk_offset_amount(
        self, ccy: str, amount: str | Decimal | int, *, timeout: float | None = None
    ) -> RiskOffsetResult:
        """Set the user-defined spot risk offset amount of `ccy` (portfolio margin only).

        Values of one currency go out one at a time in submission order; a newer value
        replaces older ones still waiting (their results say `superseded=True`: never
        sent). `timeout` (float seconds > 0, default None: no bound) bounds queueing,
        retries and the request together. After a request with an unknown outcome, the
        newest applied value is re-asserted once the client's `landing_horizon`
        (seconds) has passed; see `RiskOffsetResult`.

        Raises: InvalidInputError (a bad currency, amount or `timeout`);
        ClientClosedError; DeadlineExceededError when `timeout` runs out; after the
        retries allowed, the errors listed under `get_account_config`.
        """
        ccy = validate_ccy(ccy)
        text, value = validate_amount(amount)
        deadline = None if timeout is None else deadline_after(timeout)
        self._check_open()
        uid = self._budgets.uid or await self._user_id(deadline)
        return await self._submitter.submit(
            uid, ccy, text, value, deadline=deadline, timeout=timeout
        )

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
        deadline = deadline_after(timeout)
        self._check_open()
        data = await self._request("GET", ACCOUNT_CONFIG_PATH, deadline=deadline)
        config = account_config_from_row(first_row(data, ACCOUNT_CONFIG_PATH))
        if self._budgets.uid is None:
            self._budgets.uid = config.uid
        return config

    async def get_risk_offset_amounts(
        self, ccys: list[str] | tuple[str, ...], *, timeout: float | None = None
    ) -> dict[str, RiskOffsetAmount]:
        """User-defined, in-use and maximum spot risk offset amounts per currency.

        `ccys`: currency codes (validated like set_risk_offset_amount's); the result maps
        each currency OKX returned to its amounts (OKX leaves out currencies the account
        holds none of). More than 20 currencies go out as several balance requests.

        Raises: InvalidInputError (a bad currency or `timeout`), or what
        `get_account_config` raises.
        """
        if isinstance(ccys, str):
            raise InvalidInputError("ccys must be a list of currency codes, e.g. ['BTC']")
        wanted = list(dict.fromkeys(validate_ccy(c) for c in ccys))
        if not wanted:
            raise InvalidInputError("ccys must name at least one currency")
        deadline = deadline_after(timeout)
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
        """The counts since the client was made (see `ClientStats`)."""
        return self._report.stats.snapshot()

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
        await self._submitter.drain(timeout)
        closed = ClientClosedError("the client was closed before this update finished")
        self._submitter.stop(closed)
        await self._stop_requests()
        await self._transport.aclose()
        await self._budgets.aclose()
        self._state = ClientState.CLOSED

    async def __aenter__(self) -> OKXClient:
        self._check_open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        if not hasattr(self, "_state"):  # __init__ raised: reporters print its `self`
            return "OKXClient(<not constructed>)"
        options = self._options
        return (
            f"OKXClient(api_key={mask(self._credentials.api_key)!r}, "
            f"base_url={options.base_url!r}, demo={options.demo}, user_id={self._budgets.uid!r}, "
            f"{self._state.value})"
        )

    # -- internals ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state is not ClientState.OPEN:
            raise ClientClosedError("this OKXClient is closed; create a new one")

    async def _lookup_uid(self) -> str:
        return (await self.get_account_config()).uid
