"""The simulated exchange: OKX's checks, rolling-window limits, latency and faults.

Each request goes: inbound latency -> authenticate -> rate limit (the moment it is
counted) -> maybe a fault -> the endpoint -> record -> outbound latency -> response.
Authentication is `_auth`'s, fault injection `_faults`', the answers `_endpoints`'.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable
from functools import partial
from typing import Final

from aiohttp import web

from ._auth import TIMESTAMP_TOLERANCE, Caller, KeyTable
from ._endpoints import (
    RATE_LIMIT_200_TEXT,
    Reply,
    account_config,
    balance,
    okx,
    parse_json,
    set_amount,
)
from ._faults import FaultInjector
from ._state import (
    BALANCE_PATH,
    CONFIG_PATH,
    DEFAULT_LIMITS,
    REGIONS,
    SET_PATH,
    TIME_PATH,
    Faults,
    Record,
    RollingWindows,
    SimulatorConfig,
    SimUser,
)

__all__ = ["SIMULATOR_KEY", "TIMESTAMP_TOLERANCE", "Simulator", "create_app"]

# HTTP 200 by OKX's own statement; other clients report 401: SimulatorConfig.permission_status.
_PERMISSION_CODES: Final = frozenset({"50119", "50120"})
# A public/time request: no authentication, limited per IP.
_PUBLIC: Final = Caller(None, None, True, None)


class Simulator:
    """OKX's four endpoints in one aiohttp application (`app`), with inspectable state.

    `latency`, `clock_offset`, `limits`, `burst_limit`, `max_field_name`, `faults`,
    `region`, `rate_limit_status` and `permission_status` may be changed while it runs;
    `users` holds the simulator's own copies of the users. Raises ValueError for a
    config it cannot play (see `SimulatorConfig`).
    """

    __slots__ = (
        "_faults",
        "_keys",
        "_rng",
        "_windows",
        "app",
        "burst_limit",
        "clock_offset",
        "latency",
        "limits",
        "max_field_name",
        "permission_status",
        "rate_limit_status",
        "records",
        "region",
        "users",
    )

    def __init__(self, config: SimulatorConfig) -> None:
        self._keys = KeyTable(config.users)
        _check(config)
        self.users: dict[str, SimUser] = self._keys.users
        self.region = config.region
        self.rate_limit_status = config.rate_limit_status
        self.permission_status = config.permission_status
        self.limits: dict[str, tuple[int, float]] = {**DEFAULT_LIMITS, **config.limits}
        self.burst_limit = config.burst_limit
        self.latency = config.latency
        self.clock_offset = config.clock_offset
        self.max_field_name = config.max_field_name
        self.records: list[Record] = []
        self._windows = RollingWindows()
        self._rng = random.Random(config.seed)
        self._faults = FaultInjector(config.faults)
        self.app = web.Application()
        self.app[SIMULATOR_KEY] = self
        for path in (TIME_PATH, CONFIG_PATH, BALANCE_PATH):
            self.app.router.add_get(path, self._handle)
        self.app.router.add_post(SET_PATH, self._handle)
        self.app.on_shutdown.append(self._on_shutdown)

    def __repr__(self) -> str:
        return (
            f"Simulator(region={self.region!r}, users={len(self.users)}, "
            f"records={len(self.records)}, {self._faults!r})"
        )

    # --- inspection and control -------------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self._faults.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._faults.faults = faults  # same seed, same fault sequence

    def now(self) -> float:
        """The simulator's clock (Unix seconds): local time shifted by `clock_offset`."""
        return time.time() + self.clock_offset

    def values(self, uid: str) -> dict[str, str]:
        """The current clSpotInUseAmt per currency of a user (a copy)."""
        return dict(self.users[uid].values)

    def rate_limited_count(self, uid: str | None = None) -> int:
        """50011 answers so far: of one user (or "ip:<addr>" for public/time), or all."""
        return self._windows.refused(uid)

    def max_in_window(self, uid: str, path: str) -> int:
        """The most admitted requests of `uid` to `path` inside any (t - window, t]."""
        return self._windows.max_in_window(uid, path, self.limits[path][1])

    def script_faults(self, kinds: Iterable[str | None], *, applied: bool | None = None) -> None:
        """Queue faults for the next set requests that pass auth and rate limiting, one
        each (None: no fault). `applied` fixes whether ambiguous faults (drop, stall,
        timeout_50004) come after the value was set; None draws it from `faults`."""
        self._faults.script(kinds, applied)

    def hold_next(self, ccy: str, seconds: float) -> None:
        """Hold the next set request of `ccy` (any user) for `seconds` after it passed auth
        and rate limiting, then apply it whether or not its client still waits, and
        answer if it does: a request OKX applies late, after the client timed out. Its
        record says fault "hold". Holds of one currency queue up; a held request gets no
        other fault."""
        self._faults.hold(ccy, seconds)

    def reset_records(self) -> None:
        """Forget records, the admission log and 50011 counts; windows keep limiting."""
        self.records.clear()
        self._windows.clear_history()

    def release_stalls(self) -> None:
        """Wake every stalled request; each then closes its connection unanswered."""
        self._faults.release_stalls()

    async def _on_shutdown(self, _app: web.Application) -> None:
        self.release_stalls()

    # --- request flow -----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        await self._network_delay()
        arrival = asyncio.get_running_loop().time()
        parsed = parse_json(raw) if request.method == "POST" else None
        caller, refusal = self._admit(request, raw, arrival)
        record = partial(_record, request, arrival, parsed, caller)
        if refusal is not None:
            return await self._finish(request, record(refusal), refusal)
        process = partial(self._process, request, caller, parsed, raw)
        fault, reply, applied = await self._faults.respond(request.path, parsed, request, process)
        return await self._finish(request, record(reply, fault, applied), reply)

    def _admit(
        self, request: web.Request, raw: bytes, arrival: float
    ) -> tuple[Caller, Reply | None]:
        """Authenticate, then count the request against its subject's window of its
        path: (who sent it, the reply refusing it or None)."""
        path = request.path
        if path == TIME_PATH:
            caller, subject = _PUBLIC, f"ip:{request.remote}"
        else:
            caller = self._keys.authenticate(request, raw, region=self.region, now=self.now())
            subject = caller.user.uid if caller.user is not None else ""
        if caller.code is not None:
            status = self.permission_status if caller.code in _PERMISSION_CODES else None
            return caller, okx(caller.code, status=status)
        limit, window = self.limits[path]
        if not self._windows.try_admit(subject, path, arrival, limit, window, self.burst_limit):
            return caller, self._rate_limited()
        return caller, None

    def _rate_limited(self) -> Reply:
        if self.rate_limit_status == 200:
            return okx("50011", RATE_LIMIT_200_TEXT, status=200)
        return okx("50011")

    async def _finish(self, request: web.Request, entry: Record, reply: Reply) -> web.Response:
        self.records.append(entry)
        await self._network_delay()
        if reply.status == 0:
            if request.transport is not None:
                request.transport.close()
            # aiohttp cannot write this to the closed transport, and logs nothing for it.
            return web.Response(status=204)
        return reply.response()

    async def _network_delay(self) -> None:
        low, high = self.latency
        if high > 0:
            await asyncio.sleep(self._rng.uniform(low, high))

    # --- endpoints --------------------------------------------------------------------

    def _process(
        self, request: web.Request, caller: Caller, parsed: object, raw: bytes
    ) -> tuple[Reply, bool]:
        """The endpoint's own answer, and whether it changed a value."""
        path = request.path
        if path == TIME_PATH:
            return okx("0", data=[{"ts": str(int(self.now() * 1000))}]), False
        user, key = caller.user, caller.key
        assert user is not None and key is not None  # authenticated above
        if path == CONFIG_PATH:
            return okx("0", data=[account_config(user, key)]), False
        if path == BALANCE_PATH:
            ccys = request.query.get("ccy", "")
            return balance(user, ccys, now=self.now(), max_field_name=self.max_field_name), False
        return set_amount(user, parsed, raw, request.content_type)


def _check(config: SimulatorConfig) -> None:
    """Raise ValueError for settings no simulator can play."""
    if config.burst_limit is not None and config.burst_limit < 1:
        raise ValueError("burst_limit must be at least 1")
    if config.region not in REGIONS:
        raise ValueError(f"unknown region {config.region!r} (known: {', '.join(REGIONS)})")
    if config.rate_limit_status not in (200, 429) or config.permission_status not in (200, 401):
        raise ValueError("rate_limit_status must be 429 or 200, permission_status 200 or 401")


def _record(
    request: web.Request,
    arrival: float,
    parsed: object,
    caller: Caller,
    reply: Reply,
    fault: str | None = None,
    applied: bool = False,
) -> Record:
    """The request's record, its reply ready now."""
    return Record(
        arrival=arrival,
        method=request.method,
        path=request.path,
        api_key=request.headers.get("OK-ACCESS-KEY"),
        uid=caller.user.uid if caller.user is not None else None,
        body=parsed if isinstance(parsed, dict) else None,
        status=reply.status,
        code=reply.code,
        signature_ok=caller.signature_ok,
        fault=fault,
        applied=applied,
        replied=asyncio.get_running_loop().time(),
    )


SIMULATOR_KEY: Final = web.AppKey("okx_async_simulator", Simulator)


def create_app(config: SimulatorConfig) -> web.Application:
    """A new simulator's application; the Simulator is `app[SIMULATOR_KEY]`."""
    return Simulator(config).app
