"""`apply`: load a plan, validate it, send every row concurrently, summarise, verify.

The CLI adds no rate limiting, ordering or retries: one OKXClient per profile and one
`asyncio.gather` over all rows. The library paces each user, keeps the last value asked
for per currency, and retries. Learning each profile's User ID before the rows go out
makes the submission order the plan's order, across profiles of one user too.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, overload

from okx_async import (
    ENDPOINT_LIMITS,
    APIError,
    ClientEvent,
    InvalidInputError,
    OKXClient,
    OKXError,
    validate_amount,
    validate_ccy,
)

from ._profiles import ConfigError, Profile, ProfileStore, cli_text
from ._progress import Console, Progress

__all__ = [
    "Plan",
    "PlanError",
    "Report",
    "describe",
    "dry_run_json",
    "dry_run_text",
    "execute",
    "parse_plan",
    "plain",
    "read_plan",
    "report_json",
    "summary_text",
    "validate_plan",
]

SET_PATH = "/api/v5/account/set-riskOffset-amt"
COLUMNS = ("profile", "ccy", "amount")
# not_sent: no answer before Ctrl-C (a row in flight at that moment may still apply).
Status = Literal["applied", "superseded", "failed", "not_sent"]


class PlanError(Exception):
    """The plan file as a whole is unusable (unreadable, not CSV/JSON, wrong shape)."""


# -- loading ------------------------------------------------------------------------------


@dataclass
class Row:
    """One valid plan row. `line`: CSV file line number, or 1-based JSON item index."""

    line: int
    profile: str
    ccy: str
    text: str  # the amount as it will be sent
    amount: Decimal


@dataclass
class Plan:
    source: str
    kind: Literal["csv", "json"]
    records: list[tuple[int, dict[str, object]]] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    profiles: dict[str, Profile] = field(default_factory=dict)
    errors: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def where(self, line: int) -> str:
        unit = "line" if self.kind == "csv" else "item"
        return f"{self.source} {unit} {line}"

    def error(self, line: int, message: str) -> None:
        self.errors.append((line, f"{self.where(line)}: {message}"))

    @property
    def numbering(self) -> str:
        return "CSV file line numbers" if self.kind == "csv" else "JSON items, numbered from 1"


def read_plan(path: str) -> Plan:
    """Read FILE (`-` for stdin); CSV or JSON by extension, else by content."""
    try:
        if path == "-":
            text, source = sys.stdin.read(), "<stdin>"
        else:
            text, source = Path(path).read_text(encoding="utf-8-sig"), path
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise PlanError(f"cannot read plan {path}: {reason}") from None
    suffix = Path(path).suffix.lower()
    kind: Literal["csv", "json"] | None = None
    if suffix == ".csv":
        kind = "csv"
    elif suffix == ".json":
        kind = "json"
    return parse_plan(text, source, kind)


def parse_plan(text: str, source: str, kind: Literal["csv", "json"] | None = None) -> Plan:
    if kind is None:
        kind = "json" if text.lstrip().startswith(("[", "{")) else "csv"
    plan = Plan(source=source, kind=kind)
    if kind == "json":
        _parse_json(plan, text)
    else:
        _parse_csv(plan, text)
    return plan


def _parse_csv(plan: Plan, text: str) -> None:
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    for record in reader:
        if not any(cell.strip() for cell in record) or record[0].lstrip().startswith("#"):
            continue  # blank and comment lines
        if header is None:
            header = [cell.strip().lower() for cell in record]
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                plan.error(
                    reader.line_num,
                    f"missing column(s) {', '.join(missing)}: the header must name "
                    f"{','.join(COLUMNS)} (found {','.join(header)})",
                )
                return
            continue
        if len(record) != len(header):
            plan.error(reader.line_num, f"expected {len(header)} fields, found {len(record)}")
            continue
        plan.records.append(
            (reader.line_num, dict(zip(header, (c.strip() for c in record), strict=True)))
        )
    if header is None:
        raise PlanError(f"{plan.source} is empty: expected a header {','.join(COLUMNS)}")


def _parse_json(plan: Plan, text: str) -> None:
    try:
        # 0.1 stays exactly 0.1; NaN and Infinity become Decimals the checks refuse.
        data = json.loads(text, parse_float=Decimal, parse_constant=Decimal)
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"{plan.source} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(data, list):
        raise PlanError(f"{plan.source}: expected a JSON list of {{profile, ccy, amount}} objects")
    for index, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            plan.error(index, "must be an object with profile, ccy and amount")
            continue
        missing = [c for c in COLUMNS if c not in item]
        if missing:
            plan.error(index, f"missing key(s) {', '.join(missing)}")
            continue
        plan.records.append((index, item))


# -- validation ---------------------------------------------------------------------------


def validate_plan(plan: Plan, store: ProfileStore) -> Plan:
    """Check every record and its profile; fill `rows`, `profiles`, `errors`, `warnings`."""
    bad_profiles: dict[str, str] = {}
    reported: set[str] = set()  # a profile's problem is told once, not once per row
    for line, values in plan.records:
        problems: list[str] = []
        name = values["profile"]
        wrong = _json_type_problems(values) if plan.kind == "json" else {}
        if "profile" in wrong or not isinstance(name, str) or not name:
            problems.append(wrong.get("profile", "profile must be a non-empty string"))
        elif name not in plan.profiles and name not in bad_profiles:
            try:
                profile = store.resolve(name)
                profile.client()  # refuses a bad base_url or user_id now, not later
                plan.profiles[name] = profile
            except (ConfigError, InvalidInputError) as exc:
                bad_profiles[name] = cli_text(exc)
        bad_profile = isinstance(name, str) and name in bad_profiles
        if bad_profile and bad_profiles[str(name)] not in reported:
            problems.append(bad_profiles[str(name)])
            reported.add(bad_profiles[str(name)])
        try:
            ccy = validate_ccy(values["ccy"]) if "ccy" not in wrong else ""
        except InvalidInputError as exc:
            problems.append(f"bad ccy: {exc}")
        try:
            text, amount = (
                validate_amount(values["amount"]) if "amount" not in wrong else ("", Decimal(0))
            )
        except InvalidInputError as exc:
            problems.append(f"bad amount: {exc}")
        problems += [wrong[c] for c in ("ccy", "amount") if c in wrong]
        if bad_profile and not problems:
            continue  # its profile's problem is reported at the profile's first row
        if problems:
            for problem in problems:
                plan.error(line, problem)
        else:
            plan.rows.append(Row(line, str(name), ccy, text, amount))
    plan.errors.sort(key=lambda e: e[0])
    if not plan.records and not plan.errors:
        plan.errors.append((0, f"{plan.source}: the plan has no rows"))
    plan.warnings = [w for _, w in duplicate_warnings(plan, offline_account)]
    return plan


def _json_type_problems(values: dict[str, object]) -> dict[str, str]:
    """Per column, a value of the wrong JSON type, described in JSON's own words."""
    wanted = {"profile": "a string", "ccy": "a string", "amount": "a string or a number"}
    problems = {}
    for column, kinds in wanted.items():
        value = values[column]
        ok = isinstance(value, str) or (
            column == "amount" and isinstance(value, (int, Decimal)) and not isinstance(value, bool)
        )
        if not ok:
            problems[column] = f"{column} must be {kinds} in JSON, not {_json_type(value)}"
    return problems


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a number" if isinstance(value, (int, float, Decimal)) else "a string"


def offline_account(plan: Plan, row: Row) -> str:
    """The account of a row as far as known without asking OKX."""
    uid = plan.profiles[row.profile].user_id
    return f"account {uid}" if uid else f"profile {row.profile}"


def duplicate_warnings(
    plan: Plan, account: Callable[[Plan, Row], str]
) -> list[tuple[tuple[int, ...], str]]:
    """(lines, warning) per (account, ccy) given different values; the last row wins."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in plan.rows:
        groups.setdefault((account(plan, row), row.ccy), []).append(row)
    warnings = []
    unit = "lines" if plan.kind == "csv" else "items"
    for (who, ccy), rows in groups.items():
        if len({r.amount for r in rows}) > 1:
            where = ", ".join(str(r.line) for r in rows[:-1]) + f" and {rows[-1].line}"
            values = ", then ".join(f"{r.text} (profile {r.profile})" for r in rows)
            message = (
                f"warning: {plan.source} {unit} {where} set {ccy} of {who} to different "
                f"values: {values}; {unit[:-1]} {rows[-1].line} wins (the last value asked "
                "for is the one applied)"
            )
            warnings.append((tuple(r.line for r in rows), message))
    return warnings


# -- execution ----------------------------------------------------------------------------


@dataclass
class Outcome:
    row: Row
    status: Status = "not_sent"
    applied: Decimal | None = None  # what OKX holds for the ccy as a result of this row
    error: OKXError | None = None


@dataclass
class Account:
    key: str  # OKX's User ID, or "profile NAME" when it could not be learned
    profiles: list[str]
    client: OKXClient  # any client of the account, for the readback
    sent: int = 0  # set-riskOffset-amt requests, retries included
    rate_limited: int = 0  # 50011 answers


@dataclass
class Mismatch:
    account: str
    ccy: str
    line: int
    expected: Decimal
    actual: Decimal | None
    reason: str


@dataclass
class Report:
    plan: Plan
    outcomes: list[Outcome]
    accounts: dict[str, Account]
    account_of: dict[str, str]  # profile -> account key
    elapsed: float  # seconds sending the rows (after the account lookups)
    lookup_s: float = 0.0  # seconds of account lookups before the rows went out
    verified: int | None = None  # currencies read back; None without --verify
    mismatches: list[Mismatch] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C stopped it; unfinished rows are "not_sent"

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.mismatches and not self.interrupted


async def execute(
    plan: Plan,
    console: Console,
    *,
    timeout: float | None = None,
    verify: bool = False,
    progress: bool = True,
) -> Report:
    """Send every row of a validated plan.

    `timeout` bounds each step on its own: the account lookups, sending the rows (all of
    them start together, so it bounds them all), and the read-back. A cancellation (the
    CLI's Ctrl-C) stops the rows still going and returns the report so far, with
    `interrupted` set and the unfinished rows "not_sent".
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    interrupted = False
    async with AsyncExitStack() as stack:
        clients: dict[str, OKXClient] = {}
        counts: dict[str, list[int]] = {}  # profile -> [set requests sent, 50011 answers]
        for name, profile in plan.profiles.items():
            counts[name] = [0, 0]
            clients[name] = profile.client(on_event=_counter(counts[name]))
            stack.push_async_callback(clients[name].close)
        try:
            account_of, lookup_errors = await _learn_accounts(plan, clients, timeout)
        except asyncio.CancelledError:
            _uncancel()
            interrupted = True
            account_of, lookup_errors = {n: f"profile {n}" for n in clients}, {}
        for name, uid in _wrong_user_ids(plan, account_of).items():
            console.err(
                f"warning: profile {name!r} says user_id {plan.profiles[name].user_id}, but "
                f"its API key belongs to User ID {uid}: using {uid} (correct the profile)"
            )
            # The stated one would key the wrong budget: this user's limit would not hold.
            clients[name] = replace(plan.profiles[name], user_id=uid).client(
                on_event=_counter(counts[name])
            )
            stack.push_async_callback(clients[name].close)
        # Profiles that turned out to be keys of one user share its currencies too.
        known = {lines for lines, _ in duplicate_warnings(plan, offline_account)}
        for lines, warning in duplicate_warnings(plan, lambda _, r: _label(account_of[r.profile])):
            if lines not in known:
                plan.warnings.append(warning)
                console.err(warning)
        # One window before a rate is shown; the ETA assumes no more than the limits allow.
        limit = ENDPOINT_LIMITS[SET_PATH]
        users = len({account_of[row.profile] for row in plan.rows})
        sending = loop.time()
        bar = Progress(
            len(plan.rows),
            console.err_raw,
            tty=console.err_is_tty,
            enabled=progress,
            clock=loop.time,
            max_rate=users * limit.limit / limit.window,
            warm_up=limit.window,
        )
        outcomes = [Outcome(row) for row in plan.rows]

        # A row repeating the previous value of its (account, currency) changes nothing:
        # it is sent once, and the repeat shares that row's outcome.
        previous: dict[tuple[str, str], int] = {}
        repeats: dict[int, int] = {}  # row index -> the index of the row it repeats
        for index, outcome in enumerate(outcomes):
            group = (account_of[outcome.row.profile], outcome.row.ccy)
            before = previous.get(group)
            if before is not None and outcomes[before].row.amount == outcome.row.amount:
                repeats[index] = before
            else:
                previous[group] = index
        tasks: dict[int, asyncio.Future[None]] = {}

        async def run(outcome: Outcome, original: int | None = None) -> None:
            row = outcome.row
            same_as = None
            if original is not None:
                same_as = outcomes[original]
                await asyncio.wait([tasks[original]])
                outcome.status, outcome.applied = same_as.status, same_as.applied
                outcome.error = same_as.error
            elif row.profile in lookup_errors:
                outcome.status = "failed"
                outcome.error = lookup_errors[row.profile]
            else:
                try:
                    result = await clients[row.profile].set_risk_offset_amount(
                        row.ccy, row.text, timeout=timeout
                    )
                except OKXError as exc:
                    outcome.status = "failed"
                    outcome.error = exc
                else:
                    outcome.status = "superseded" if result.superseded else "applied"
                    outcome.applied = result.amount
            detail = f" ({_short(outcome.error)})" if outcome.error else ""
            if same_as is not None:
                detail += f" (same as {plan.where(same_as.row.line)}: sent once)"
            what = f"{plan.where(row.line)} {row.profile} {row.ccy}={row.text} {outcome.status}"
            bar.advance(what + detail, notable=outcome.error is not None)

        ticker = asyncio.ensure_future(bar.keep_fresh())
        if not interrupted:
            for index, outcome in enumerate(outcomes):
                tasks[index] = asyncio.ensure_future(run(outcome, repeats.get(index)))
        rows = list(tasks.values())
        try:
            await asyncio.gather(*rows)
        except asyncio.CancelledError:
            _uncancel()
            interrupted = True
            for task in rows:
                task.cancel()
            await asyncio.gather(*rows, return_exceptions=True)
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            bar.close()
        accounts: dict[str, Account] = {}
        for name in sorted(clients):
            key = account_of[name]
            account = accounts.setdefault(key, Account(key, [], clients[name]))
            account.profiles.append(name)
            account.sent += counts[name][0]
            account.rate_limited += counts[name][1]
        # One clock for the progress line, the summary and the demo's figures.
        report = Report(plan, outcomes, accounts, account_of, loop.time() - sending)
        report.lookup_s = sending - started
        report.interrupted = interrupted
        if verify and not interrupted:
            await _verify(report, timeout)
    return report


def _uncancel() -> None:
    """Take back the cancellation just handled, so later awaits of this task (closing
    the clients) run and asyncio.timeout() stays accurate (Python 3.11+)."""
    task = asyncio.current_task()
    uncancel = getattr(task, "uncancel", None)
    if uncancel is not None:
        uncancel()


async def _learn_accounts(
    plan: Plan, clients: dict[str, OKXClient], timeout: float | None
) -> tuple[dict[str, str], dict[str, OKXError]]:
    """Each profile's account (its User ID) and the errors of those that could not say.

    One config read per key. Afterwards every client knows its User ID, so each set call
    joins its user's queue the moment it starts: in plan order, across profiles too. The
    price: no row starts before the slowest lookup ends (a key whose host is down holds
    the rest back for as long as the client's retries last).
    """
    names = list(clients)
    found = await asyncio.gather(
        *(clients[n].get_account_config(timeout=timeout) for n in names),
        return_exceptions=True,
    )
    account_of: dict[str, str] = {}
    errors: dict[str, OKXError] = {}
    for name, config in zip(names, found, strict=True):
        if isinstance(config, OKXError):
            errors[name] = config
            account_of[name] = f"profile {name}"
        elif isinstance(config, BaseException):
            raise config
        else:  # live and demo trading of one uid are separate accounts
            account_of[name] = config.uid + (" (demo)" if plan.profiles[name].demo else "")
    return account_of, errors


def _wrong_user_ids(plan: Plan, account_of: dict[str, str]) -> dict[str, str]:
    """Profiles whose stated user_id is not their key's User ID: name -> the real one."""
    wrong = {}
    for name, profile in plan.profiles.items():
        key = account_of.get(name, "")
        if profile.user_id and not key.startswith("profile "):
            uid = key.split()[0]  # "1001" or "1001 (demo)"
            if uid != profile.user_id:
                wrong[name] = uid
    return wrong


def _label(key: str) -> str:
    return key if key.startswith("profile ") else f"account {key}"


def _counter(counts: list[int]) -> Callable[[ClientEvent], None]:
    def on_event(event: ClientEvent) -> None:
        if event.path == SET_PATH:
            if event.kind == "sent":
                counts[0] += 1
            elif event.kind == "rate_limited":
                counts[1] += 1

    return on_event


async def _verify(report: Report, timeout: float | None) -> None:
    """Read back clSpotInUseAmt of every (account, ccy) whose winning row was applied."""
    winners: dict[tuple[str, str], Outcome] = {}
    for outcome in report.outcomes:  # plan order: the last row of a currency wins
        winners[(report.account_of[outcome.row.profile], outcome.row.ccy)] = outcome
    wanted: dict[str, list[Outcome]] = {}
    for (key, _), outcome in winners.items():
        if outcome.status == "applied":
            wanted.setdefault(key, []).append(outcome)

    async def check(key: str, outcomes: list[Outcome]) -> list[Mismatch]:
        try:
            held = await report.accounts[key].client.get_risk_offset_amounts(
                [o.row.ccy for o in outcomes], timeout=timeout
            )
        except OKXError as exc:
            reason = f"could not read back: {describe(exc)}"
            return [
                Mismatch(key, o.row.ccy, o.row.line, o.row.amount, None, reason) for o in outcomes
            ]
        found = []
        for o in outcomes:
            got = held.get(o.row.ccy)
            actual = got.user_defined if got is not None else None
            if actual != o.row.amount:
                reason = "not returned by OKX" if got is None else f"OKX holds {plain(actual)}"
                found.append(Mismatch(key, o.row.ccy, o.row.line, o.row.amount, actual, reason))
        return found

    results = await asyncio.gather(*(check(k, v) for k, v in wanted.items()))
    report.verified = sum(len(v) for v in wanted.values())
    report.mismatches = [m for ms in results for m in ms]


# -- output -------------------------------------------------------------------------------


# Requests the library makes before the one asked for, named for a person.
_FIRST_STEPS = {
    "/api/v5/account/config": "the User ID lookup (GET /api/v5/account/config) that comes first",
    "/api/v5/public/time": "the clock sync (GET /api/v5/public/time) that comes first",
}


@overload
def plain(value: Decimal) -> str: ...
@overload
def plain(value: None) -> None: ...
@overload
def plain(value: Decimal | None) -> str | None: ...
def plain(value: Decimal | None) -> str | None:
    """A Decimal as a person writes it: 0.000000000000000000001, never 1E-21."""
    return None if value is None else format(value, "f")


def describe(exc: BaseException, path: str | None = None) -> str:
    """Error class, OKX code, message and what to check, on one line. `path` is the
    endpoint of the call the user made: an error from a step before it says so."""
    if isinstance(exc, APIError):
        text = f"{type(exc).__name__} {exc.code}: {exc.message or 'no message'}"
        if path is not None and exc.path != path and exc.path in _FIRST_STEPS:
            text += f" (in {_FIRST_STEPS[exc.path]})"
        hint = getattr(exc, "hint", "")
        return f"{text}; {hint}" if hint else text
    return f"{type(exc).__name__}: {exc}"


def _short(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    return f"{type(exc).__name__} {code}" if code else type(exc).__name__


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def _tallies(report: Report) -> dict[str, dict[str, int]]:
    """Per account: rows, sent, applied, superseded, failed, not_sent, rate_limited."""
    tallies = {
        key: dict(
            rows=0,
            sent=a.sent,
            applied=0,
            superseded=0,
            failed=0,
            not_sent=0,
            rate_limited=a.rate_limited,
        )
        for key, a in report.accounts.items()
    }
    for o in report.outcomes:
        tally = tallies[report.account_of[o.row.profile]]
        tally["rows"] += 1
        tally[o.status] += 1
    return tallies


def summary_text(report: Report) -> str:
    columns = ["rows", "sent", "applied", "superseded", "failed", "rate_limited"]
    header = ["ACCOUNT", "PROFILES", "ROWS", "SENT", "APPLIED", "SUPERSEDED", "FAILED", "50011"]
    if report.interrupted:
        columns.insert(5, "not_sent")
        header.insert(7, "NOT SENT")
    tallies = _tallies(report)
    rows = [
        [key, ", ".join(report.accounts[key].profiles), *(str(tally[c]) for c in columns)]
        for key, tally in tallies.items()
    ]
    total = {c: sum(tally[c] for tally in tallies.values()) for c in columns}
    if len(rows) > 1:
        rows.append(["TOTAL", "", *(str(total[c]) for c in columns)])
    lines = _table(header, rows)
    lines.append("(SENT: set-riskOffset-amt requests, retries included; 50011: rate-limit answers)")
    failures = _failure_lines(report)
    if failures:
        lines += ["", "failures:", *failures]
    if report.verified is not None:
        checked = f"verify: read back {_plural(report.verified, 'value')}"
        if report.mismatches:
            lines += ["", f"{checked}; {len(report.mismatches)} differ:"]
            lines += [
                f"  account {m.account} {m.ccy} ({report.plan.where(m.line)}): expected "
                f"{plain(m.expected)}, {m.reason}"
                for m in report.mismatches
            ]
        elif report.verified:
            lines += ["", f"{checked}; all match"]
        else:
            lines += ["", "verify: nothing to read back (no row was applied)"]
    rate = total["sent"] / report.elapsed if report.elapsed > 0 else 0.0
    not_sent = sum(1 for o in report.outcomes if o.status == "not_sent")
    unsent = f", {not_sent} not sent" if report.interrupted else ""
    lines += [
        "",
        f"{_plural(total['rows'], 'row')}: {total['applied']} applied, "
        f"{total['superseded']} superseded, {total['failed']} failed{unsent}; "
        f"{_plural(total['sent'], 'request')} in {report.elapsed:.2f} s ({rate:.1f}/s) "
        f"after {report.lookup_s:.2f} s of account lookups",
    ]
    if report.interrupted:
        lines.append(
            "interrupted (Ctrl-C): rows not sent were not applied, except that a row on the "
            "wire at that moment may have been; run `get` to check those currencies"
        )
    return "\n".join(lines)


def _failure_lines(report: Report) -> list[str]:
    """One line per (account, reason), naming the rows."""
    reasons: dict[tuple[str, str], list[int]] = {}
    for o in report.outcomes:
        if o.error is not None:
            who = (report.account_of[o.row.profile], describe(o.error, SET_PATH))
            reasons.setdefault(who, []).append(o.row.line)
    lines = []
    unit = "line" if report.plan.kind == "csv" else "item"
    for (key, reason), where in reasons.items():
        shown = ", ".join(map(str, where[:10])) + (", ..." if len(where) > 10 else "")
        s = "s" if len(where) > 1 else ""
        lines.append(f"  {key}: {reason} ({len(where)} row{s}: {unit}{s} {shown})")
    return lines


def _error_json(exc: OKXError | None) -> dict[str, Any] | None:
    if exc is None:
        return None
    if isinstance(exc, APIError):
        return {"type": type(exc).__name__, "code": exc.code, "message": exc.message}
    return {"type": type(exc).__name__, "code": None, "message": str(exc)}


def report_json(report: Report) -> dict[str, Any]:
    plan = report.plan
    return {
        "file": plan.source,
        "format": plan.kind,
        "line_numbers": plan.numbering,
        "ok": report.ok,
        "interrupted": report.interrupted,
        "elapsed_s": round(report.elapsed, 3),
        "lookup_s": round(report.lookup_s, 3),
        "accounts": [
            {"account": key, "profiles": report.accounts[key].profiles, **tally}
            for key, tally in _tallies(report).items()
        ],
        "rows": [
            {
                "line": o.row.line,
                "profile": o.row.profile,
                "account": report.account_of[o.row.profile],
                "ccy": o.row.ccy,
                "requested": o.row.text,
                "status": o.status,
                "applied": plain(o.applied),
                "error": _error_json(o.error),
            }
            for o in report.outcomes
        ],
        "verify": None
        if report.verified is None
        else {
            "checked": report.verified,
            "mismatches": [
                {
                    "account": m.account,
                    "ccy": m.ccy,
                    "line": m.line,
                    "expected": plain(m.expected),
                    "actual": plain(m.actual),
                    "reason": m.reason,
                }
                for m in report.mismatches
            ],
        },
        "warnings": plan.warnings,
    }


def _plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count} {word if count == 1 else words or word + 's'}"


def _plan_accounts(plan: Plan) -> dict[str, list[Row]]:
    groups: dict[str, list[Row]] = {}
    for row in plan.rows:
        groups.setdefault(offline_account(plan, row), []).append(row)
    return groups


def dry_run_text(plan: Plan) -> str:
    lines = [
        f"dry run: {plan.source} is valid: {_plural(len(plan.rows), 'row')} for "
        f"{_plural(len(plan.profiles), 'profile')}; nothing was sent"
    ]
    for who, rows in _plan_accounts(plan).items():
        names = sorted({r.profile for r in rows})
        ccys = list(dict.fromkeys(r.ccy for r in rows))
        counts = f"{_plural(len(rows), 'row')}, {_plural(len(ccys), 'currency', 'currencies')}"
        lines.append(f"  {who}: {counts}: {', '.join(ccys)}")
        for name in names:
            p = plan.profiles[name]
            host = p.base_url or "https://www.okx.com"
            where = f"{host}{' (demo)' if p.demo else ''}, from {p.source}"
            # An account known only by its profile is already named on the line above.
            lines.append(
                f"    {where}" if who == f"profile {name}" else f"    profile {name}: {where}"
            )
    return "\n".join(lines)


def dry_run_json(plan: Plan) -> dict[str, Any]:
    return {
        "file": plan.source,
        "format": plan.kind,
        "line_numbers": plan.numbering,
        "dry_run": True,
        "valid": not plan.errors,
        "accounts": [
            {
                "account": who,
                "profiles": sorted({r.profile for r in rows}),
                "rows": len(rows),
                "ccys": list(dict.fromkeys(r.ccy for r in rows)),
            }
            for who, rows in _plan_accounts(plan).items()
        ],
        "rows": [
            {"line": r.line, "profile": r.profile, "ccy": r.ccy, "requested": r.text}
            for r in plan.rows
        ],
        "warnings": plan.warnings,
    }
