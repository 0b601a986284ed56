"""The attempt loop: sync the clock, take a lease, sign, send, and retry or give up.

`AttemptLoop._request` is one coroutine for the whole loop, not a chain of awaited
helpers: every waiting call keeps its coroutines alive, and each one costs memory and
garbage-collector scans. Each concern is a named synchronous step instead (the budget,
headers, the answer, the failure); only the clock sync, the User ID lookup and the
retry wait are coroutines of their own, and they run off the common path. What is
counted and told about each attempt is the `Reporter`'s (`_events`); which budget it
spends is the `Budgets`' (`_budgets`).

`OKXClient` inherits this class: the loop reads the client's parts (options,
transport, credentials, budgets, reporter) directly, and the client's lifecycle
(`ClientState`) decides when it stops.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from itertools import count
from typing import TYPE_CHECKING, Any, TypeVar

from ._auth import Credentials, RequestHeaders
from ._clock import ServerClock
from ._defaults import SERVER_TIME_PATH
from ._errors import (
    ClientClosedError,
    DeadlineExceededError,
    InvalidInputError,
    OKXError,
    UnexpectedResponseError,
)
from ._events import Reporter, reason
from ._limits import ENDPOINT_LIMITS, KeyLimiter, Lease, LimiterKey
from ._options import is_positive_number
from ._ordering import Lane, SupersededError, Update
from ._retry import Action, Decision, decide, outcome_unknown
from ._shared import for_loop
from ._transport import Transport

if TYPE_CHECKING:
    from ._budgets import Budgets
    from ._options import ClientOptions
    from ._submit import Submitter

__all__ = [
    "AttemptLoop",
    "ClientState",
    "deadline_after",
    "first_row",
    "last_words",
    "release_after",
    "within",
]

logger = logging.getLogger("okx_async")

_T = TypeVar("_T")


class ClientState(enum.Enum):
    """OPEN takes calls; CLOSING (inside `close()`) drains them and takes no new ones;
    CLOSED is final. A request stopped by `close()` ends in ClientClosedError."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class AttemptLoop:
    """The client's requests: rate limited, signed, retried within the caller's deadline."""

    # The loop's own state; the rest are the client's slots.
    __slots__ = ("_active", "_clock", "_drained", "_last_error", "_loop")

    # The client's parts the loop uses (set by OKXClient.__init__).
    _state: ClientState
    _options: ClientOptions
    _credentials: Credentials
    _transport: Transport
    _budgets: Budgets
    _report: Reporter
    _submitter: Submitter

    def _start_requests(self) -> None:
        # The loop the client's per-loop parts (clock, in-process store) were found for,
        # and its clock for this host: re-found when a call runs on another loop.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock: ServerClock | None = None
        # Tasks inside _request now -> whether close() stopped them (see _stop_requests).
        self._active: dict[asyncio.Task[Any], bool] = {}
        self._drained: asyncio.Future[None] | None = None  # the last one left
        # (loop time, error) of the latest failed attempt: what a deadline error names.
        self._last_error: tuple[float, OKXError] | None = None

    def _lookup_uid(self) -> Awaitable[str]:
        raise NotImplementedError  # the client's: one account/config call

    async def _user_id(self, deadline: float | None) -> str:
        """The User ID, looked up once (shared by the client's callers) within `deadline`."""
        lookup = self._budgets.user_id(self._lookup_uid)
        return await within(deadline, lookup, "looking up the User ID", self._error_since)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        body: bytes = b"",
        deadline: float | None,
        lane: Lane | None = None,
        signed: bool = True,
    ) -> list[Any]:
        """Send with rate limiting and retries; return OKX's `data`."""
        task = asyncio.current_task()
        assert task is not None
        self._active[task] = False  # not stopped by close()
        loop = task.get_loop()  # not get_running_loop(): on Python < 3.12 that is a getpid()
        rate, target, stats = ENDPOINT_LIMITS[path], path + query, self._report.stats
        resynced = False  # after a 50102, once per call
        try:
            for attempt in count(1):
                clock = self._attempt_clock(loop)
                if signed and not clock.synced:
                    await self._sync_clock(clock, deadline)
                key = self._budgets.keys.get(path) or await self._limiter_key(path, deadline)
                limiter = self._budgets.limiter(key, rate)
                asked = loop.time()
                stats.queued += 1
                try:
                    lease = await limiter.acquire(deadline=deadline)
                finally:
                    stats.queued -= 1
                sent_at = self._report.sent(asked, loop.time(), path, attempt, lane)
                unanswered = True  # no answer yet: OKX may count it at any later moment
                try:
                    headers = self._headers(clock, method, target, body, signed)
                    timeout = None if deadline is None else self._attempt_timeout(deadline, loop)
                    data = await self._transport.send(
                        method, target, body=body, headers=headers, timeout=timeout, loop=loop
                    )
                except OKXError as exc:
                    error: OKXError = exc
                    unanswered = outcome_unknown(exc)
                    if self._answered_error(exc, method, path, attempt, lane, sent_at, loop):
                        await limiter.on_rate_limited()
                except asyncio.CancelledError:
                    self._in_flight_cancelled(lane, loop)
                    raise
                else:
                    unanswered = False
                    self._report.answered(method, path, attempt, loop.time() - sent_at)
                    return data
                finally:
                    stats.in_flight -= 1
                    if unanswered:
                        release_after(loop, self._options.landing_horizon, limiter, lease)
                    else:
                        await limiter.release(lease)
                resynced = await self._before_retry(error, attempt, path, deadline, lane, resynced)
        except asyncio.CancelledError:
            if not self._stopped_by_close(task):
                raise
        finally:
            self._leave(task)
        # Raised here, not in the except clause: the CancelledError would be its __context__,
        # and its traceback runs through aiohttp's frames, which hold the signed headers.
        raise ClientClosedError("the client was closed before this request finished")

    # -- the steps of one attempt, in order ---------------------------------------------

    def _attempt_clock(self, loop: asyncio.AbstractEventLoop) -> ServerClock:
        """The server clock for the next attempt on `loop` (the running one);
        ClientClosedError once closing."""
        if self._state is not ClientState.OPEN:
            raise ClientClosedError("this OKXClient is closed; create a new one")
        clock = self._clock
        if clock is None or self._loop is not loop:
            clock = self._bind_loop(loop)
        return clock

    def _bind_loop(self, loop: asyncio.AbstractEventLoop) -> ServerClock:
        """Find the parts of `loop` this client uses: its clock for the host and, unless
        the client has a store of its own, its in-process store. A client used in a
        second `asyncio.run` must spend that loop's budget, the one its other clients
        spend, not the budget of a loop that is gone. InvalidInputError: see
        `refuse_a_second_busy_loop`."""
        refuse_a_second_busy_loop(self._loop, loop, self._active, self._submitter.outstanding)
        shared = for_loop(loop)
        self._budgets.bind_loop(shared)
        clock = self._clock = shared.clock(self._options.base_url)
        self._loop = loop
        return clock

    async def _sync_clock(self, clock: ServerClock, deadline: float | None) -> None:
        while not clock.synced:
            try:
                await within(
                    deadline,
                    clock.ensure_synced(self._fetch_server_time),
                    "syncing with OKX's clock",
                    self._error_since,
                )
            except ClientClosedError:
                if self._state is not ClientState.OPEN:
                    raise
                # The shared sync ran on another client that was closed meanwhile: ours
                # is still open, so sync through it.

    async def _fetch_server_time(self) -> float:
        data = await self._request("GET", SERVER_TIME_PATH, deadline=None, signed=False)
        ts = first_row(data, SERVER_TIME_PATH).get("ts")
        try:
            return int(str(ts)) / 1000
        except ValueError:
            raise UnexpectedResponseError(
                "server time without a numeric ts",
                path=SERVER_TIME_PATH,
                status=200,
                body_preview=str(ts)[:200],
            ) from None

    async def _limiter_key(self, path: str, deadline: float | None) -> LimiterKey:
        """The budget of `path`, once the User ID it needs is known."""
        key = self._budgets.known_key(path)
        return key or self._budgets.user_key(path, await self._user_id(deadline))

    def _headers(
        self, clock: ServerClock, method: str, target: str, body: bytes, signed: bool
    ) -> RequestHeaders:
        headers = (
            self._credentials.request_headers(clock.timestamp(), method, target, body)
            if signed
            else RequestHeaders()
        )
        if body:
            headers["Content-Type"] = "application/json"
        if self._options.demo:
            headers["x-simulated-trading"] = "1"
        return headers

    def _attempt_timeout(self, deadline: float, loop: asyncio.AbstractEventLoop) -> float | None:
        """The attempt's own bound: the transport's (None), unless the deadline is sooner."""
        timeout = max(deadline - loop.time(), 0.001)
        return None if timeout > self._options.request_timeout else timeout

    def _answered_error(
        self,
        error: OKXError,
        method: str,
        path: str,
        attempt: int,
        lane: Lane | None,
        sent_at: float,
        loop: asyncio.AbstractEventLoop,
    ) -> bool:
        """Report a failed attempt; True when the store must hear of a 50011."""
        took = loop.time() - sent_at
        through_lane = lane is not None
        return self._report.attempt_failed(
            error, method, path, attempt, took, through_lane=through_lane
        )

    def _in_flight_cancelled(self, lane: Lane | None, loop: asyncio.AbstractEventLoop) -> None:
        if lane is not None:  # it may have reached OKX: re-assert after the horizon
            lane.note_uncertain(loop.time() + self._options.landing_horizon)

    def _stopped_by_close(self, task: asyncio.Task[Any]) -> bool:
        """Whether close() cancelled this request. Then only the request ends: the task
        goes on (it may be a shared lane worker), and the caller gets ClientClosedError."""
        if not self._active.get(task, False):
            return False
        uncancel = getattr(task, "uncancel", None)
        if uncancel is not None:  # Python 3.11+: keep asyncio.timeout() honest
            uncancel()
        return True

    def _leave(self, task: asyncio.Task[Any]) -> None:
        self._active.pop(task, None)
        drained = self._drained
        if not self._active and drained is not None and not drained.done():
            drained.set_result(None)

    async def _stop_requests(self) -> None:
        """close(): stop the requests still waiting for a slot or on the wire. They are
        this client's alone to stop; the tasks running them may be shared lane workers,
        which carry on afterwards."""
        if not self._active:
            return
        self._drained = asyncio.get_running_loop().create_future()
        for task in self._active:
            self._active[task] = True  # stopped by close(): see _stopped_by_close
            task.cancel()
        await self._drained

    # -- after a failed attempt ----------------------------------------------------------

    async def _before_retry(
        self,
        error: OKXError,
        attempt: int,
        path: str,
        deadline: float | None,
        lane: Lane | None,
        resynced: bool,
    ) -> bool:
        """Apply `decide`'s answer: return to retry (with whether the clock was resynced
        in this call), or raise the error, a DeadlineExceededError, or SupersededError."""
        loop = asyncio.get_running_loop()
        self._last_error = (loop.time(), error)
        if lane is not None and outcome_unknown(error):
            # OKX may still apply it: the lane re-asserts the newest value after this.
            lane.note_uncertain(loop.time() + self._options.landing_horizon)
        decision = self._decide(error, attempt, deadline, lane, resynced, resync_done=False)
        if decision.action is Action.RESYNC:
            await self._attempt_clock(loop).resync(self._fetch_server_time)
            decision = self._decide(error, attempt, deadline, lane, False, resync_done=True)
            resynced = True
        if decision.action is Action.GIVE_UP:
            self._report.gave_up(error, path, attempt)
            raise decision.error  # type: ignore[misc]  # GIVE_UP always carries one
        if decision.action is Action.SUPERSEDED:
            raise SupersededError  # a newer value waits: retrying this one could undo it
        await self._retry_after(decision.delay, error, path, attempt, lane)
        return resynced

    def _decide(
        self,
        error: OKXError,
        attempt: int,
        deadline: float | None,
        lane: Lane | None,
        clock_resynced: bool,
        *,
        resync_done: bool,
    ) -> Decision:
        time_left = None if deadline is None else deadline - asyncio.get_running_loop().time()
        decision = decide(
            error,
            attempt,
            self._options.retry,
            newer_waiting=lane is not None and lane.has_newer(),
            time_left=time_left,
            clock_resynced=clock_resynced,
            resync_done=resync_done,
        )
        if decision.action is not Action.RESYNC and self._state is not ClientState.OPEN:
            return Decision(Action.GIVE_UP, error=error)  # closing: no more attempts
        return decision

    async def _retry_after(
        self, delay: float, error: OKXError, path: str, attempt: int, lane: Lane | None
    ) -> None:
        self._report.retrying(error, path, attempt, delay)
        logger.debug(
            "retrying %s after attempt %d in %.3f s: %s", path, attempt, delay, reason(error)
        )
        if delay > 0:
            await asyncio.sleep(delay)
            if lane is not None and lane.has_newer():
                raise SupersededError

    def _error_since(self, start: float) -> OKXError | None:
        """The latest failed attempt's error if it came after loop time `start`."""
        last = self._last_error
        return last[1] if last is not None and last[0] >= start else None


_LATE_RELEASES: set[asyncio.Task[None]] = set()  # strong references until each is done


def release_after(
    loop: asyncio.AbstractEventLoop, horizon: float, limiter: KeyLimiter, lease: Lease
) -> None:
    """Release `lease` `horizon` seconds from now, not at once: its request got no answer
    (timeout, dropped connection, cancelled on the wire, 5xx), so OKX may still count it
    until the landing horizon. The lease rule needs the latest moment the server can see
    the request; for an unanswered request that is the horizon, not the moment we gave
    up. The slot stays in flight until then and cools one window after. Not tied to the
    client: a closed client's late requests still count against the user. A store that
    is closed by then (a client's own Redis or sqlite backend) lets the lease lapse by
    its in-flight TTL instead."""

    def release() -> None:
        task = loop.create_task(limiter.release(lease))
        _LATE_RELEASES.add(task)
        task.add_done_callback(_late_release_done)

    loop.call_later(horizon, release)


def _late_release_done(task: asyncio.Task[None]) -> None:
    _LATE_RELEASES.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.debug("late release of an unanswered request's slot failed: %r", task.exception())


async def within(
    deadline: float | None,
    step: Awaitable[_T],
    what: str,
    error_since: Callable[[float], OKXError | None] | None = None,
) -> _T:
    """Await a shared step (clock sync, User ID lookup) no longer than the caller's
    deadline; the step itself is shielded inside and goes on for other callers.
    `error_since(t)` gives the error that used up the time (the latest failed attempt
    after loop time t): the DeadlineExceededError names it and has it as `__cause__`."""
    if deadline is None:
        return await step
    started = asyncio.get_running_loop().time()
    try:
        return await asyncio.wait_for(step, max(deadline - started, 0.0))
    except asyncio.TimeoutError as exc:
        if isinstance(exc, OKXError):
            raise  # the step's own typed timeout
        cause = None if error_since is None else error_since(started)
        raise DeadlineExceededError(
            f"{what} did not finish before the deadline{last_words(cause)}"
        ) from cause


def deadline_after(timeout: float | None) -> float | None:
    """The loop time `timeout` seconds from now (None: no deadline). InvalidInputError
    unless `timeout` is None or a finite number of seconds above 0."""
    if timeout is None:
        return None
    if not is_positive_number(timeout):
        raise InvalidInputError(f"timeout must be a positive number of seconds, not {timeout!r}")
    return asyncio.get_running_loop().time() + timeout


def last_words(cause: BaseException | None) -> str:
    """The tail of a deadline message naming the last attempt's error, if any."""
    return "" if cause is None else f"; the last attempt failed: {type(cause).__name__}: {cause}"


def first_row(data: list[Any], path: str) -> dict[str, Any]:
    if not data or not isinstance(data[0], dict):
        raise UnexpectedResponseError(
            "OKX answered code 0 without a data row",
            path=path,
            status=200,
            body_preview=repr(data)[:200],
        )
    return data[0]


def refuse_a_second_busy_loop(
    previous: asyncio.AbstractEventLoop | None,
    loop: asyncio.AbstractEventLoop,
    active: dict[asyncio.Task[Any], bool],
    outstanding: set[Update],
) -> None:
    """InvalidInputError when a client moving to `loop` still has requests (`active`
    tasks) or set calls (`outstanding` updates) unfinished on `previous`, another loop
    that is still running: the client's parts are not thread-safe, so a client belongs
    to one loop at a time (one client per thread)."""
    if previous is None or previous is loop or not previous.is_running():
        return
    # Copies: the other loop's thread may change them meanwhile.
    if any(task.get_loop() is previous for task in active.copy()) or any(
        u.future.get_loop() is previous and not u.future.done() for u in outstanding.copy()
    ):
        raise InvalidInputError(
            "this OKXClient has requests in flight on another event loop (another "
            "thread); a client belongs to one event loop at a time: use one client "
            "per thread or loop"
        )
