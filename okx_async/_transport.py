"""Sends exactly one HTTP request and turns every answer into OKX data or a typed error.

This is the only module that sees aiohttp exceptions; each is translated here, so the
layers above deal in `okx_async` errors only. The translated error carries a description
of aiohttp's error, not the error itself: its `request_info` and the frames of its
traceback hold the signed request headers (signature and passphrase).
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl as _ssl
from collections.abc import Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import orjson

from ._defaults import CONNECT_TIMEOUT, CONNECTION_LIMIT, ERROR_BODY_PREVIEW, REQUEST_TIMEOUT
from ._errors import (
    ClientClosedError,
    InvalidInputError,
    NetworkError,
    RequestTimeoutError,
    TLSError,
    TransportError,
    UnexpectedResponseError,
    api_error_for,
)
from ._urls import has_url_credentials, mask_credentials_in_text, mask_url_credentials

__all__ = ["MAX_RESPONSE_BYTES", "Transport", "check_base_url", "refuse_url_credentials"]

MAX_RESPONSE_BYTES = 1 << 20  # no answer of these endpoints comes near 1 MiB
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def check_base_url(base_url: str, *, allow_insecure_http: bool = False) -> str:
    """The base URL without a trailing slash; plain http only for loopback hosts.

    Raises InvalidInputError. Credentials (`user:pw@`) are checked first, and every
    message shows the URL with them masked, so a secret in the URL is never echoed.
    """
    refuse_url_credentials(base_url)
    shown = repr(base_url)
    try:
        parts = urlsplit(base_url)
        hostname = parts.hostname
    except ValueError:  # a malformed IPv6 literal, for one
        raise InvalidInputError(f"base_url {shown} is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not hostname:
        raise InvalidInputError(f"base_url {shown} must look like https://www.okx.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidInputError(f"base_url {shown} must not have a path or query")
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(hostname):
        raise InvalidInputError(
            f"base_url {shown} uses plain http to a non-loopback host; use https "
            "(or pass allow_insecure_http=True if you really mean it)"
        )
    return base_url.rstrip("/")


def refuse_url_credentials(base_url: str) -> None:
    """InvalidInputError if `base_url` carries credentials (`user:pw@`, `password=`); the
    message shows the URL with them masked. Runs before any other check of the URL."""
    if has_url_credentials(base_url):
        raise InvalidInputError(
            f"base_url {mask_url_credentials(base_url)!r} must not carry credentials"
        )


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Transport:
    """One aiohttp session (connection reuse) for one base URL."""

    __slots__ = (
        "_base_url",
        "_closed",
        "_connect_timeout",
        "_default_timeout",
        "_request_timeout",
        "_session",
        "_ssl",
    )

    def __init__(
        self,
        *,
        base_url: str,
        request_timeout: float = REQUEST_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        ssl: _ssl.SSLContext | None = None,
    ) -> None:
        self._base_url = base_url
        # Per request rather than per connector: aiohttp keys pooled connections by it.
        self._ssl: _ssl.SSLContext | bool = True if ssl is None else ssl
        self._request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._default_timeout = aiohttp.ClientTimeout(
            total=request_timeout, sock_connect=connect_timeout
        )

    @property
    def request_timeout(self) -> float:
        return self._request_timeout

    def _open_session(self) -> aiohttp.ClientSession:
        if self._closed:  # never reopen behind close(): that session would leak
            raise ClientClosedError("the client was closed")
        # Created lazily inside the running loop, as aiohttp requires.
        connector = aiohttp.TCPConnector(limit=CONNECTION_LIMIT, ssl=True)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._default_timeout,
            raise_for_status=False,
            auto_decompress=True,
        )
        return self._session

    async def send(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        timeout: float | None = None,
    ) -> list[Any]:
        """Send one request; return OKX's `data` list when `code` is "0", else raise."""
        session = self._session or self._open_session()
        request_timeout = self._request_timeout if timeout is None else timeout
        # Built once; a new one only when a deadline asks for less.
        per_request = (
            aiohttp.ClientTimeout(total=timeout, sock_connect=self._connect_timeout)
            if timeout is not None
            else self._default_timeout
        )
        failure: TransportError
        try:
            async with session.request(
                method,
                self._base_url + path,
                data=body or None,
                headers=headers,
                timeout=per_request,
                allow_redirects=False,
                ssl=self._ssl,
            ) as response:
                length = response.content_length
                if length is not None and length <= MAX_RESPONSE_BYTES:
                    raw = await response.read()
                else:  # unknown or too long: read no more than we would keep
                    raw = await _read_capped(response.content, MAX_RESPONSE_BYTES + 1)
                status = response.status
        except asyncio.TimeoutError:
            failure = RequestTimeoutError(
                f"no response from OKX within {request_timeout:g} s", path=path
            )
        except aiohttp.ClientError as exc:
            failure = _translate(exc, self._base_url, path)
        else:
            # The headers outlive the closed response; _decode reads them only on errors.
            return _decode(raw, status=status, headers_of=response, path=path)
        # Raised here, outside the except clauses, so aiohttp's error is neither the
        # __cause__ nor the __context__ of ours (see the module docstring).
        raise failure

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def __repr__(self) -> str:
        state = "open" if self._session is not None else "idle"
        return f"Transport(base_url={self._base_url!r}, {state})"


async def _read_capped(stream: aiohttp.StreamReader, limit: int) -> bytes:
    # read(n) returns what is buffered, up to n: loop until the limit or the end.
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _translate(exc: aiohttp.ClientError, base_url: str, path: str) -> TransportError:
    if isinstance(exc, (aiohttp.ClientSSLError, aiohttp.ServerFingerprintMismatch)):
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            what = f"the TLS certificate of {base_url} was not trusted"
        else:
            what = f"the TLS handshake with {base_url} failed"
        return TLSError(
            f"{what} ({_describe(exc)}). Retrying cannot fix this. If a "
            "proxy or private CA signs this host's certificate, pass its CA bundle: "
            "OKXClient(..., ssl=ssl.create_default_context(cafile='/path/to/ca.pem'))",
            path=path,
        )
    if isinstance(exc, aiohttp.ClientPayloadError):
        return NetworkError(f"the response body was cut off: {_describe(exc)}", path=path)
    return NetworkError(f"connection to OKX failed: {_describe(exc)}", path=path)


def _describe(exc: BaseException) -> str:
    # Only the type and message, never the exception: a ClientResponseError's
    # request_info holds the request headers. Messages name URLs (our base URL has no
    # credentials, but a proxy URL may): mask any user:password@ all the same.
    text = mask_credentials_in_text(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _unexpected(reason: str, raw: bytes, *, status: int, path: str) -> UnexpectedResponseError:
    preview = raw[:ERROR_BODY_PREVIEW].decode("utf-8", "replace")
    return UnexpectedResponseError(reason, path=path, status=status, body_preview=preview)


class _HasHeaders(Protocol):
    @property
    def headers(self) -> Mapping[str, str]: ...


def _decode(raw: bytes, *, status: int, headers_of: _HasHeaders, path: str) -> list[Any]:
    if len(raw) > MAX_RESPONSE_BYTES:
        raise _unexpected("response larger than 1 MiB", raw, status=status, path=path)
    if not raw:
        raise _unexpected("empty response", raw, status=status, path=path)
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # Looked up here, not per request: reading response.headers costs ~0.4 us.
        content_type = headers_of.headers.get("Content-Type", "")
        kind = "HTML page" if "html" in content_type.lower() else "non-JSON response"
        raise _unexpected(f"{kind} instead of OKX JSON", raw, status=status, path=path) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("code"), (str, int)):
        raise _unexpected("JSON without OKX's 'code' field", raw, status=status, path=path)
    code = str(payload["code"])
    if code != "0":
        message = payload.get("msg")
        return_message = message if isinstance(message, str) else ""
        raise api_error_for(code=code, message=return_message, status=status, path=path)
    data = payload.get("data")
    if not isinstance(data, list):
        raise _unexpected("OKX JSON whose 'data' is not a list", raw, status=status, path=path)
    return data
