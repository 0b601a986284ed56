"""Sends exactly one HTTP request and turns every answer into OKX data or a typed error.

This is the only module that sees aiohttp exceptions; each is translated here, so the
layers above deal in `okx_async` errors only. The translated error carries a description
of aiohttp's error, not the error itself: its `request_info` and the frames of its
traceback hold the signed request headers (signature and passphrase).
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import aiohttp
import orjson
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from ._auth import RequestHeaders
from ._defaults import CONNECT_TIMEOUT, ERROR_BODY_PREVIEW, REQUEST_TIMEOUT
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
from ._pool import (
    AcquirePool,
    LoopPools,
    NetworkSettings,
    Pool,
    check_local_addr,
    check_proxy,
    mask_url,
    release_pool,
)
from ._urls import (
    MaskedURL,
    check_base_url,
    mask_credentials_in_text,
    refuse_url_credentials,
)

if TYPE_CHECKING:
    from ._options import ClientOptions

__all__ = ["MAX_RESPONSE_BYTES", "Transport", "check_base_url", "refuse_url_credentials"]

MAX_RESPONSE_BYTES = 1 << 20  # no answer of these endpoints comes near 1 MiB


# (loop, session, proxy to pass per request, shared pool or None): found once per loop.
_Bound = tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession, str | None, Pool | None]


class Transport:
    """Sends requests to one base URL through a connection pool of the running loop.

    Where the pool comes from is given, not looked up here: `pools=` is called with the
    running loop and the network settings and returns a pool with one more user (given
    back by `aclose`, or when the transport moves to another loop). `OKXClient` passes
    the loop's shared pools (`_shared.acquire_pool`), so clients with the same network
    settings share connections. Without `pools=` the transport makes its own pool per
    loop. With `session=` the caller's own session is used and never closed here.
    """

    __slots__ = (
        "_base_url",
        "_bound",
        "_closed",
        "_connect_timeout",
        "_default_timeout",
        "_pools",
        "_proxy",
        "_request_timeout",
        "_session",
        "_settings",
        "_ssl",
        "_trust_env",
    )

    def __init__(
        self,
        *,
        base_url: str,
        request_timeout: float = REQUEST_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        proxy: str | None = None,
        trust_env: bool = False,
        local_addr: str | tuple[str, int] | None = None,
        ssl: _ssl.SSLContext | None = None,
        session: aiohttp.ClientSession | None = None,
        pools: AcquirePool | None = None,
    ) -> None:
        self._base_url = base_url
        self._pools = _own_pool if pools is None else pools
        # Per request rather than per connector: aiohttp keys pooled connections by it.
        self._ssl: _ssl.SSLContext | bool = True if ssl is None else ssl
        self._request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        proxy = check_proxy(proxy)
        addr = check_local_addr(local_addr)
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise InvalidInputError(
                f"session must be an aiohttp.ClientSession, not {type(session).__name__}"
            )
        if session is not None and (proxy is not None or addr is not None or trust_env):
            raise InvalidInputError(
                "session= brings its own network settings: pass proxy, trust_env and "
                "local_addr to that session (or its connector) instead"
            )
        if proxy is not None and addr is not None and proxy.lower().startswith("socks"):
            raise InvalidInputError("local_addr cannot be combined with a SOCKS proxy")
        if not isinstance(trust_env, bool):
            raise InvalidInputError(f"trust_env must be a bool, not {type(trust_env).__name__}")
        self._proxy = proxy
        self._trust_env = trust_env
        self._settings = NetworkSettings(proxy, addr, self._ssl)
        self._session = session  # the caller's: never closed here
        self._bound: _Bound | None = None
        self._closed = False
        self._default_timeout = aiohttp.ClientTimeout(
            total=request_timeout, sock_connect=connect_timeout
        )

    @property
    def request_timeout(self) -> float:
        return self._request_timeout

    async def _bind(self, loop: asyncio.AbstractEventLoop) -> _Bound:
        """The session to use on `loop`: the caller's, or the loop's shared pool."""
        if self._closed:  # never reopen behind close(): that pool would leak
            raise ClientClosedError("the client was closed")
        previous = self._bound
        if self._session is not None:
            owner = getattr(self._session, "_loop", loop)
            if owner is not loop:
                raise InvalidInputError(
                    "the session passed as session= belongs to another event loop; "
                    "create it in the loop that uses the client"
                )
            bound: _Bound = (loop, self._session, None, None)
            self._bound = bound
            return bound
        settings = self._settings
        if self._trust_env and settings.proxy is None:
            settings = settings._replace(proxy=_env_proxy(self._base_url))
        pool = await self._pools(loop, settings)
        bound = self._bound = (loop, pool.session, pool.http_proxy, pool)
        if previous is not None and previous[3] is not None:
            await release_pool(previous[3])  # the pool of a loop this client left
        return bound

    async def send(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        timeout: float | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> list[Any]:
        """Send one request; return OKX's `data` list when `code` is "0", else raise.

        `loop` is the running loop, when the caller has it at hand (finding it costs a
        system call on Python < 3.12)."""
        bound = self._bound
        if loop is None:
            loop = asyncio.get_running_loop()
        if bound is None or bound[0] is not loop:
            bound = await self._bind(loop)
        session = bound[1]
        if session.closed:
            self._check_session()  # raises
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
                headers=headers.multidict() if isinstance(headers, RequestHeaders) else headers,
                timeout=per_request,
                allow_redirects=False,
                proxy=bound[2],
                ssl=self._ssl,
            ) as response:
                length = response.content_length
                if length is not None and length <= MAX_RESPONSE_BYTES:
                    raw = await response.read()
                else:  # unknown or too long: read no more than we would keep
                    raw = await _read_capped(response.content, MAX_RESPONSE_BYTES + 1)
                status = response.status
        except TransportError as exc:
            # Raised by our own connector (_pool: no descriptor left, a SOCKS failure)
            # from inside aiohttp: keep the error, not aiohttp's frames or errors.
            failure = exc.with_traceback(None)
            failure.__cause__ = failure.__context__ = None
        except asyncio.TimeoutError:
            failure = RequestTimeoutError(
                f"no response from OKX within {request_timeout:g} s", path=path
            )
        except aiohttp.ClientError as exc:
            failure = _translate(exc, self._base_url, path)
        else:
            if not _from_proxy_auth(status, raw, proxied=bound[2] is not None):
                content_type = response.headers.get("Content-Type", "")
                return _decode(raw, status=status, content_type=content_type, path=path)
            failure = _proxy_refused(path)  # a plain-http target: the proxy answered itself
        # Raised here, outside the except clauses, so aiohttp's error is neither the
        # __cause__ nor the __context__ of ours (see the module docstring).
        _raise_unchained(failure)

    def _check_session(self) -> None:
        if self._closed:
            raise ClientClosedError("the client was closed")
        if self._session is None:
            raise ClientClosedError(
                "the connection pool was closed: its event loop is shutting down"
            )
        raise ClientClosedError("the aiohttp session passed as session= was closed by its owner")

    async def aclose(self) -> None:
        """Stop sending; give the pool back (the last client closes it). A session passed
        as `session=` stays open: it belongs to the caller."""
        self._closed = True
        bound, self._bound = self._bound, None
        if bound is not None and bound[3] is not None:
            await release_pool(bound[3])

    def __repr__(self) -> str:
        state = "idle" if self._bound is None else "open"
        if self._closed:
            state = "closed"
        proxy = "" if self._proxy is None else f", proxy={mask_url(self._proxy)!r}"
        addr = self._settings.local_addr
        local = "" if addr is None else f", local_addr={addr[0]!r}"
        own = ", session=caller's" if self._session is not None else ""
        return f"Transport(base_url={self._base_url!r}{proxy}{local}{own}, {state})"

    @classmethod
    def for_options(cls, options: ClientOptions, *, pools: AcquirePool | None = None) -> Transport:
        """The transport of a client's validated options (their network part)."""
        return cls(
            base_url=options.base_url,
            request_timeout=options.request_timeout,
            connect_timeout=options.connect_timeout,
            proxy=options.proxy,
            trust_env=options.trust_env,
            local_addr=options.local_addr,
            session=options.session,
            ssl=options.ssl,
            pools=pools,
        )


async def _own_pool(loop: asyncio.AbstractEventLoop, settings: NetworkSettings) -> Pool:
    # A pool nobody else uses: its last (only) user is this transport, whose aclose() or
    # move to another loop closes it. The pool keeps its LoopPools (and that one's keeper,
    # which closes it at the loop's shutdown) alive.
    return await LoopPools().acquire(loop, settings)


def _env_proxy(base_url: str) -> str | None:
    """The proxy HTTP_PROXY/HTTPS_PROXY/NO_PROXY choose for `base_url`, read the way
    aiohttp's `trust_env` reads them, but once per pool rather than in a worker thread on
    every request."""
    url = URL(base_url)
    try:
        proxy, auth = get_env_proxy_for_url(url)
    except LookupError:
        return None
    if auth is not None:  # aiohttp strips credentials from the URL: put them back
        proxy = proxy.with_user(auth.login).with_password(auth.password)
    return MaskedURL(str(proxy))


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


def _raise_unchained(error: TransportError) -> NoReturn:
    """Raise `error` with no __context__. On Python 3.10 an exception caught inside
    aiohttp can stay "being handled" in the task after its except clause ends, and a
    plain raise would then chain it; a bare re-raise keeps the context as set here."""
    try:
        raise error
    except TransportError:
        error.__context__ = None
        raise


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
    if isinstance(exc, aiohttp.ClientHttpProxyError) and exc.status == _PROXY_AUTH_REQUIRED:
        return _proxy_refused(path)  # an https target: the proxy refused the CONNECT
    if isinstance(exc, aiohttp.ClientPayloadError):
        return NetworkError(f"the response body was cut off: {_describe(exc)}", path=path)
    if isinstance(exc, aiohttp.ClientConnectorError):
        unsent = NetworkError(
            f"connection to OKX failed, nothing sent: {_describe(exc)}", path=path
        )
        unsent.sent = False  # no connection, so no request: nothing for OKX to count
        return unsent
    return NetworkError(f"connection to OKX failed: {_describe(exc)}", path=path)


_PROXY_AUTH_REQUIRED = 407  # OKX never answers it; only a proxy on the way does


def _from_proxy_auth(status: int, raw: bytes, *, proxied: bool) -> bool:
    """Whether an answer is a proxy asking for credentials rather than OKX's: 407, or a
    non-JSON 401 through an http proxy (tinyproxy answers so; OKX's 401s are JSON)."""
    if status == _PROXY_AUTH_REQUIRED:
        return True
    return status == 401 and proxied and not raw.lstrip().startswith(b"{")


def _proxy_refused(path: str) -> NetworkError:
    """The proxy wants (other) credentials: nothing reached OKX, and no retry can help."""
    error = NetworkError(
        "the proxy refused the request (HTTP 407/401: it wants credentials): check the "
        "user name and password in proxy= (http://user:password@host:port); nothing was "
        "sent to OKX",
        path=path,
    )
    error.sent = False
    error.retryable = False
    return error


def _describe(exc: BaseException) -> str:
    # Only the type and message, never the exception: a ClientResponseError's
    # request_info holds the request headers. Messages name URLs (our base URL has no
    # credentials, but a proxy URL may): mask any user:password@ all the same.
    text = mask_credentials_in_text(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _unexpected(reason: str, raw: bytes, *, status: int, path: str) -> UnexpectedResponseError:
    preview = raw[:ERROR_BODY_PREVIEW].decode("utf-8", "replace")
    return UnexpectedResponseError(reason, path=path, status=status, body_preview=preview)


def _decode(raw: bytes, *, status: int, content_type: str, path: str) -> list[Any]:
    if len(raw) > MAX_RESPONSE_BYTES:
        raise _unexpected("response larger than 1 MiB", raw, status=status, path=path)
    if not raw:
        raise _unexpected("empty response", raw, status=status, path=path)
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
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
