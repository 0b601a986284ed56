"""A plan for `apply`: read a CSV or JSON file of profile,ccy,amount rows and check it.

Nothing here talks to OKX: `validate_plan` checks every row and its profile (a bad
`base_url` or `user_id` is refused by building the profile's client, which sends
nothing), so that a plan with any problem sends nothing at all.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Literal

from okx_async import InvalidInputError, validate_amount, validate_ccy

from ._profiles import ConfigError, Profile, ProfileStore, cli_text

__all__ = [
    "COLUMNS",
    "Plan",
    "PlanError",
    "Row",
    "duplicate_warnings",
    "offline_account",
    "parse_plan",
    "read_plan",
    "validate_plan",
]

COLUMNS = ("profile", "ccy", "amount")


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
    bad_profiles: dict[str, str] = {}  # profile -> its problem
    reported: set[str] = set()  # a profile's problem is told once, not once per row
    for line, values in plan.records:
        name = values["profile"]
        wrong = _json_type_problems(values) if plan.kind == "json" else {}
        problems = _profile_problems(plan, store, name, wrong, bad_profiles, reported)
        value_problems, ccy, text, amount = _value_problems(values, wrong)
        problems += value_problems
        if not problems:
            if isinstance(name, str) and name in bad_profiles:
                continue  # its profile's problem is reported at the profile's first row
            plan.rows.append(Row(line, str(name), ccy, text, amount))
        for problem in problems:
            plan.error(line, problem)
    plan.errors.sort(key=lambda e: e[0])
    if not plan.records and not plan.errors:
        plan.errors.append((0, f"{plan.source}: the plan has no rows"))
    plan.warnings = [w for _, w in duplicate_warnings(plan, offline_account)]
    return plan


def _profile_problems(
    plan: Plan,
    store: ProfileStore,
    name: object,
    wrong: dict[str, str],
    bad_profiles: dict[str, str],
    reported: set[str],
) -> list[str]:
    """The row's profile problem, if not told already; resolves each profile once."""
    if "profile" in wrong or not isinstance(name, str) or not name:
        return [wrong.get("profile", "profile must be a non-empty string")]
    if name not in plan.profiles and name not in bad_profiles:
        try:
            profile = store.resolve(name)
            profile.client()  # refuses a bad base_url or user_id now, not later
            plan.profiles[name] = profile
        except (ConfigError, InvalidInputError) as exc:
            bad_profiles[name] = cli_text(exc)
    problem = bad_profiles.get(name)
    if problem is None or problem in reported:
        return []
    reported.add(problem)
    return [problem]


def _value_problems(
    values: dict[str, object], wrong: dict[str, str]
) -> tuple[list[str], str, str, Decimal]:
    """(problems, ccy, amount as sent, amount) of a row's currency and amount."""
    problems: list[str] = []
    ccy, text, amount = "", "", Decimal(0)
    if "ccy" not in wrong:
        try:
            ccy = validate_ccy(values["ccy"])
        except InvalidInputError as exc:
            problems.append(f"bad ccy: {exc}")
    if "amount" not in wrong:
        try:
            text, amount = validate_amount(values["amount"])
        except InvalidInputError as exc:
            problems.append(f"bad amount: {exc}")
    problems += [wrong[c] for c in ("ccy", "amount") if c in wrong]
    return problems, ccy, text, amount


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
