"""Connection pools per event loop, and the network settings that pick one.

Clients on one event loop with the same network settings (proxy, source address, TLS
settings) share one aiohttp session and its connector: one cap on open connections
(`CONNECTION_LIMIT`) for all of them, so hundreds of sub-accounts in one process need a
hundred sockets, not a hundred each. A request that finds every connection busy waits for
one (aiohttp's `limit`), it does not fail.

A pool belongs to its loop: futures and transports cannot cross loops. A client used from
a second loop (two `asyncio.run` calls) gets that loop's pool. A pool closes when its last
client closes, or when its loop shuts down (`asyncio.run` and `asyncio.Runner` finalize
async generators before closing the loop: each `LoopPools` is kept by one, whose
`finally` closes what is left). Which `LoopPools` serves a loop is decided above this
layer: `_shared` keeps one per loop for all clients.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import ssl as ssl_module
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import aiohttp

from ._defaults import CONNECTION_LIMIT
from ._errors import InvalidInputError, NetworkError, TooManyOpenFilesError
from ._urls import mask_url_credentials as mask_url

__all__ = [
    "HTTP_PROXY_SCHEMES",
    "SOCKS_PROXY_SCHEMES",
    "AcquirePool",
    "LoopPools",
    "NetworkSettings",
    "Pool",
    "check_local_addr",
    "check_proxy",
    "mask_url",
    "release_pool",
]

HTTP_PROXY_SCHEMES = frozenset({"http", "https"})
SOCKS_PROXY_SCHEMES = frozenset({"socks4", "socks5", "socks5h"})
_FD_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE})


def _scheme_host_port(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.hostname, parts.port


def check_proxy(proxy: object) -> str | None:
    """The proxy URL if it is usable; InvalidInputError (credentials masked) if not."""
    if proxy is None:
        return None
    if not isinstance(proxy, str):
        raise InvalidInputError(f"proxy must be a URL string, not {type(proxy).__name__}")
    # Only the parts needed, never the SplitResult: its repr (a traceback's locals) would
    # show the netloc, password included.
    try:
        scheme, hostname, port = _scheme_host_port(proxy)
    except ValueError:
        raise InvalidInputError(f"proxy {mask_url(proxy)!r} is not a valid URL") from None
    if scheme not in HTTP_PROXY_SCHEMES | SOCKS_PROXY_SCHEMES or not hostname:
        raise InvalidInputError(
            f"proxy {mask_url(proxy)!r} must look like http://host:port, https://host:port "
            "or socks5://host:port"
        )
    if scheme in SOCKS_PROXY_SCHEMES and port is None:
        raise InvalidInputError(f"proxy {mask_url(proxy)!r} needs a port")
    if scheme in SOCKS_PROXY_SCHEMES:
        try:
            import aiohttp_socks  # noqa: F401
        except ImportError:
            raise InvalidInputError(
                "a SOCKS proxy needs aiohttp-socks: pip install 'okx_async[socks]'"
            ) from None
    return proxy


def check_local_addr(local_addr: object) -> tuple[str, int] | None:
    """`(host, port)` for aiohttp from an IP address string or an `(ip, port)` pair."""
    if local_addr is None:
        return None
    host, port = (local_addr, 0) if isinstance(local_addr, str) else (None, None)
    if isinstance(local_addr, tuple) and len(local_addr) == 2:
        host, port = local_addr
    if not isinstance(host, str) or not isinstance(port, int) or isinstance(port, bool):
        raise InvalidInputError(
            "local_addr must be an IP address string ('192.0.2.7', '2001:db8::7') "
            "or an (address, port) pair"
        )
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise InvalidInputError(f"local_addr {host!r} is not an IPv4 or IPv6 address") from None
    if not 0 <= port <= 65535:
        raise InvalidInputError(f"local_addr port {port} is outside 0-65535")
    return (host, port)


class NetworkSettings(NamedTuple):
    """What decides which pool a client uses: equal settings, one pool per loop."""

    proxy: str | None  # http(s) or socks URL, credentials included
    local_addr: tuple[str, int] | None
    ssl: ssl_module.SSLContext | bool  # an SSLContext compares by identity


class _ConnectorMixin:
    """Turns "too many open files" into its own error: retrying cannot help while this
    process holds every descriptor it may have."""

    # Only where a new connection is made, not in connect(): most requests reuse a
    # pooled connection, and a wrapper there cost each of them a coroutine.
    async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:
        try:
            return await super()._create_connection(req, traces, timeout)  # type: ignore[misc]
        except aiohttp.ClientConnectorError as exc:
            # Not a certificate error: aiohttp before 3.14 raises AttributeError for its
            # os_error, and it is no descriptor shortage anyway.
            certificate = isinstance(exc, aiohttp.ClientConnectorCertificateError)
            if not certificate and _fd_exhausted(exc.os_error):
                raise TooManyOpenFilesError(
                    "too many open files: this process has no file descriptor left for a "
                    "connection (raise `ulimit -n`, or share one client per user)",
                    path=req.url.path,
                ) from exc
            raise


def _fd_exhausted(error: OSError) -> bool:
    if error.errno in _FD_EXHAUSTED:
        return True
    # Happy eyeballs may join several attempts' errors into one OSError without errno.
    return "Too many open files" in str(error)


class _TCPConnector(_ConnectorMixin, aiohttp.TCPConnector):
    pass


def _connector(settings: NetworkSettings) -> aiohttp.TCPConnector:
    common: dict[str, Any] = {"limit": CONNECTION_LIMIT, "ssl": settings.ssl}
    if settings.local_addr is not None:
        common["local_addr"] = settings.local_addr
    proxy = settings.proxy
    if proxy is not None and urlsplit(proxy).scheme.lower() in SOCKS_PROXY_SCHEMES:
        import aiohttp_socks

        class _SocksConnector(_ConnectorMixin, aiohttp_socks.ProxyConnector):
            # aiohttp-socks raises its own exceptions, which are no aiohttp.ClientError:
            # give them the typed form every other connection failure has.
            async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
                try:
                    return await super().connect(req, traces, timeout)
                except (aiohttp_socks.ProxyConnectionError, aiohttp_socks.ProxyTimeoutError) as exc:
                    raise NetworkError(
                        f"connection to the SOCKS proxy failed: {exc}", path=req.url.path
                    ) from exc
                except aiohttp_socks.ProxyError as exc:
                    error = NetworkError(f"the SOCKS proxy refused: {exc}", path=req.url.path)
                    error.retryable = False  # credentials or a target it will not reach
                    raise error from exc
                except aiohttp.ClientError:
                    raise
                except EOFError as exc:
                    # Some proxies hang up on wrong credentials instead of answering.
                    error = NetworkError(
                        "the SOCKS proxy refused: it closed the connection during the "
                        "handshake (check the proxy's user name and password)",
                        path=req.url.path,
                    )
                    error.retryable = False
                    raise error from exc

        connector: aiohttp.TCPConnector = _SocksConnector.from_url(proxy, **common)
        return connector
    return _TCPConnector(**common)


class Pool:
    """One aiohttp session (and its connector) shared by the clients using it."""

    __slots__ = ("_owner", "closed", "loop", "session", "settings", "users")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, settings: NetworkSettings, owner: LoopPools
    ) -> None:
        self.loop = loop
        self.settings = settings
        # Strong: the owner's keeper closes this pool at the loop's shutdown, so the owner
        # must live as long as its pools do, whoever else holds it.
        self._owner = owner
        self.users = 0
        self.closed = False
        self.session = aiohttp.ClientSession(
            connector=_connector(settings),
            raise_for_status=False,
            auto_decompress=True,
            # Clients of different users share this session: keep no cookies between them.
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    @property
    def http_proxy(self) -> str | None:
        """The proxy to pass per request (a SOCKS proxy lives in the connector)."""
        proxy = self.settings.proxy
        if proxy is None or urlsplit(proxy).scheme.lower() not in HTTP_PROXY_SCHEMES:
            return None
        return proxy

    async def close(self) -> None:
        self.closed = True
        pools = self._owner.pools
        if pools.get(self.settings) is self:
            del pools[self.settings]
        await self.session.close()

    def __repr__(self) -> str:
        proxy = None if self.settings.proxy is None else mask_url(self.settings.proxy)
        state = "closed" if self.closed else f"users={self.users}"
        return f"<Pool proxy={proxy!r} local_addr={self.settings.local_addr!r} {state}>"


class LoopPools:
    """The pools of one event loop, by network settings. It refers to no loop before its
    first `acquire` (then its keeper and its pools' sessions do), so an unused one keeps
    no loop alive. Which object serves a loop is the caller's choice: the client passes
    the loop's shared one (`_shared`), a bare `Transport` keeps its own."""

    __slots__ = ("keeper", "pools")

    def __init__(self) -> None:
        self.pools: dict[NetworkSettings, Pool] = {}
        self.keeper: AsyncGenerator[None, None] | None = None

    async def acquire(self, loop: asyncio.AbstractEventLoop, settings: NetworkSettings) -> Pool:
        """The pool for `settings` on `loop` (the running loop; made on first use), with
        one more user. Give it back with `release_pool`."""
        if self.keeper is None:
            keeper = _keep(self.pools)
            await keeper.asend(None)  # registers it with the loop's async-generator hooks
            self.keeper = keeper
        pool = self.pools.get(settings)
        if pool is None:
            pool = self.pools[settings] = Pool(loop, settings, self)
        pool.users += 1
        return pool

    def __repr__(self) -> str:
        return f"<LoopPools pools={len(self.pools)}>"


# How a transport gets a pool: (running loop, settings) -> a pool with one more user.
AcquirePool = Callable[[asyncio.AbstractEventLoop, NetworkSettings], Awaitable[Pool]]


async def _keep(pools: dict[NetworkSettings, Pool]) -> AsyncGenerator[None, None]:
    # Started once per loop and never resumed: the loop's shutdown_asyncgens() closes it,
    # and this `finally` closes the pools its clients left open, while the loop still runs.
    try:
        yield
    finally:
        for pool in list(pools.values()):
            await pool.close()


async def release_pool(pool: Pool) -> None:
    """One user fewer; the last one closes the pool (on its own loop)."""
    pool.users -= 1
    if pool.users > 0 or pool.closed:
        return
    loop = pool.loop
    if loop.is_closed():
        pool.closed = True  # its loop's shutdown closed it, or nothing can now
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:  # pragma: no cover - always called from a coroutine
        running = None
    if running is loop:
        await pool.close()
    elif loop.is_running():  # another thread's loop: close it there
        asyncio.run_coroutine_threadsafe(pool.close(), loop)
