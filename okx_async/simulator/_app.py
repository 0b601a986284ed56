"""The simulated exchange: OKX's checks, rolling-window limits, latency and faults.

Each request goes: inbound latency -> authenticate -> rate limit (the moment it is
counted) -> maybe a fault -> the endpoint -> record -> outbound latency -> response.
"""

from __future__ import annotations

import asyncio
import hmac
import random
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import Final

from aiohttp import web

from okx_async import parse_timestamp, sign

from ._endpoints import (
    FAULT_REPLIES,
    NO_REPLY,
    RATE_LIMIT_200_TEXT,
    Reply,
    account_config,
    balance,
    okx,
    parse_json,
    set_amount,
)
from ._state import (
    ALL_FAULT_KINDS,
    BALANCE_PATH,
    CONFIG_PATH,
    DEFAULT_LIMITS,
    REGIONS,
    SET_PATH,
    TIME_PATH,
    Faults,
    Record,
    RollingWindows,
    SimKey,
    SimulatorConfig,
    SimUser,
)

TIMESTAMP_TOLERANCE: Final = 30.0  # seconds either side of the simulator clock (else 50102)
# OKX's timestamp: UTC, milliseconds (exactly three digits) and Z. Anything else: 50112.
_TIMESTAMP: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
# Documented with HTTP 200; other clients report 401: SimulatorConfig.permission_status.
_PERMISSION_CODES: Final = frozenset({"50119", "50120"})
_AMBIGUOUS: Final = frozenset({"drop", "stall", "timeout_50004"})


class Simulator:
    """OKX's four endpoints in one aiohttp application (`app`), with inspectable state.

    `latency`, `clock_offset`, `limits`, `burst_limit`, `max_field_name`, `faults`,
    `region`, `rate_limit_status` and `permission_status` may be changed while it runs;
    `users` holds the simulator's own copies of the users.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self.users: dict[str, SimUser] = {}
        self._keys: dict[str, tuple[SimUser, SimKey]] = {}
        for original in config.users:
            user = original.copy()
            if user.uid in self.users:
                raise ValueError(f"duplicate uid {user.uid!r}")
            self.users[user.uid] = user
            for key in user.keys:
                if key.api_key in self._keys:
                    raise ValueError(f"API key {key.api_key!r} belongs to two users")
                self._keys[key.api_key] = (user, key)
        if config.burst_limit is not None and config.burst_limit < 1:
            raise ValueError("burst_limit must be at least 1")
        if config.region not in REGIONS:
            raise ValueError(f"unknown region {config.region!r} (known: {', '.join(REGIONS)})")
        if config.rate_limit_status not in (200, 429) or config.permission_status not in (
            200,
            401,
        ):
            raise ValueError("rate_limit_status must be 429 or 200, permission_status 200 or 401")
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
        self._faults = config.faults
        self._fault_rng = random.Random(config.faults.seed)
        self._script: deque[tuple[str | None, bool | None]] = deque()
        self._stalls: set[asyncio.Future[None]] = set()
        self._holds: dict[str, deque[float]] = {}  # ccy -> seconds, see hold_next
        self.app = web.Application()
        self.app[SIMULATOR_KEY] = self
        for path in (TIME_PATH, CONFIG_PATH, BALANCE_PATH):
            self.app.router.add_get(path, self._handle)
        self.app.router.add_post(SET_PATH, self._handle)
        self.app.on_shutdown.append(self._on_shutdown)

    # --- inspection and control -------------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._faults = faults
        self._fault_rng = random.Random(faults.seed)  # same seed, same fault sequence

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
        queued = []
        for kind in kinds:
            if kind is not None and kind not in ALL_FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}")
            queued.append((kind, applied))
        self._script.extend(queued)

    def hold_next(self, ccy: str, seconds: float) -> None:
        """Hold the next set request of `ccy` (any user) for `seconds` after it passed auth
        and rate limiting, then apply it whether or not its client still waits, and
        answer if it does: a request OKX applies late, after the client timed out. Its
        record says fault "hold". Holds of one currency queue up; a held request gets no
        other fault."""
        if not seconds >= 0:
            raise ValueError("seconds must be >= 0")
        self._holds.setdefault(ccy, deque()).append(seconds)

    def reset_records(self) -> None:
        """Forget records, the admission log and 50011 counts; windows keep limiting."""
        self.records.clear()
        self._windows.clear_history()

    def release_stalls(self) -> None:
        """Wake every stalled request; each then closes its connection unanswered."""
        for stall in self._stalls:
            if not stall.done():
                stall.set_result(None)

    async def _on_shutdown(self, _app: web.Application) -> None:
        self.release_stalls()

    # --- request flow -----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        await self._network_delay()
        arrival = asyncio.get_running_loop().time()
        path = request.path
        parsed = parse_json(raw) if request.method == "POST" else None
        user: SimUser | None = None
        key: SimKey | None = None
        if path == TIME_PATH:  # public: no auth, limited per IP
            subject, signature_ok, refusal = f"ip:{request.remote}", True, None
        else:
            user, key, signature_ok, refusal = self._authenticate(request, raw)
            subject = user.uid if user is not None else ""
        if refusal is None:
            limit, window = self.limits[path]
            if not self._windows.try_admit(subject, path, arrival, limit, window, self.burst_limit):
                refusal = self._rate_limited()
        uid = user.uid if user is not None else None

        def record(reply: Reply, fault: str | None = None, applied: bool = False) -> Record:
            return Record(
                arrival=arrival,
                method=request.method,
                path=path,
                api_key=request.headers.get("OK-ACCESS-KEY"),
                uid=uid,
                body=parsed if isinstance(parsed, dict) else None,
                status=reply.status,
                code=reply.code,
                signature_ok=signature_ok,
                fault=fault,
                applied=applied,
                replied=asyncio.get_running_loop().time(),
            )

        if refusal is not None:
            return await self._finish(request, record(refusal), refusal)

        fault, applied_first = self._next_fault(path)
        process = partial(self._process, path, request, user, key, parsed, raw)
        reply, applied = NO_REPLY, False
        if fault is None and (hold := self._take_hold(path, parsed)) is not None:
            fault = "hold"
            reply, applied = await self._held(hold, request, process)
        elif fault is None:
            reply, applied = process()
        elif fault in FAULT_REPLIES:
            reply = FAULT_REPLIES[fault]
        elif fault == "busy_50013":
            reply = okx("50013")
        elif fault == "stall":
            if applied_first:
                reply, applied = process()
            released = await self._stall(self._faults.stall_seconds)
            transport = request.transport
            if released or transport is None or transport.is_closing():
                reply = NO_REPLY  # shutting down, or the client gave up: nobody to answer
            elif not applied_first:
                reply, applied = process()
        else:  # drop, timeout_50004
            if applied_first:
                _, applied = process()
            reply = NO_REPLY if fault == "drop" else okx("50004")
        return await self._finish(request, record(reply, fault, applied), reply)

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

    def _take_hold(self, path: str, parsed: object) -> float | None:
        ccy = parsed.get("ccy") if path == SET_PATH and isinstance(parsed, dict) else None
        holds = self._holds.get(ccy) if isinstance(ccy, str) else None
        return holds.popleft() if holds else None

    async def _held(
        self, seconds: float, request: web.Request, process: Callable[[], tuple[Reply, bool]]
    ) -> tuple[Reply, bool]:
        if await self._stall(seconds):
            return NO_REPLY, False  # shutting down: never applied
        reply, applied = process()  # applied late, whoever still waits
        transport = request.transport
        return (NO_REPLY if transport is None or transport.is_closing() else reply), applied

    async def _stall(self, seconds: float) -> bool:
        """Sleep `seconds`; True when woken early by `release_stalls`."""
        stall: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stalls.add(stall)
        try:
            await asyncio.wait([stall], timeout=seconds)
        finally:
            self._stalls.discard(stall)
        return stall.done()

    def _next_fault(self, path: str) -> tuple[str | None, bool]:
        faults, rng = self._faults, self._fault_rng
        if path == SET_PATH and self._script:
            kind, applied = self._script.popleft()
        elif faults.rate > 0 and rng.random() < faults.rate:
            kind, applied = rng.choice(faults.kinds), None
        else:
            return None, False
        if kind not in _AMBIGUOUS:
            return kind, False
        if applied is None:
            applied = rng.random() < faults.applied_before_fault
        return kind, applied

    def _authenticate(
        self, request: web.Request, raw: bytes
    ) -> tuple[SimUser | None, SimKey | None, bool, Reply | None]:
        """(user, key, signature_ok, refusal). Checks in OKX's spirit, cheapest first."""
        headers = request.headers
        api_key = headers.get("OK-ACCESS-KEY", "")
        passphrase = headers.get("OK-ACCESS-PASSPHRASE", "")
        signature = headers.get("OK-ACCESS-SIGN", "")
        timestamp = headers.get("OK-ACCESS-TIMESTAMP", "")
        user, key = self._keys.get(api_key, (None, None))
        signature_ok = False
        if key is not None and signature and timestamp:
            # Over the exact bytes received and the raw path with its query string.
            expected = sign(key.secret_key, timestamp, request.method, request.raw_path, raw)
            signature_ok = hmac.compare_digest(expected.encode(), signature.encode())
        code: str | None = None
        if not api_key:
            code = "50103"
        elif not passphrase:
            code = "50104"
        elif not signature:
            code = "50106"
        elif not timestamp:
            code = "50107"
        elif key is None:
            code = "50111"
        elif key.region != self.region:
            code = "50119"  # the key lives in another region's user database
        elif not hmac.compare_digest(passphrase.encode(), key.passphrase.encode()):
            code = "50105"
        elif (sent_at := _parse_timestamp(timestamp)) is None:
            code = "50112"
        elif abs(sent_at - self.now()) > TIMESTAMP_TOLERANCE:
            code = "50102"
        elif (headers.get("x-simulated-trading") == "1") != key.demo:
            code = "50101"
        elif not signature_ok:
            code = "50113"
        elif request.method == "POST" and "trade" not in key.permissions.split(","):
            code = "50120"
        if code is None:
            return user, key, signature_ok, None
        status = self.permission_status if code in _PERMISSION_CODES else None
        return user, key, signature_ok, okx(code, status=status)

    # --- endpoints --------------------------------------------------------------------

    def _process(
        self,
        path: str,
        request: web.Request,
        user: SimUser | None,
        key: SimKey | None,
        parsed: object,
        raw: bytes,
    ) -> tuple[Reply, bool]:
        """The endpoint's own answer, and whether it changed a value."""
        if path == TIME_PATH:
            return okx("0", data=[{"ts": str(int(self.now() * 1000))}]), False
        assert user is not None and key is not None  # authenticated above
        if path == CONFIG_PATH:
            return okx("0", data=[account_config(user, key)]), False
        if path == BALANCE_PATH:
            ccys = request.query.get("ccy", "")
            return balance(user, ccys, now=self.now(), max_field_name=self.max_field_name), False
        return set_amount(user, parsed, raw, request.content_type)


def _parse_timestamp(text: str) -> float | None:
    if _TIMESTAMP.fullmatch(text) is None:
        return None
    try:
        return parse_timestamp(text)
    except (ValueError, OverflowError):
        return None


SIMULATOR_KEY: Final = web.AppKey("okx_async_simulator", Simulator)


def create_app(config: SimulatorConfig) -> web.Application:
    """A new simulator's application; the Simulator is `app[SIMULATOR_KEY]`."""
    return Simulator(config).app
