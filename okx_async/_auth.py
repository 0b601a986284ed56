"""Credentials and OKX's request signature."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import datetime, timezone
from functools import lru_cache

__all__ = ["Credentials", "format_timestamp", "sign"]


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


class Credentials:
    """An API key with its secret and passphrase. The repr never shows the secrets."""

    __slots__ = ("_hmac", "_passphrase", "_secret_key", "api_key")

    def __init__(self, *, api_key: str, secret_key: str, passphrase: str) -> None:
        for name, value in (
            ("api_key", api_key),
            ("secret_key", secret_key),
            ("passphrase", passphrase),
        ):
            if not isinstance(value, str) or not value:
                # The message names the field, never the value.
                from ._errors import InvalidInputError

                raise InvalidInputError(f"{name} must be a non-empty string")
        self.api_key = api_key
        self._secret_key = secret_key
        self._passphrase = passphrase
        # Keyed once; each request copies it, saving the key setup per call.
        self._hmac = hmac.new(secret_key.encode(), digestmod=hashlib.sha256)

    @property
    def passphrase(self) -> str:
        return self._passphrase

    def signature(self, timestamp: str, method: str, request_path: str, body: bytes) -> str:
        mac = self._hmac.copy()
        mac.update((timestamp + method + request_path).encode() + body)
        return base64.b64encode(mac.digest()).decode()

    def headers(
        self, timestamp: str, method: str, request_path: str, body: bytes
    ) -> dict[str, str]:
        return {
            "OK-ACCESS-KEY": self.api_key,
            "OK-ACCESS-SIGN": self.signature(timestamp, method, request_path, body),
            "OK-ACCESS-TIMESTAMP": timestamp,
            "OK-ACCESS-PASSPHRASE": self._passphrase,
        }

    def __repr__(self) -> str:
        return f"Credentials(api_key={mask(self.api_key)!r}, secret_key='***', passphrase='***')"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("Credentials cannot be pickled (they hold secrets)")


def mask(api_key: str) -> str:
    """Enough of an API key to tell keys apart in logs, not enough to use it."""
    return api_key[:4] + "…" if len(api_key) > 8 else "…"
