"""OpenTelemetry metrics, through `opentelemetry-api` only (`pip install 'okx_async[otel]'`).

Without the package, or with an explicit no-op provider, a client has no metrics object
at all and its hot path pays one `is None` test. With the API but no SDK, the global
provider hands out proxy instruments that cost a few attribute reads per record and
start recording once the application installs an SDK.

Instruments (one set per meter provider, shared by every client using it):

- `http.client.request.duration` (histogram, s): the semantic convention, with
  `http.request.method`, `server.address`, `server.port`, `url.scheme`, and
  `http.response.status_code` / `error.type` when there is one.
- `okx_async.limiter.wait.duration` (histogram, s): from asking for a rate-limit slot to
  getting it.
- `okx_async.limiter.slots.in_use` (observable gauge, {slot}): slots held by requests on
  the wire plus slots cooling down (freed one window after their response), over every
  limiter backend the clients of this provider use; no attributes.
- `okx_async.rate_limited` (counter, {response}): 50011 answers.
- `okx_async.retries` (counter, {retry}): by `okx_async.retry.reason` (error class and
  OKX code).
- `okx_async.superseded` (counter, {call}): calls whose value a newer one replaced.

No User ID, API key or currency is an attribute: they would multiply the series by the
number of sub-accounts, and a key is not something to ship to a metrics backend.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._errors import APIError, InvalidInputError, UnexpectedResponseError

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

__all__ = ["ClientMetrics", "client_metrics"]

METER_NAME = "okx_async"
# The semantic convention's advised boundaries for HTTP client durations.
REQUEST_DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
# Limiter waits run from nothing (a free slot) to a few windows (a deep queue).
LIMITER_WAIT_BUCKETS = (0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


class _Instruments:
    """One provider's instruments, and the limiter backends its gauge reads."""

    __slots__ = (
        "backends",
        "duration",
        "rate_limited",
        "retries",
        "slots",
        "superseded",
        "wait",
    )

    def __init__(self, provider: MeterProvider) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            ours = version("okx_async")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            ours = None
        meter = provider.get_meter(METER_NAME, ours)
        self.backends: weakref.WeakSet[Any] = weakref.WeakSet()
        self.duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=REQUEST_DURATION_BUCKETS,
        )
        self.wait = meter.create_histogram(
            "okx_async.limiter.wait.duration",
            unit="s",
            description="Time from asking for a rate-limit slot to getting it.",
            explicit_bucket_boundaries_advisory=LIMITER_WAIT_BUCKETS,
        )
        self.slots = meter.create_observable_gauge(
            "okx_async.limiter.slots.in_use",
            callbacks=[self._observe_slots],
            unit="{slot}",
            description="Rate-limit slots held by requests on the wire or cooling down.",
        )
        self.rate_limited = meter.create_counter(
            "okx_async.rate_limited", unit="{response}", description="50011 answers from OKX."
        )
        self.retries = meter.create_counter(
            "okx_async.retries", unit="{retry}", description="Requests sent again, by reason."
        )
        self.superseded = meter.create_counter(
            "okx_async.superseded",
            unit="{call}",
            description="Calls whose value a newer one replaced before it was sent.",
        )

    def _observe_slots(self, _options: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        # May run on the SDK's export thread: list() copies each dict in one C call.
        # One total: a user's budget is shared by every host of its region, so no host
        # attribute would be true of it.
        total = 0
        for backend in list(self.backends):
            for _key, snapshot in _snapshots(backend):
                total += snapshot.in_flight + snapshot.cooling
        return [Observation(total)]


def _snapshots(backend: Any) -> Iterator[tuple[Any, Any]]:
    snapshots = getattr(backend, "snapshots", None)
    if snapshots is not None:  # backends of other authors may have none: no gauge for them
        yield from snapshots()


class ClientMetrics:
    """What one client records; its base attributes are built once."""

    __slots__ = ("_address", "_base", "_by_method", "_instruments")

    def __init__(self, instruments: _Instruments, base_url: str) -> None:
        parts = urlsplit(base_url)
        self._instruments = instruments
        self._base: dict[str, str | int] = {
            "server.address": parts.hostname or "",
            "server.port": parts.port or (443 if parts.scheme == "https" else 80),
            "url.scheme": parts.scheme,
        }
        self._address: dict[str, str | int] = {"server.address": self._base["server.address"]}
        # A success's attributes per method, built once: no dict per call.
        self._by_method = {
            method: {**self._base, "http.request.method": method, "http.response.status_code": 200}
            for method in ("GET", "POST")
        }

    def watch(self, backend: object) -> None:
        """Count `backend`'s slots in the gauge (once per backend; kept weakly)."""
        # A backend of another author may not take weak references: then it is not counted.
        with contextlib.suppress(TypeError):
            self._instruments.backends.add(backend)

    def request(self, method: str, seconds: float, error: BaseException | None) -> None:
        if error is None:
            # OKX answers code 0 only with HTTP 200.
            self._instruments.duration.record(seconds, self._by_method[method])
            return
        attributes = {**self._base, "http.request.method": method}
        status = getattr(error, "status", None)
        if isinstance(error, (APIError, UnexpectedResponseError)) and isinstance(status, int):
            attributes["http.response.status_code"] = status
        # The convention: the status code for HTTP errors, else the error's class.
        attributes["error.type"] = (
            str(status) if isinstance(status, int) and status >= 400 else type(error).__name__
        )
        self._instruments.duration.record(seconds, attributes)

    def limiter_wait(self, seconds: float) -> None:
        self._instruments.wait.record(seconds, self._address)

    def rate_limited(self) -> None:
        self._instruments.rate_limited.add(1, self._address)

    def retry(self, reason: str) -> None:
        self._instruments.retries.add(
            1, {"server.address": self._base["server.address"], "okx_async.retry.reason": reason}
        )

    def superseded(self) -> None:
        self._instruments.superseded.add(1, self._address)

    def __repr__(self) -> str:
        return f"<ClientMetrics server.address={self._base['server.address']!r}>"


_BY_PROVIDER: weakref.WeakKeyDictionary[Any, _Instruments] = weakref.WeakKeyDictionary()


def client_metrics(meter_provider: MeterProvider | None, base_url: str) -> ClientMetrics | None:
    """A client's metrics through `meter_provider` (default: OpenTelemetry's global one);
    None when opentelemetry-api is not installed or the provider is a no-op."""
    try:
        from opentelemetry import metrics
    except ImportError:
        if meter_provider is not None:
            raise InvalidInputError(
                "meter_provider needs opentelemetry-api: pip install 'okx_async[otel]'"
            ) from None
        return None
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    if isinstance(provider, metrics.NoOpMeterProvider):
        return None
    instruments = _BY_PROVIDER.get(provider)
    if instruments is None:
        instruments = _BY_PROVIDER[provider] = _Instruments(provider)
    return ClientMetrics(instruments, base_url)
