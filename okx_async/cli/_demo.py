"""`simulate` and `demo`: the CLI against a local OKX simulator (okx_async.simulator).

`simulate` serves one until Ctrl-C and prints credentials that work with it; `demo`
applies a generated plan to an in-process one and compares the pace with the limit.
"""

from __future__ import annotations

import argparse
import errno
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from okx_async import ENDPOINT_LIMITS, SET_RISK_OFFSET_PATH

from ._execute import Report, execute
from ._plan import Plan, parse_plan, validate_plan
from ._profiles import ConfigError, Profile, ProfileStore
from ._progress import Console
from ._report import report_json, summary_text

if TYPE_CHECKING:  # the simulator (aiohttp.web) is imported only by the commands that run it
    from okx_async.simulator import Simulator, SimulatorConfig, SimulatorServer

__all__ = ["cmd_demo", "cmd_simulate"]

# Real currency codes for the demo plan; beyond these it makes up DEMO31, DEMO32...
_DEMO_CCYS = [
    "BTC", "ETH", "USDT", "USDC", "SOL", "XRP", "DOGE", "ADA", "TRX", "LTC",
    "DOT", "LINK", "AVAX", "BCH", "ETC", "FIL", "ATOM", "UNI", "NEAR", "APT",
    "OP", "ARB", "SUI", "TON", "XLM", "HBAR", "ICP", "AAVE", "SHIB", "PEPE",
]  # fmt: skip


async def cmd_simulate(args: argparse.Namespace, console: Console) -> int:
    from okx_async.simulator import demo_config, serve

    if not 0 <= args.port <= 65535:  # else the socket layer raises OverflowError
        raise ConfigError(f"--port {args.port} is not a TCP port: use 0 to 65535 (0: any free)")
    config = demo_config()

    def on_ready(server: SimulatorServer) -> None:
        url = server.base_url
        console.out(f"OKX simulator listening on {url} (Ctrl-C to stop)\n")
        console.out("Demo credentials (fake; they work only with this simulator):")
        first = None
        for user in config.users:
            kind = "main account" if user.main_uid in (None, user.uid) else "sub-account"
            console.out(f"  user {user.uid} ({kind}):")
            for i, key in enumerate(user.keys, start=1):
                first = first or key
                console.out(
                    f"    profile {_demo_profile(user.uid, i)}: api_key={key.api_key} "
                    f"secret_key={key.secret_key} passphrase={key.passphrase}"
                )
        if first is not None:
            console.out("\nPoint the library (OKXClient.from_env()) or the CLI at it:")
            console.out(f"  export OKX_BASE_URL={url}")
            console.out(f"  export OKX_API_KEY={first.api_key}")
            console.out(f"  export OKX_SECRET_KEY={first.secret_key}")
            console.out(f"  export OKX_PASSPHRASE={first.passphrase}")
            console.out(f"  export OKX_DEMO={int(first.demo)}")
            console.out("  okx-async config && okx-async set BTC 0.5 && okx-async get BTC")
        console.out("\nFor `okx-async apply --config FILE`, profiles in TOML (chmod 600 FILE):")
        for user in config.users:
            for i, key in enumerate(user.keys, start=1):
                console.out(f"\n  [profiles.{_demo_profile(user.uid, i)}]")
                console.out(
                    f'  api_key = "{key.api_key}"\n  secret_key = "{key.secret_key}"\n'
                    f'  passphrase = "{key.passphrase}"\n  base_url = "{url}"\n'
                    f"  demo = {str(key.demo).lower()}"
                )

    try:
        await serve(config, host=args.host, port=args.port, on_ready=on_ready)  # until Ctrl-C
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise ConfigError(
            f"port {args.port} on {args.host} is in use: pick another --port, or --port 0 "
            "for any free one (the chosen URL is printed)"
        ) from None
    return 0


def _demo_profile(uid: str, key_number: int) -> str:
    return f"u{uid}-k{key_number}"


async def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from okx_async.simulator import Simulator, SimulatorServer, demo_config

    ccys = _DEMO_CCYS[: args.ccys] + [f"DEMO{i}" for i in range(len(_DEMO_CCYS) + 1, args.ccys + 1)]
    config = _allow_margin_ccys(demo_config(users=args.accounts, keys_per_user=2), ccys)
    simulator = Simulator(config)
    async with SimulatorServer(simulator) as server:
        store, users = _demo_profiles(config, server.base_url)
        plan = _demo_plan(users, ccys, store)
        if not args.json:
            console.out(
                f"demo: {len(users)} simulated accounts (uids {', '.join(users)}), 2 API keys "
                f"each used by different profiles; plan: {len(plan.rows)} rows "
                f"({len(ccys)} currencies per account)\n"
            )
        report = await execute(plan, console, verify=True, progress=not args.quiet)
        stats = _demo_stats(report, simulator)
    if args.json:
        console.out_json({**report_json(report), "demo": stats})
    else:
        console.out(summary_text(report))
        console.out("")
        for line in _demo_lines(stats):
            console.out(line)
    return 0 if report.ok and stats["rate_limited"] == 0 else 1


def _demo_profiles(
    config: SimulatorConfig, base_url: str
) -> tuple[ProfileStore, dict[str, list[str]]]:
    """A profile per demo key, and each uid's profile names."""
    store = ProfileStore()
    users: dict[str, list[str]] = {}  # uid -> its profiles
    for user in config.users:
        names = users[user.uid] = []
        for i, key in enumerate(user.keys, start=1):
            name = _demo_profile(user.uid, i)
            names.append(name)
            store.add(
                Profile(
                    name,
                    key.api_key,
                    key.secret_key,
                    key.passphrase,
                    demo=key.demo,
                    base_url=base_url,
                    source="the demo",
                )
            )
    return store, users


def _demo_plan(users: dict[str, list[str]], ccys: list[str], store: ProfileStore) -> Plan:
    # Currency-major rows: every account is busy at once; its keys take turns.
    lines = ["profile,ccy,amount"]
    for c, ccy in enumerate(ccys, start=1):
        for a, names in enumerate(users.values(), start=1):
            lines.append(f"{names[c % len(names)]},{ccy},{Decimal(a * c) / 4}")
    plan = validate_plan(parse_plan("\n".join(lines) + "\n", "demo-plan.csv", "csv"), store)
    if plan.errors:  # pragma: no cover - the generated plan is valid
        raise ConfigError("; ".join(e for _, e in plan.errors))
    return plan


def _allow_margin_ccys(config: SimulatorConfig, ccys: list[str]) -> SimulatorConfig:
    """The demo users must accept the plan's currencies as margin currencies."""
    users = [replace(u, margin_ccys=frozenset(u.margin_ccys) | set(ccys)) for u in config.users]
    return replace(config, users=users)


def _demo_stats(report: Report, simulator: Simulator) -> dict[str, Any]:
    limit = ENDPOINT_LIMITS[SET_RISK_OFFSET_PATH]
    per_account: list[dict[str, Any]] = []
    for account in report.accounts.values():
        uid, sent = account.key.split()[0], account.sent
        # In no `window` may more than `limit` requests land: the fastest schedule sends
        # `limit` at once, then the next `limit` one window later, and so on.
        fastest = limit.window * ((sent - 1) // limit.limit) if sent else 0.0
        per_account.append(
            {
                "account": uid,
                "calls": sent,
                "calls_per_s": round(sent / report.elapsed, 2) if report.elapsed else None,
                "fastest_possible_s": fastest,
                "max_in_window": simulator.max_in_window(uid, SET_RISK_OFFSET_PATH),
            }
        )
    calls = sum(a["calls"] for a in per_account)
    return {
        "rows": len(report.outcomes),
        "calls": calls,
        "elapsed_s": round(report.elapsed, 3),
        "calls_per_s": round(calls / report.elapsed, 2) if report.elapsed else None,
        "limit": {"requests": limit.limit, "window_s": limit.window, "per": limit.scope},
        "rate_limited": simulator.rate_limited_count(),
        "accounts": per_account,
    }


def _demo_lines(stats: dict[str, Any]) -> list[str]:
    """What the summary above does not say: the pace against the limit. Its figures are
    the summary's own (the same calls, the same seconds), never a second count."""
    limit = stats["limit"]
    lines = [
        f"limit: {limit['requests']} per {limit['window_s']:g} s per {limit['per']} "
        f"(sustained {limit['requests'] / limit['window_s']:g}/s each)"
    ]
    for a in stats["accounts"]:
        fastest = a["fastest_possible_s"]
        best = f"; the limit allows them in {fastest:g} s at best" if fastest else ""
        share = f" ({100 * fastest / stats['elapsed_s']:.0f}% of that pace)" if fastest else ""
        lines.append(
            f"  account {a['account']}: {a['calls']} calls, {a['calls_per_s']}/s{best}{share}; "
            f"busiest {limit['window_s']:g}-s window at the simulator: {a['max_in_window']} "
            f"of {limit['requests']}"
        )
    lines.append(f"rate-limited (50011) answers from the simulator: {stats['rate_limited']}")
    return lines
