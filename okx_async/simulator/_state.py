"""The simulator's data: configuration, users and keys, rolling windows, request records."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from okx_async import busiest_window

# The simulator's own copies of OKX's paths: it depends on okx_async's public API only.
TIME_PATH: Final = "/api/v5/public/time"
CONFIG_PATH: Final = "/api/v5/account/config"
BALANCE_PATH: Final = "/api/v5/account/balance"
SET_PATH: Final = "/api/v5/account/set-riskOffset-amt"

# OKX's limits: path -> (requests, window seconds). public/time is per IP.
DEFAULT_LIMITS: Final[Mapping[str, tuple[int, float]]] = {
    TIME_PATH: (10, 2.0),
    CONFIG_PATH: (5, 2.0),
    BALANCE_PATH: (10, 2.0),
    SET_PATH: (10, 2.0),
}

# What random faults draw from unless `Faults.kinds` says otherwise.
DEFAULT_FAULT_KINDS: Final = (
    "http_500", "busy_50013", "html_502", "drop", "stall", "timeout_50004"
)  # fmt: skip
# Every fault kind: OKX's own JSON answers for an overloaded or failing exchange
# (50001 as HTTP 503, 50026 as 500), and 50011 in its HTTP 200 form.
ALL_FAULT_KINDS: Final = (
    *DEFAULT_FAULT_KINDS,
    "unavailable_50001",
    "error_50026",
    "rate_limit_200",
)
# OKX's regions; a key works only on the host of the region it was created in (else 50119).
REGIONS: Final = ("global", "eea", "us")

DEFAULT_MARGIN_CCYS: Final = frozenset(
    {"BTC", "ETH", "USDT", "USDC", "SOL", "XRP", "DOGE", "LTC", "ADA", "DOT", "TRX", "BCH"}
    | {"LINK", "AVAX", "TON", "OKB", "DAI", "FIL", "ETC", "ATOM", "UNI", "NEAR", "APT", "OP"}
)


@dataclass(frozen=True, slots=True)
class SimKey:
    """One API key. `permissions` is OKX's `perm` text, e.g. "read_only,trade"; `region`
    (one of REGIONS) is where it was created: on another region's host it gets 50119."""

    api_key: str
    secret_key: str
    passphrase: str
    demo: bool = False
    permissions: str = "read_only,trade"
    region: str = "global"

    def __post_init__(self) -> None:
        if self.region not in REGIONS:
            raise ValueError(f"unknown region {self.region!r} (known: {', '.join(REGIONS)})")

    def __repr__(self) -> str:
        return (
            f"SimKey(api_key={self.api_key!r}, demo={self.demo}, perm={self.permissions!r}, "
            f"region={self.region!r})"
        )


@dataclass(slots=True)
class SimUser:
    """One OKX User ID; all its keys share its rate limits. `main_uid` set: a sub-account.

    `min_values` is an optional per-currency floor for the set endpoint (else 59648).
    `equity` is the equity per currency; as OKX does, `account/balance` leaves out a
    currency whose equity is absent or 0. None (the default): the user holds every
    currency of `margin_ccys`.
    """

    uid: str
    keys: list[SimKey]
    main_uid: str | None = None
    acct_lv: str = "4"
    risk_offset_mode: bool = True
    margin_ccys: frozenset[str] = DEFAULT_MARGIN_CCYS
    values: dict[str, str] = field(default_factory=dict)
    spot_in_use: dict[str, str] = field(default_factory=dict)
    max_spot_in_use: dict[str, str] = field(default_factory=dict)
    min_values: dict[str, str] = field(default_factory=dict)
    equity: dict[str, str] | None = None

    def copy(self) -> SimUser:
        """A copy whose dicts are its own, so a simulator never changes its config."""
        return replace(
            self,
            keys=list(self.keys),
            values=dict(self.values),
            spot_in_use=dict(self.spot_in_use),
            max_spot_in_use=dict(self.max_spot_in_use),
            min_values=dict(self.min_values),
            equity=None if self.equity is None else dict(self.equity),
        )

    def currencies(self) -> list[str]:
        return sorted({*self.values, *self.spot_in_use, *self.max_spot_in_use})

    def holds(self, ccy: str) -> bool:
        """Whether `account/balance` returns `ccy`: its equity is not 0."""
        if self.equity is None:
            return ccy in self.margin_ccys
        amount = self.equity.get(ccy, "0")
        try:
            return float(amount) != 0
        except ValueError:
            return False


@dataclass(frozen=True, slots=True)
class Faults:
    """Random faults: each request that passed auth and rate limiting fails with `rate`.

    `applied_before_fault` is the chance that a set hit by drop/stall/timeout_50004 was
    applied before the fault (the ambiguous outcomes a client cannot tell apart).
    """

    rate: float = 0.0
    kinds: tuple[str, ...] = DEFAULT_FAULT_KINDS
    stall_seconds: float = 30.0
    applied_before_fault: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(ALL_FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        if not 0.0 <= self.rate <= 1.0 or not 0.0 <= self.applied_before_fault <= 1.0:
            raise ValueError("rate and applied_before_fault must be within [0, 1]")
        if self.rate > 0 and not self.kinds:
            raise ValueError("a positive fault rate needs at least one kind")


@dataclass(slots=True)
class SimulatorConfig:
    """Everything a simulator starts from. `limits` entries override OKX's defaults.

    Where OKX's answers differ between sources, a switch picks one:
    `rate_limit_status` is the HTTP status of a 50011 refusal (429, or 200 with OKX's
    "Rate limit reached" text); `permission_status` that of 50119 and 50120 (200, OKX's
    own statement, or 401 as other clients report). `region` (one of REGIONS) is whose host
    this simulator plays.
    """

    users: list[SimUser]
    limits: dict[str, tuple[int, float]] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    burst_limit: int | None = None
    latency: tuple[float, float] = (0.0, 0.0)
    clock_offset: float = 0.0
    faults: Faults = Faults()
    seed: int = 0
    max_field_name: str = "maxSpotInUse"
    region: str = "global"
    rate_limit_status: int = 429
    permission_status: int = 200


@dataclass(frozen=True, slots=True)
class Record:
    """One request as the simulator saw it.

    `arrival` is the loop time it was counted (after the inbound latency), `replied` the
    loop time its reply was ready (after any hold or stall; before the outbound latency).
    `status` is 0 when no response was written (drop, or a stall cut short by the client
    or shutdown).
    """

    arrival: float
    method: str
    path: str
    api_key: str | None
    uid: str | None
    body: dict[str, Any] | None
    status: int
    code: str | None
    signature_ok: bool
    fault: str | None
    applied: bool
    replied: float = field(default=0.0, compare=False)


class RollingWindows:
    """Strict rolling windows per (subject, path), plus optional GCRA burst control.

    A request is admitted when fewer than `limit` admitted requests arrived in
    (now - window, now]; refused ones leave no trace. Every admission is also logged
    for `max_in_window`.
    """

    __slots__ = ("_log", "_recent", "_refused", "_tat")

    def __init__(self) -> None:
        self._recent: dict[tuple[str, str], deque[float]] = {}
        self._tat: dict[tuple[str, str], float] = {}
        self._log: dict[tuple[str, str], list[float]] = {}
        self._refused: dict[str, int] = {}

    def try_admit(
        self, subject: str, path: str, now: float, limit: int, window: float, burst: int | None
    ) -> bool:
        key = (subject, path)
        recent = self._recent.setdefault(key, deque())
        while recent and recent[0] <= now - window:
            recent.popleft()
        admitted = len(recent) < limit
        if admitted and burst is not None:
            # GCRA: theoretical arrival time may run ahead of now by at most the tolerance.
            interval = window / limit
            tat = max(self._tat.get(key, now), now)
            admitted = tat - now <= (burst - 1) * interval + 1e-9
            if admitted:
                self._tat[key] = tat + interval
        if admitted:
            recent.append(now)
            self._log.setdefault(key, []).append(now)
        else:
            self._refused[subject] = self._refused.get(subject, 0) + 1
        return admitted

    def refused(self, subject: str | None = None) -> int:
        if subject is None:
            return sum(self._refused.values())
        return self._refused.get(subject, 0)

    def max_in_window(self, subject: str, path: str, window: float) -> int:
        """The most admissions inside any half-open window (t - window, t]."""
        return busiest_window(self._log.get((subject, path), []), window)

    def clear_history(self) -> None:
        """Forget the log and the refusal counts; live windows keep limiting."""
        self._log.clear()
        self._refused.clear()


def demo_config(*, users: int = 3, keys_per_user: int = 2) -> SimulatorConfig:
    """Deterministic demo credentials: user i has keys demo-key-i-j / demo-secret-i-j
    with passphrase "demo-pass" (live keys, no demo header). User 1 (uid 100001) is the
    main account, the others its sub-accounts."""
    if users < 1 or keys_per_user < 1:
        raise ValueError("users and keys_per_user must be at least 1")
    main_uid = "100001"
    result = []
    for i in range(1, users + 1):
        keys = [
            SimKey(f"demo-key-{i}-{j}", f"demo-secret-{i}-{j}", "demo-pass")
            for j in range(1, keys_per_user + 1)
        ]
        result.append(
            SimUser(
                uid=str(100_000 + i),
                keys=keys,
                main_uid=None if i == 1 else main_uid,
                values={"BTC": "0.5", "ETH": "4", "USDT": "1000"},
                spot_in_use={"BTC": "0.45", "ETH": "3.9", "USDT": "950", "SOL": "0"},
                max_spot_in_use={"BTC": "2", "ETH": "30", "USDT": "50000", "SOL": "100"},
            )
        )
    return SimulatorConfig(users=result)
