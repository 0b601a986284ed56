"""The Redis limiter's connection: the client, timeouts, and script calls with their
errors translated. Nothing here knows about leases or budgets.

An outage begins when one call fails or times out. From then on every call fails at once
(`RedisDown`) without touching the network until a probe is answered (the outage state,
its listeners and the probe: `_redis_outage.RedisOutage`).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import sys
from collections.abc import AsyncGenerator, Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import ClientClosedError, InvalidInputError, LimiterUnavailableError
from ._redis_outage import RedisOutage
from ._redis_scripts import ACQUIRE_LUA, RATE_LIMITED_LUA, REPORT_LUA, mask_url, url_secrets

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.commands.core import AsyncScript

__all__ = ["RedisDown", "RedisLink"]

_T = TypeVar("_T")

_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def _cluster_url(url: str, cluster: bool) -> tuple[str, bool]:
    """The URL for redis-py and whether it names a Redis Cluster: `redis+cluster://`
    and `rediss+cluster://` become `redis://` and `rediss://`."""
    scheme, sep, rest = url.partition("://")
    plain = _CLUSTER_SCHEMES.get(scheme.lower()) if sep else None
    if plain is not None:
        return f"{plain}://{rest}", True
    return url, cluster


def _consume(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def _close_at_shutdown(client: Redis | RedisCluster) -> AsyncGenerator[None, None]:
    # Started once per loop and never resumed: the loop's shutdown_asyncgens() closes it.
    try:
        yield
    finally:
        await client.aclose()


class RedisDown(Exception):
    """Redis did not answer (in time), or is in an outage; `__cause__` is the original
    error."""


class RedisLink:
    """One Redis (or Redis Cluster) client and its health, shared by every key.

    `url`: anything redis-py's `from_url` takes, or `redis+cluster://`/`rediss+cluster://`
    (`cluster=True` treats a plain URL as a cluster node). `operation_timeout` (s, > 0)
    bounds every call, connecting included. `probe_interval` (s, > 0): how often an outage
    pings Redis after its first ping (sent at once). Raises InvalidInputError for a URL
    redis-py rejects (password masked).
    """

    __slots__ = (
        "_calls",
        "_client",
        "_closed",
        "_closing",
        "_connect",
        "_counter",
        "_keeper",
        "_loop",
        "_outage",
        "_scripts",
        "_secrets",
        "_tasks",
        "_timeout",
        "_token",
        "_url",
    )

    def __init__(
        self,
        url: str,
        *,
        operation_timeout: float,
        probe_interval: float,
        cluster: bool = False,
        mode: str = "failing fast",
    ) -> None:
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self._url = mask_url(url)
        self._secrets = url_secrets(url)
        redis_url, cluster = _cluster_url(url, cluster)
        options: dict[str, Any] = {
            "socket_timeout": operation_timeout,
            "socket_connect_timeout": operation_timeout,
            # One immediate retry on a fresh connection (a pooled one may be stale; in a
            # cluster, after refreshing the topology). Each script is idempotent per
            # lease id, so a retry cannot take two slots.
            "retry": Retry(NoBackoff(), 1),
        }
        client, problem = _make_client(redis_url, cluster, options)
        if client is None:
            # Raised here, outside any except clause: redis-py's or urllib's error, whose
            # frames hold the URL and its password, is not even the __context__ of ours,
            # and no local of this frame shows an option's value.
            raise InvalidInputError(f"invalid Redis URL {self._url}: {self.scrub(problem)}")
        # A client's connections belong to the loop that opened them: each loop the link
        # is used on gets a client of its own (see `_follow_running_loop`).
        self._connect = partial(_make_client, redis_url, cluster, options)
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop of `_client`
        self._keeper: AsyncGenerator[None, None] | None = None
        self._client = client
        self._scripts: dict[str, AsyncScript] = {
            "acquire": client.register_script(ACQUIRE_LUA),
            "report": client.register_script(REPORT_LUA),
            "rate_limited": client.register_script(RATE_LIMITED_LUA),
        }
        self._timeout = operation_timeout
        self._outage = RedisOutage(
            url=self._url,
            mode=mode,
            probe_interval=probe_interval,
            scrub=self.scrub,
            ping=lambda: self._bounded_in_task(self._ping()),
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False  # aclose began: no new calls from callers
        self._closed = False  # the pool is closed: no calls at all
        self._token = secrets.token_hex(6)  # this link's lease ids: <token>:<counter>
        self._counter = 0
        self._calls = 0  # script calls under way

    def __repr__(self) -> str:
        state = "closed" if self._closing else "outage" if self.in_outage else "ok"
        return (
            f"<RedisLink {self._url} timeout={self._timeout:g}s {state} "
            f"calls={self._calls} background={len(self._tasks)}>"
        )

    @property
    def url(self) -> str:
        """The Redis URL with its password masked."""
        return self._url

    @property
    def in_outage(self) -> bool:
        """Whether the last call failed and no probe or call has succeeded since."""
        return self._outage.active

    @property
    def closed(self) -> bool:
        """Whether the pool is closed (no call can be made any more)."""
        return self._closed

    @property
    def closing(self) -> bool:
        """Whether `aclose` began (background clean-ups may still run)."""
        return self._closing

    def new_id(self) -> str:
        """A lease id unique across processes: <random token>:<counter>."""
        self._counter += 1
        return f"{self._token}:{self._counter}"

    def new_epoch_id(self) -> str:
        """A candidate epoch id (decimal, below 2**48 so Lua numbers hold it exactly)."""
        return str(secrets.randbelow(2**48 - 1) + 1)

    def on_outage(self, listener: Callable[[bool], None]) -> None:
        """Call `listener(True)` when an outage begins and `listener(False)` when it ends."""
        self._outage.on_change(listener)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def unavailable(self, down: RedisDown) -> LimiterUnavailableError:
        """The caller-facing error for `down` (password masked)."""
        cause = down.__cause__
        what = type(cause).__name__ if cause is not None else "error"
        text = self.scrub(str(cause)) if cause is not None else ""
        return LimiterUnavailableError(
            f"the Redis limiter at {self._url} did not answer ({what}: {text}); nothing was sent"
        )

    def outage_error(self) -> LimiterUnavailableError:
        """The error for callers turned away during an outage (its cause: the failure
        that began it)."""
        down = RedisDown()
        down.__cause__ = self._outage.cause
        error = self.unavailable(down)
        error.__cause__ = self._outage.cause
        return error

    def spawn(self, coro: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        """Run `coro` in the background; `aclose` waits for it (bounded)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_consume)
        return task

    def register(self, name: str, lua: str) -> None:
        """Make script `lua` callable as `eval(name, ...)` (once per name)."""
        if name not in self._scripts:
            self._scripts[name] = self._client.register_script(lua)

    @property
    def busy(self) -> bool:
        """Whether background calls are under way."""
        return bool(self._tasks)

    @property
    def calls_under_way(self) -> int:
        """Script calls sent and not yet answered (or failed). A virtual-clock test holds
        its clock still while this is above 0, so a round trip takes no virtual time."""
        return self._calls

    async def eval(self, script: str, keys: list[str], args: list[str | int]) -> object:
        """Run one of the limiter's scripts ("acquire", "report", "rate_limited"): one
        round trip (EVALSHA; redis-py loads the script on NOSCRIPT). Raises RedisDown at
        once during an outage or after `aclose`, else after `operation_timeout` at most."""
        if self._closed:
            raise RedisDown from ClientClosedError("the Redis limiter backend is closed")
        if self._outage.active:
            raise RedisDown from self._outage.cause
        if self._loop is not asyncio.get_running_loop():
            await self._follow_running_loop()
        self._calls += 1
        try:
            raw = await self._bounded(self._run_script(script, keys, args))
        except Exception as exc:
            # Not only RedisError, OSError and timeouts: redis-py's cluster client also
            # fails with AttributeError when a topology refresh (after one command's
            # timeout) closes a connection under another running command (redis-py 8.1).
            # To the limiter, any failure of the call means Redis gave no answer.
            if not self._closed:
                self._outage.failed(exc)
            raise RedisDown from exc
        finally:
            self._calls -= 1
        return raw

    async def _follow_running_loop(self) -> None:
        """Use a client of the running loop from now on. A link reused in a second
        `asyncio.run` would otherwise write to connections of a closed loop ("Event loop
        is closed", taken for an outage). Each loop's client is closed at that loop's
        shutdown (`shutdown_asyncgens`, which `asyncio.run` calls), so none is left open."""
        if self._loop is not None:  # the first loop keeps the client made in __init__
            client, _ = self._connect()
            assert client is not None  # the URL was accepted in __init__
            self._client = client
            self._scripts = {
                name: self._client.register_script(script.script)
                for name, script in self._scripts.items()
            }
        self._loop = asyncio.get_running_loop()
        keeper = _close_at_shutdown(self._client)
        await keeper.asend(None)  # registers it with the loop's async-generator hooks
        self._keeper = keeper  # kept: dropping it would close the client at once

    async def _ping(self) -> object:
        return await self._client.ping()

    async def _bounded(self, call: Coroutine[Any, Any, _T]) -> _T:
        """`await call`, for at most the operation timeout (TimeoutError after it). On
        3.11+ in place, with no extra task. Not asyncio.wait_for on 3.10: it waits for the
        call it cancels to end, and redis-py's read timeout (due at the same moment) can
        take that cancellation for its own timeout and retry, so the caller waited for
        every retry."""
        if sys.version_info >= (3, 11):
            async with asyncio.timeout(self._timeout):
                return await call
        return await self._bounded_in_task(call)

    async def _bounded_in_task(self, call: Coroutine[Any, Any, _T]) -> _T:
        """`await call` in a task of our own (`spawn` retrieves its outcome, and aclose
        waits for it), for at most the operation timeout; a late call is cancelled and
        ends alone."""
        task = self.spawn(call)
        try:
            done, _ = await asyncio.wait({task}, timeout=self._timeout)
        finally:
            task.cancel()
        if not done:
            raise asyncio.TimeoutError
        return task.result()

    async def _run_script(self, script: str, keys: list[str], args: list[str | int]) -> object:
        # A cluster client routes a keyed command by slot only once its slot map is loaded:
        # a call made before then (redis-py gives it no default node, so no slot) goes to
        # a random master and gets MOVED, and after a few MOVEDs redis-py closes every
        # connection, including ones other calls are using (AttributeError on a None
        # writer in redis-py 8, unclosed sockets in 7). So load the map first: initialize()
        # does it once under redis-py's lock, and is a flag check after that (a no-op for a
        # plain client).
        await self._client.initialize()
        return await self._scripts[script](keys=keys, args=args)

    async def aclose(self) -> None:
        """Stop the probe, let background calls finish (bounded by the timeout), close
        the pool. Idempotent."""
        self._closing = True
        self._outage.stop_probe()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self._timeout)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._outage.wait_probe()
        if not self._closed:
            self._closed = True
            if self._loop in (None, asyncio.get_running_loop()):
                await self._client.aclose()
            # Else its connections are another loop's: that loop's shutdown closes them.


def _unknown_option(message: str) -> str:
    """redis-py's "unexpected keyword argument 'x'" as advice; the option's value (which
    may be anything, a secret included) is not repeated."""
    # "... unexpected keyword argument 'x'", and from Python 3.13 "... Did you mean 'y'?"
    names = re.findall(r"'([^']*)'", message.rpartition("argument ")[2])
    hint = f" (did you mean {names[1]!r}?)" if len(names) > 1 else ""
    return (
        f"{names[0] if names else '?'!r} is not an option redis-py takes in a URL's query "
        f"string{hint} (e.g. db, socket_timeout, ssl_cert_reqs, ssl_ca_certs, password, "
        "ssl_password); remove it"
    )


def _make_client(
    redis_url: str, cluster: bool, options: dict[str, Any]
) -> tuple[Redis | RedisCluster | None, str]:
    """(the client, "") or (None, what is wrong with the URL)."""
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import RedisCluster
    from redis.exceptions import RedisClusterException

    try:
        if cluster:
            return RedisCluster.from_url(redis_url, **options), ""
        client = aioredis.Redis.from_url(redis_url, **options)
        # redis-py keeps an unknown query option until the first connection is made: a
        # connection object (no socket yet) refuses it here instead.
        pool = client.connection_pool
        pool.connection_class(**pool.connection_kwargs)
        return client, ""
    except TypeError as exc:
        return None, _unknown_option(str(exc))
    except (ValueError, RedisClusterException) as exc:
        return None, str(exc)
