"""Exceptions raised by okx_async.

The tree::

    OKXError
    ├── InvalidInputError (also ValueError)  bad argument, refused before any I/O
    ├── ClientClosedError                    the client was closed
    ├── QueueFullError                       too many calls already wait for this key
    ├── DeadlineExceededError (TimeoutError) a call's `timeout=` ran out
    ├── LimiterUnavailableError              the shared limiter store cannot be used
    ├── TransportError                       no OKX answer was read
    │   ├── NetworkError                     connection refused, reset or dropped
    │   ├── RequestTimeoutError (TimeoutError) no response within the request timeout
    │   ├── TLSError                         certificate not trusted or TLS handshake failed
    │   ├── TooManyOpenFilesError            no file descriptor left for a connection
    │   └── UnexpectedResponseError          a body that is not OKX JSON (HTML, empty, truncated)
    └── APIError                             OKX answered with a non-zero `code`
        ├── RateLimitedError                 50011
        ├── ExchangeBusyError                50001, 50004, 50013, 50026, 50040, other 5xx
        ├── AuthenticationError              50100, 50101, 50103-50107, 50110-50114, 50119, 50120
        │   └── TimestampExpiredError        50102
        ├── ParameterError                   51000, 50000, 50002, 50006, 50014
        └── AccountModeError                 51010, 59648, 59651, 59652

`retryable` on each class says whether the same request may succeed if sent again;
the retry policy in `_retry.py` reads only that attribute.

Every class survives `pickle` and `copy.deepcopy` (type, message, code, status, path), so
errors cross process boundaries (`ProcessPoolExecutor`, multiprocessing queues).
No error holds a secret: transport errors carry a description of aiohttp's error, not the
error itself (its `request_info` and traceback hold the signed request headers).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "AccountModeError",
    "AuthenticationError",
    "ClientClosedError",
    "DeadlineExceededError",
    "ExchangeBusyError",
    "InvalidInputError",
    "LimiterUnavailableError",
    "NetworkError",
    "OKXError",
    "ParameterError",
    "QueueFullError",
    "RateLimitedError",
    "RequestTimeoutError",
    "TLSError",
    "TimestampExpiredError",
    "TooManyOpenFilesError",
    "TransportError",
    "UnexpectedResponseError",
    "api_error_for",
]


class OKXError(Exception):
    """Root of every exception okx_async raises on purpose."""

    retryable: bool = False

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's own reduce calls cls(*args), which keyword-only constructors refuse:
        # rebuild from args without __init__, then restore the attributes.
        return (_new_error, (type(self), *self.args), self.__dict__.copy())


def _new_error(cls: type[OKXError], *args: Any) -> OKXError:
    # __init__ is skipped (keyword-only); __setstate__ then restores the attributes.
    # OSError's __new__ (TimeoutError's base) leaves .args unset when a subclass defines
    # __init__: set them here.
    error = cls.__new__(cls, *args)
    error.args = args
    return error


class InvalidInputError(OKXError, ValueError):
    """An argument was refused before anything was sent."""


class ClientClosedError(OKXError):
    """The client is closed (or closing) and takes no new calls."""


class QueueFullError(OKXError):
    """`max_pending` calls already wait for this rate-limit key."""


class DeadlineExceededError(OKXError, TimeoutError):
    """The call's deadline (`timeout=`) passed before a result arrived."""


class LimiterUnavailableError(OKXError):
    """The shared limiter's store (Redis, sqlite) did not answer; nothing was sent."""


class TransportError(OKXError):
    """No OKX answer could be read. The request may or may not have reached OKX."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class NetworkError(TransportError):
    """The connection failed or was dropped.

    `sent` (bool) is False when no connection was made (refused, unreachable, DNS): the
    request never left, so OKX cannot apply or count it. True otherwise, including when
    the client cannot tell.
    """

    retryable = True
    sent: bool = True


class RequestTimeoutError(TransportError, TimeoutError):
    """No complete response within the request timeout."""

    retryable = True


class TLSError(TransportError):
    """The TLS handshake failed: most often the server's certificate was not trusted.

    Not retried: the same certificate fails the same way. A proxy or private CA that
    re-signs traffic needs its CA bundle: `OKXClient(ssl=ssl.create_default_context(
    cafile="/path/to/ca.pem"))`.
    """


class TooManyOpenFilesError(TransportError):
    """The process has no file descriptor left (EMFILE/ENFILE) to open a connection.

    Not retried: more attempts only queue for descriptors that other calls hold. Raise
    the limit (`ulimit -n`) or let clients share pools (the default on one event loop).
    """


class UnexpectedResponseError(TransportError):
    """The server answered, but not with OKX JSON (a gateway page, an empty body...)."""

    def __init__(self, message: str, *, path: str, status: int, body_preview: str) -> None:
        super().__init__(message, path=path)
        self.status = status
        self.body_preview = body_preview
        # A 5xx gateway page means the exchange is struggling: worth another try.
        self.retryable = status >= 500 or status == 429

    def __str__(self) -> str:
        return f"{self.args[0]} (HTTP {self.status} from {self.path}): {self.body_preview!r}"


class APIError(OKXError):
    """OKX answered with a non-zero `code`."""

    def __init__(self, *, code: str, message: str, status: int, path: str) -> None:
        super().__init__(code, message, status, path)
        self.code = code
        self.message = message
        self.status = status
        self.path = path

    def __str__(self) -> str:
        text = self.message or "no message"
        return f"OKX error {self.code} on {self.path} (HTTP {self.status}): {text}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, "
            f"status={self.status}, path={self.path!r})"
        )


class RateLimitedError(APIError):
    """50011: this user's budget for the endpoint is spent."""

    retryable = True


class ExchangeBusyError(APIError):
    """The exchange is busy or failed internally; the same request may work later."""

    retryable = True


class AuthenticationError(APIError):
    """The key, passphrase, signature, permission or environment was refused.

    `hint` says what to check for the codes where that is known (else "")."""

    @property
    def hint(self) -> str:
        return _AUTH_HINTS.get(self.code, "")

    def __str__(self) -> str:
        hint = self.hint
        return f"{super().__str__()}; {hint}" if hint else super().__str__()


# What to check per code, in the words of the setting a user can change.
_AUTH_HINTS = {
    "50101": "the key is for live trading or for demo trading, not the one asked for: "
    "set demo to match the key (OKXClient(demo=...), OKX_DEMO, or the profile's demo)",
    "50102": "this computer's clock is too far from OKX's",
    "50105": "check the passphrase (the one chosen when the API key was created)",
    "50110": "this computer's IP address is not on the API key's IP whitelist",
    "50111": "check the API key: OKX does not know it",
    "50113": "check the secret key (or this computer's clock)",
    "50119": "the key belongs to another region's host: use base_url 'global', 'eea' or 'us' "
    "as the key's account was opened",
    "50120": "the key lacks the permission this call needs (set-riskOffset-amt needs Trade)",
}


class TimestampExpiredError(AuthenticationError):
    """50102: our timestamp is too far from OKX's clock; retried once after a resync."""

    retryable = True


class ParameterError(APIError):
    """51000 (and 50000, 50002, 50006, 50014 for the body itself): OKX refused a
    parameter."""


class AccountModeError(APIError):
    """The account is not set up for this (not portfolio margin, offset mode off...)."""


_CODE_CLASSES: dict[str, type[APIError]] = {
    "50011": RateLimitedError,
    "50001": ExchangeBusyError,
    "50004": ExchangeBusyError,
    "50013": ExchangeBusyError,
    "50026": ExchangeBusyError,
    "50040": ExchangeBusyError,
    "50102": TimestampExpiredError,
    "51000": ParameterError,
    "50000": ParameterError,  # empty POST body
    "50002": ParameterError,  # JSON syntax error
    "50006": ParameterError,  # Content-Type is not application/json
    "50014": ParameterError,  # a required parameter is empty
    "51010": AccountModeError,
    "59648": AccountModeError,
    "59651": AccountModeError,
    "59652": AccountModeError,
}
_AUTH_CODES = frozenset(
    ["50100", "50101", "50103", "50104", "50105", "50106", "50107", "50110", "50111",
     "50112", "50113", "50114", "50119", "50120"]
)  # fmt: skip


def api_error_for(*, code: str, message: str, status: int, path: str) -> APIError:
    """The typed error for an OKX `code` (HTTP status decides for unknown codes)."""
    cls = _CODE_CLASSES.get(code)
    if cls is None:
        if code in _AUTH_CODES:
            cls = AuthenticationError
        elif status >= 500:
            cls = ExchangeBusyError
        else:
            cls = APIError
    return cls(code=code, message=message, status=status, path=path)
