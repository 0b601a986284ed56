"""What `apply` tells: text and JSON summaries of a plan (dry run) and of a run.

Pure functions of a `Plan` or a `Report`; nothing here sends or waits.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, overload

from okx_async import (
    ACCOUNT_CONFIG_PATH,
    ENDPOINT_LIMITS,
    GLOBAL_URL,
    LANDING_HORIZON,
    SERVER_TIME_PATH,
    SET_RISK_OFFSET_PATH,
    APIError,
    DeadlineExceededError,
    OKXError,
    busiest_window,
    outcome_unknown,
)

from ._plan import Plan, Row, offline_account

if TYPE_CHECKING:
    from ._execute import Report

__all__ = [
    "describe",
    "dry_run_json",
    "may_still_apply",
    "may_still_apply_note",
    "dry_run_text",
    "plain",
    "report_json",
    "short",
    "summary_text",
]


# Requests the library makes before the one asked for, named for a person.
_FIRST_STEPS = {
    ACCOUNT_CONFIG_PATH: f"the User ID lookup (GET {ACCOUNT_CONFIG_PATH}) that comes first",
    SERVER_TIME_PATH: f"the clock sync (GET {SERVER_TIME_PATH}) that comes first",
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


def may_still_apply(exc: BaseException, *, sent: bool) -> bool:
    """Whether a failed set call may still be applied by OKX. `sent`: a set request of
    the call's client went on the wire. A failure of a step before the set request (the
    User ID lookup, the clock sync) says so by its path: then nothing was sent for it."""
    if not sent:
        return False
    error: BaseException | None = exc
    while error is not None:
        path = getattr(error, "path", None)
        if path is not None and path != SET_RISK_OFFSET_PATH:
            return False
        if outcome_unknown(error):
            return True
        error = error.__cause__
    # Gave up waiting with no failed attempt to blame: the request may be on the wire.
    return isinstance(exc, DeadlineExceededError)


def may_still_apply_note(ccy: str) -> str:
    """What to do about a set call that may still be applied, for a person."""
    return (
        f"OKX may still apply this value up to {LANDING_HORIZON:g} s later: check with "
        f"`okx-async get {ccy}` before setting it again"
    )


def short(exc: BaseException) -> str:
    """The error class and OKX code alone, for a progress line."""
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
    """Per account: rows, sent, applied, superseded, failed, not_sent, rate_limited, and
    busiest_window (the most set requests sent in any one window of the limit)."""
    limit = ENDPOINT_LIMITS[SET_RISK_OFFSET_PATH]
    tallies = {
        key: dict(
            rows=0,
            sent=a.sent,
            applied=0,
            superseded=0,
            failed=0,
            not_sent=0,
            rate_limited=a.rate_limited,
            busiest_window=busiest_window(a.sent_at, limit.window),
        )
        for key, a in report.accounts.items()
    }
    for o in report.outcomes:
        tally = tallies[report.account_of[o.row.profile]]
        tally["rows"] += 1
        tally[o.status] += 1
    return tallies


def summary_text(report: Report) -> str:
    """The run's summary for a person: a table of accounts, the failures, the verify
    result and a closing line of totals."""
    tallies = _tallies(report)
    columns = _summary_columns(report.interrupted)
    total = {c: sum(tally[c] for tally in tallies.values()) for c, _ in columns}
    lines = _summary_table(report, tallies, columns, total)
    lines.append("(SENT: set-riskOffset-amt requests, retries included; 50011: rate-limit answers)")
    failures = _failure_lines(report)
    if failures:
        lines += ["", "failures:", *failures]
    lines += _verify_lines(report)
    lines += ["", _totals_line(report, tallies, total)]
    if report.interrupted:
        lines.append(
            "interrupted (Ctrl-C): rows not sent were not applied, except that a row on the "
            "wire at that moment may have been; run `get` to check those currencies"
        )
    return "\n".join(lines)


def _summary_columns(interrupted: bool) -> list[tuple[str, str]]:
    """The summary table's tallies and their headings, in order; NOT SENT only for an
    interrupted run."""
    columns = [("rows", "ROWS"), ("sent", "SENT"), ("applied", "APPLIED")]
    columns += [("superseded", "SUPERSEDED"), ("failed", "FAILED")]
    if interrupted:
        columns.append(("not_sent", "NOT SENT"))
    return [*columns, ("rate_limited", "50011")]


def _summary_table(
    report: Report,
    tallies: dict[str, dict[str, int]],
    columns: list[tuple[str, str]],
    total: dict[str, int],
) -> list[str]:
    header = ["ACCOUNT", "PROFILES", *(title for _, title in columns)]
    rows = [
        [key, ", ".join(report.accounts[key].profiles), *(str(tally[c]) for c, _ in columns)]
        for key, tally in tallies.items()
    ]
    if len(rows) > 1:
        rows.append(["TOTAL", "", *(str(total[c]) for c, _ in columns)])
    return _table(header, rows)


def _verify_lines(report: Report) -> list[str]:
    if report.verified is None:
        return []
    checked = f"verify: read back {_plural(report.verified, 'value')}"
    if report.mismatches:
        return [
            "",
            f"{checked}; {len(report.mismatches)} differ:",
            *(
                f"  account {m.account} {m.ccy} ({report.plan.where(m.line)}): expected "
                f"{plain(m.expected)}, {m.reason}"
                for m in report.mismatches
            ),
        ]
    if report.verified:
        return ["", f"{checked}; all match"]
    return ["", "verify: nothing to read back (no row was applied)"]


def _totals_line(report: Report, tallies: dict[str, dict[str, int]], total: dict[str, int]) -> str:
    limit = ENDPOINT_LIMITS[SET_RISK_OFFSET_PATH]
    busiest = max((t["busiest_window"] for t in tallies.values()), default=0)
    pace = (
        f" (busiest {limit.window:g}-s window: {busiest} of the {limit.limit} allowed per "
        f"{limit.scope})"
        if total["sent"]
        else ""
    )
    not_sent = sum(1 for o in report.outcomes if o.status == "not_sent")
    unsent = f", {not_sent} not sent" if report.interrupted else ""
    pending = sum(1 for o in report.outcomes if o.may_apply)
    maybe = f" ({pending} may still apply)" if pending else ""
    return (
        f"{_plural(total['rows'], 'row')}: {total['applied']} applied, "
        f"{total['superseded']} superseded, {total['failed']} failed{maybe}{unsent}; "
        f"{_plural(total['sent'], 'request')} in {report.elapsed:.2f} s{pace} "
        f"after {report.lookup_s:.2f} s of account lookups"
    )


def _failure_lines(report: Report) -> list[str]:
    """One line per (account, reason), naming the rows."""
    reasons: dict[tuple[str, str], list[int]] = {}
    for o in report.outcomes:
        if o.error is not None:
            reason = describe(o.error, SET_RISK_OFFSET_PATH)
            if o.may_apply:
                reason += f"; may still apply: {may_still_apply_note(o.row.ccy)}"
            who = (report.account_of[o.row.profile], reason)
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
                "may_still_apply": o.may_apply,
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
            host = p.base_url or GLOBAL_URL
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
