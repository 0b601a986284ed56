"""Credentials and OKX's request signature."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from functools import lru_cache

from multidict import CIMultiDict

__all__ = ["Credentials", "RequestHeaders", "format_timestamp", "sign"]

_SECRET_HEADERS = frozenset({"OK-ACCESS-SIGN", "OK-ACCESS-PASSPHRASE"})


def sign(secret_key: str, timestamp: str, method: str, request_path: str, body: bytes = b"") -> str:
    """Base64(HMAC-SHA256(secret, timestamp + METHOD + requestPath + body)).

    `body` must be the exact bytes sent; `request_path` includes any query string.
    """
    prehash = b"".join((timestamp.encode(), method.upper().encode(), request_path.encode(), body))
    digest = hmac.new(secret_key.encode(), prehash, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def format_timestamp(unix_seconds: float) -> str:
    """UTC ISO 8601 with milliseconds and Z, as OKX wants: 2020-12-08T09:08:57.715Z."""
    seconds, ms = divmod(int(unix_seconds * 1000), 1000)
    return f"{_utc_second(seconds)}.{ms:03d}Z"


@lru_cache(maxsize=4)
def _utc_second(seconds: int) -> str:
    # Requests in one second share this part: format it once, not once per request.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def parse_timestamp(text: str) -> float:
    """The inverse of `format_timestamp` (used by the simulator)."""
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return parsed.replace(tzinfo=timezone.utc).timestamp()


class RequestHeaders:
    """The headers of one request, as aiohttp takes them (an iterable of name-value pairs).

    Neither a dict nor a Mapping on purpose: error reporters that capture the locals of a
    traceback's frames (`capture_locals=True`, Sentry-style) print this object with its
    repr, which masks OK-ACCESS-SIGN and OK-ACCESS-PASSPHRASE, instead of walking into it.
    """

    __slots__ = ("_items",)

    def __init__(self, items: dict[str, str] | None = None) -> None:
        self._items = {} if items is None else items

    def __setitem__(self, name: str, value: str) -> None:
        self._items[name] = value

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items.items())

    def __len__(self) -> int:
        return len(self._items)

    def multidict(self) -> CIMultiDict[str]:
        """A copy in aiohttp's own header type, for the transport to hand to aiohttp
        inside its call (a multidict is a Mapping: never keep one in a local). From any
        other iterable multidict first asks for `items()`, and the AttributeError it then
        builds and drops costs more than the copy."""
        return CIMultiDict(self._items)

    def __repr__(self) -> str:
        shown = {k: "***" if k in _SECRET_HEADERS else v for k, v in self._items.items()}
        return f"RequestHeaders({shown!r})"


class Credentials:
    """An API key with its secret and passphrase. The repr never shows the secrets.

    Raises InvalidInputError naming the field (never the value) when a value is empty, not
    a str, has surrounding whitespace or contains a control character (a trailing newline
    copied from a file, for one): HTTP refuses such header values only after a rate-limit
    slot was taken.
    """

    __slots__ = ("_inner", "_outer", "_passphrase", "_secret_key", "api_key")

    def __init__(self, *, api_key: str, secret_key: str, passphrase: str) -> None:
        problem = _credentials_problem(api_key, secret_key, passphrase)
        if problem is not None:
            # Reporters that capture frame locals would show this frame's arguments.
            del secret_key, passphrase
            from ._errors import InvalidInputError

            raise InvalidInputError(problem)
        self.api_key = api_key
        self._secret_key = secret_key
        self._passphrase = passphrase
        self._inner, self._outer = _keyed_hmac_halves(secret_key.encode())

    @property
    def passphrase(self) -> str:
        return self._passphrase

    def signature(self, timestamp: str, method: str, request_path: str, body: bytes) -> str:
        """`sign()` for this key: the OK-ACCESS-SIGN header."""
        return self.headers(timestamp, method, request_path, body)["OK-ACCESS-SIGN"]

    def headers(
        self, timestamp: str, method: str, request_path: str, body: bytes
    ) -> dict[str, str]:
        """The four OK-ACCESS-* headers of one request, as a plain dict."""
        return dict(self.request_headers(timestamp, method, request_path, body))

    def request_headers(
        self, timestamp: str, method: str, request_path: str, body: bytes
    ) -> RequestHeaders:
        """The four OK-ACCESS-* headers of one request, in a `RequestHeaders` whose repr
        masks the signature and passphrase (what the client sends).

        Signs from the SHA-256 halves keyed once (see `_keyed_hmac_halves`): the same
        HMAC as `sign()` at about half of hmac.new's CPU, done here rather than in a
        helper because it runs once per request.
        """
        inner = self._inner.copy()
        inner.update((timestamp + method + request_path).encode() + body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return RequestHeaders(
            {
                "OK-ACCESS-KEY": self.api_key,
                "OK-ACCESS-SIGN": binascii.b2a_base64(outer.digest(), newline=False).decode(),
                "OK-ACCESS-TIMESTAMP": timestamp,
                "OK-ACCESS-PASSPHRASE": self._passphrase,
            }
        )

    def __repr__(self) -> str:
        # getattr: a constructor that raised leaves a half-built object in its frame's
        # locals, which reporters print with repr.
        api_key = mask(getattr(self, "api_key", ""))
        return f"Credentials(api_key={api_key!r}, secret_key='***', passphrase='***')"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("Credentials cannot be pickled (they hold secrets)")


def _credentials_problem(api_key: object, secret_key: object, passphrase: object) -> str | None:
    """What is wrong with the three values, naming the field and never the value."""
    for name, value in (
        ("api_key", api_key),
        ("secret_key", secret_key),
        ("passphrase", passphrase),
    ):
        if not isinstance(value, str) or not value:
            return f"{name} must be a non-empty string"
        # isprintable() is False for control characters (\n, \r, \t, \x00...), format
        # characters and non-ASCII spaces; none belongs in an HTTP header value.
        if value != value.strip() or not value.isprintable():
            return (
                f"{name} has surrounding whitespace or a control character (a trailing "
                "newline copied from a file?); remove it"
            )
    return None


_BLOCK = 64  # SHA-256's block size in bytes
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _keyed_hmac_halves(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """SHA-256 states that have absorbed key XOR ipad and key XOR opad (RFC 2104).

    HMAC(key, m) = H(key^opad || H(key^ipad || m)): copying these two states per request
    skips the key setup, and two C calls replace hmac.HMAC's Python layer. A test checks
    the result against the standard library's hmac for keys of every length class.
    """
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return hashlib.sha256(key.translate(_IPAD)), hashlib.sha256(key.translate(_OPAD))


def mask(api_key: str) -> str:
    """Enough of an API key to tell keys apart in logs, not enough to use it."""
    return api_key[:4] + "…" if len(api_key) > 8 else "…"
