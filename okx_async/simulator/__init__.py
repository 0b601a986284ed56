"""A local OKX look-alike for tests, benchmarks and the CLI's demo.

It serves `public/time`, `account/config`, `account/balance` and
`account/set-riskOffset-amt` with OKX's signature checks and error codes, strict
rolling-window rate limits per User ID, latency and switchable faults, and records
every request. It uses okx_async's public API only.
"""

from __future__ import annotations

from ._app import (
    SIMULATOR_KEY,
    TIMESTAMP_TOLERANCE,
    Simulator,
    create_app,
)
from ._endpoints import RATE_LIMIT_200_TEXT, RATE_LIMIT_429_TEXT
from ._server import SimulatorServer, serve
from ._state import (
    ALL_FAULT_KINDS,
    BALANCE_PATH,
    CONFIG_PATH,
    DEFAULT_FAULT_KINDS,
    DEFAULT_LIMITS,
    DEFAULT_MARGIN_CCYS,
    REGIONS,
    SET_PATH,
    TIME_PATH,
    Faults,
    Record,
    SimKey,
    SimulatorConfig,
    SimUser,
    demo_config,
)

__all__ = [
    "ALL_FAULT_KINDS",
    "BALANCE_PATH",
    "CONFIG_PATH",
    "DEFAULT_FAULT_KINDS",
    "DEFAULT_LIMITS",
    "DEFAULT_MARGIN_CCYS",
    "RATE_LIMIT_200_TEXT",
    "RATE_LIMIT_429_TEXT",
    "REGIONS",
    "SET_PATH",
    "SIMULATOR_KEY",
    "TIMESTAMP_TOLERANCE",
    "TIME_PATH",
    "Faults",
    "Record",
    "SimKey",
    "SimUser",
    "Simulator",
    "SimulatorConfig",
    "SimulatorServer",
    "create_app",
    "demo_config",
    "serve",
]
