"""The argument parser and one coroutine per command. Each returns the exit code."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import okx_async
from okx_async import InvalidInputError, RiskOffsetAmount, validate_amount, validate_ccy

from ._demo import cmd_demo, cmd_simulate
from ._execute import execute
from ._limiter import open_limiter
from ._plan import duplicate_warnings, offline_account, read_plan, validate_plan
from ._profiles import ConfigError, Profile, ProfileStore, default_config_path, load_profiles
from ._progress import Console
from ._report import (
    dry_run_json,
    dry_run_text,
    may_still_apply,
    may_still_apply_note,
    plain,
    report_json,
    summary_text,
)

__all__ = ["build_parser"]

Command = Callable[[argparse.Namespace, Console], Awaitable[int]]

_ACCT_LEVELS = {"1": "spot", "2": "futures", "3": "multi-currency margin", "4": "portfolio margin"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="okx-async",
        description="Set OKX spot risk offset amounts (POST /api/v5/account/set-riskOffset-amt) "
        "within OKX's per-user rate limit.",
        epilog="Exit codes: 0 ok, 1 a call or row failed, 2 bad input or config, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=okx_async.__version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="profiles file (default: $XDG_CONFIG_HOME/okx-async/config.toml, "
        "else ~/.config/okx-async/config.toml)",
    )
    config.add_argument(
        "--limiter-url",
        metavar="URL",
        help="rate-limit store shared with other runs: sqlite:///PATH, redis://..., or "
        "memory:// (this run only). Default: $OKX_ASYNC_LIMITER_URL, else limiter_url in "
        "the config file, else sqlite in $XDG_STATE_HOME/okx-async/limits.db "
        "(~/.local/state/okx-async/limits.db)",
    )
    config.add_argument(
        "--proxy",
        metavar="URL",
        help="send through this proxy: http://, https:// or socks5://[user:pass@]host:port "
        "(overrides the profiles' proxy)",
    )
    account = argparse.ArgumentParser(add_help=False, parents=[config])
    account.add_argument(
        "--profile",
        metavar="NAME",
        help="credentials to use (default: OKX_API_KEY/OKX_SECRET_KEY/OKX_PASSPHRASE, "
        "else the profile 'default')",
    )
    account.add_argument("--timeout", type=_seconds, metavar="S", help="give up after S seconds")
    account.add_argument("--json", action="store_true", help="print JSON instead of text")

    def add(name: str, func: Command, text: str, parents: list[Any]) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text, parents=parents)
        sub.set_defaults(func=func)
        return sub

    sub = add("set", cmd_set, "set the risk offset amount of one currency", [account])
    sub.add_argument("ccy", metavar="CCY", help="currency, e.g. BTC")
    sub.add_argument("amount", metavar="AMOUNT", help="amount, e.g. 0.5")

    sub = add("get", cmd_get, "show risk offset amounts (clSpotInUseAmt and more)", [account])
    sub.add_argument("ccys", nargs="+", metavar="CCY", help="one or more currencies")

    add("config", cmd_config, "show the account configuration (uid, mode, permissions)", [account])

    sub = add("apply", cmd_apply, "apply a plan file of profile,ccy,amount rows", [config])
    sub.add_argument("file", metavar="FILE", help="plan: .csv (header profile,ccy,amount), "
                     ".json (list of {profile, ccy, amount}), or - for stdin")  # fmt: skip
    sub.add_argument("--dry-run", action="store_true", help="validate and show the plan only")
    sub.add_argument("--verify", action="store_true", help="read the values back afterwards")
    sub.add_argument("--json", metavar="REPORT_FILE", help="write a JSON report (- for stdout)")
    sub.add_argument(
        "--timeout",
        type=_seconds,
        metavar="S",
        help="give up on each step (account lookups, sending, read-back) after S seconds; "
        "rows not applied by then fail",
    )
    sub.add_argument("-q", "--quiet", action="store_true", help="no progress display")

    sub = add("simulate", cmd_simulate, "run a local OKX simulator until Ctrl-C", [])
    sub.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    sub.add_argument("--port", type=int, default=8080, help="port (8080; 0 picks a free one)")

    sub = add("demo", cmd_demo, "apply a generated plan to an in-process simulator", [])
    sub.add_argument("--accounts", type=_positive, default=3, metavar="N", help="accounts (3)")
    sub.add_argument("--ccys", type=_positive, default=25, metavar="M", help="currencies (25)")
    sub.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    sub.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


# -- single calls -------------------------------------------------------------------------


def _store(args: argparse.Namespace, console: Console) -> ProfileStore:
    store = load_profiles(args.config, env=os.environ, warn=console.err)
    store.proxy = getattr(args, "proxy", None)
    console.hide(store.all_secrets())
    if args.limiter is None:  # once per run: one store for every client
        try:
            args.limiter = open_limiter(args.limiter_url, os.environ, store.limiter_url)
        except InvalidInputError as exc:
            # A problem of every profile: told once, where the first profile is used.
            store.limiter_error = str(exc)
    store.limiter = args.limiter
    return store


def _profile(args: argparse.Namespace, console: Console) -> Profile:
    store = _store(args, console)
    if args.profile is None and "default" not in store:
        raise ConfigError(
            "no credentials: export OKX_API_KEY, OKX_SECRET_KEY and OKX_PASSPHRASE "
            "(optionally OKX_BASE_URL, OKX_DEMO), or pass --profile NAME with profiles in "
            f"{args.config or default_config_path(os.environ)}"
        )
    return store.resolve(args.profile or "default")


async def cmd_set(args: argparse.Namespace, console: Console) -> int:
    ccy = validate_ccy(args.ccy)  # before anything else: bad input exits 2
    text, _ = validate_amount(args.amount)
    profile = _profile(args, console)
    async with profile.client() as client:
        try:
            result = await client.set_risk_offset_amount(ccy, text, timeout=args.timeout)
        except okx_async.OKXError as exc:
            if may_still_apply(exc, sent=client.stats().sent > 0):
                args.note = may_still_apply_note(ccy)  # main() adds it to the error line
            raise
    if args.json:
        console.out_json(
            {
                "profile": profile.name,
                "ccy": result.ccy,
                "requested": plain(result.requested),
                "applied": plain(result.amount),
                "superseded": result.superseded,
            },
        )
    else:
        console.out(f"{result.ccy}: risk offset amount set to {plain(result.amount)}")
    return 0


async def cmd_get(args: argparse.Namespace, console: Console) -> int:
    ccys = list(dict.fromkeys(validate_ccy(c) for c in args.ccys))
    profile = _profile(args, console)
    async with profile.client() as client:
        amounts = await client.get_risk_offset_amounts(ccys, timeout=args.timeout)
    absent = [c for c in ccys if c not in amounts]
    if absent:  # OKX leaves out what the account holds none of, and what it does not know
        console.err(
            f"{', '.join(absent)}: not returned by OKX: an unknown currency, or one this "
            "account holds none of"
        )
    if args.json:
        rows = [_amount_json(ccy, amounts.get(ccy)) for ccy in ccys]
        console.out_json({"profile": profile.name, "amounts": rows})
    else:
        for line in _amount_table(ccys, amounts):
            console.out(line)
    return 1 if absent else 0


def _amount_json(ccy: str, a: RiskOffsetAmount | None) -> dict[str, Any]:
    return {
        "ccy": ccy,
        "found": a is not None,
        "user_defined": plain(a.user_defined) if a else None,
        "in_use": plain(a.in_use) if a else None,
        "maximum": plain(a.maximum) if a else None,
    }


def _amount_table(ccys: list[str], amounts: Mapping[str, RiskOffsetAmount]) -> list[str]:
    table = [["CCY", "USER-DEFINED (clSpotInUseAmt)", "IN USE", "MAXIMUM"]]
    for ccy in ccys:
        a = amounts.get(ccy)
        if a is None:
            table.append([ccy, "not returned by OKX", "", ""])
        else:
            values = (a.user_defined, a.in_use, a.maximum)
            table.append([ccy, *("-" if v is None else plain(v) for v in values)])
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]


async def cmd_config(args: argparse.Namespace, console: Console) -> int:
    profile = _profile(args, console)
    async with profile.client() as client:
        config = await client.get_account_config(timeout=args.timeout)
    mode = _ACCT_LEVELS.get(config.acct_lv, "unknown")
    if args.json:
        console.out_json(
            {
                "profile": profile.name,
                "uid": config.uid,
                "main_uid": config.main_uid,
                "is_sub_account": config.is_sub_account,
                "acct_lv": config.acct_lv,
                "account_mode": mode,
                "is_portfolio_margin": config.is_portfolio_margin,
                "permissions": sorted(config.permissions),
            },
        )
        return 0
    kind = f"sub-account of {config.main_uid}" if config.is_sub_account else "main account"
    console.out(f"uid            {config.uid} ({kind})")
    console.out(f"account mode   {config.acct_lv} ({mode})")
    console.out(f"permissions    {', '.join(sorted(config.permissions)) or '-'}")
    if not config.is_portfolio_margin:
        console.out("note: set-riskOffset-amt works only in portfolio margin mode (acctLv 4)")
    if not config.can_trade:
        console.out("note: this key lacks the trade permission set-riskOffset-amt needs")
    return 0


# -- apply --------------------------------------------------------------------------------


async def cmd_apply(args: argparse.Namespace, console: Console) -> int:
    if args.json and args.json != "-":
        _check_writable(Path(args.json))  # a report that cannot be written: send nothing
    store = _store(args, console)
    plan = validate_plan(read_plan(args.file), store)
    # A run tells a currency given two values once it knows the accounts (`execute`).
    later = set() if args.dry_run else {w for _, w in duplicate_warnings(plan, offline_account)}
    for warning in plan.warnings:
        if warning not in later:
            console.err(warning)
    if plan.errors:
        console.err(
            f"{len(plan.errors)} error(s) in {plan.source} ({plan.numbering}); nothing was sent:"
        )
        for _, error in plan.errors:
            console.err(f"  {error}")
        return 2
    if args.dry_run:
        _emit(console, args.json, dry_run_text(plan), dry_run_json(plan))
        return 0
    report = await execute(
        plan, console, timeout=args.timeout, verify=args.verify, progress=not args.quiet
    )
    _emit(console, args.json, summary_text(report), report_json(report))
    if report.interrupted:
        console.err("interrupted")
        return 130
    return 0 if report.ok else 1


def _check_writable(path: Path) -> None:
    """ConfigError unless a report can be written to `path` (checked before sending, so a
    typo in the path costs nothing)."""
    folder = path.parent
    if path.is_dir():
        problem = "it is a directory"
    elif not folder.is_dir():
        problem = f"the directory {folder} does not exist"
    elif path.exists() and not os.access(path, os.W_OK):
        problem = "the file is not writable"
    elif not path.exists() and not os.access(folder, os.W_OK):
        problem = f"the directory {folder} is not writable"
    else:
        return
    raise ConfigError(f"cannot write the report to {path}: {problem}; nothing was sent")


def _emit(console: Console, json_path: str | None, text: str, data: dict[str, Any]) -> None:
    """The text summary on stdout, or on stderr when the JSON report takes stdout."""
    if json_path == "-":
        console.err(text)
        console.out_json(data)
        return
    console.out(text)
    if json_path:
        body = console.redact(json.dumps(data, indent=2, default=str))
        Path(json_path).write_text(body + "\n", encoding="utf-8")
        console.err(f"report written to {json_path}")
