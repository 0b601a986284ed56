"""`apply` at work: send every row of a validated plan concurrently, then verify.

The CLI adds no rate limiting, ordering or retries: one OKXClient per profile and one
`asyncio.gather` over all rows. The library paces each user, keeps the last value asked
for per currency, and retries. Learning each profile's User ID before the rows go out
makes the submission order the plan's order, across profiles of one user too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Literal

from okx_async import (
    ENDPOINT_LIMITS,
    SET_RISK_OFFSET_PATH,
    ClientEvent,
    OKXClient,
    OKXError,
)

from ._plan import Plan, Row, duplicate_warnings, offline_account
from ._progress import Console, Progress
from ._report import describe, may_still_apply, plain, short

__all__ = ["Account", "Mismatch", "Outcome", "Report", "Status", "execute"]

# not_sent: no answer before Ctrl-C (a row in flight at that moment may still apply).
Status = Literal["applied", "superseded", "failed", "not_sent"]


@dataclass
class Outcome:
    row: Row
    status: Status = "not_sent"
    applied: Decimal | None = None  # what OKX holds for the ccy as a result of this row
    error: OKXError | None = None
    may_apply: bool = False  # failed, but OKX may still apply it (a timeout, a drop)


@dataclass
class Account:
    key: str  # OKX's User ID, or "profile NAME" when it could not be learned
    profiles: list[str]
    client: OKXClient  # any client of the account, for the readback
    sent: int = 0  # set-riskOffset-amt requests, retries included
    rate_limited: int = 0  # 50011 answers
    sent_at: list[float] = field(default_factory=list)  # loop time of each, in order


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
        sent_at: dict[str, list[float]] = {}  # profile -> loop time of each set request
        for name, profile in plan.profiles.items():
            counts[name], sent_at[name] = [0, 0], []
            clients[name] = profile.client(on_event=_counter(counts[name], sent_at[name]))
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
                on_event=_counter(counts[name], sent_at[name])
            )
            stack.push_async_callback(clients[name].close)
        # A currency given two values is told once, per account as OKX knows it: the
        # plan's own guess (per profile or stated user_id) was not told (see `cmd_apply`).
        offline = {w for _, w in duplicate_warnings(plan, offline_account)}
        plan.warnings = [w for w in plan.warnings if w not in offline]
        for _, warning in duplicate_warnings(plan, lambda _, r: _label(account_of[r.profile])):
            plan.warnings.append(warning)
            console.err(warning)
        # One window before a rate is shown; the ETA assumes no more than the limits allow.
        limit = ENDPOINT_LIMITS[SET_RISK_OFFSET_PATH]
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

        repeats = _repeats(plan.rows, account_of)
        tasks: dict[int, asyncio.Future[None]] = {}

        async def run(outcome: Outcome, original: int | None = None) -> None:
            row = outcome.row
            same_as = None
            if original is not None:
                same_as = outcomes[original]
                await asyncio.wait([tasks[original]])
                outcome.status, outcome.applied = same_as.status, same_as.applied
                outcome.error, outcome.may_apply = same_as.error, same_as.may_apply
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
                    outcome.may_apply = may_still_apply(exc, sent=counts[row.profile][0] > 0)
                else:
                    outcome.status = "superseded" if result.superseded else "applied"
                    outcome.applied = result.amount
            detail = f" ({short(outcome.error)})" if outcome.error else ""
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
        accounts = _accounts(clients, account_of, counts, sent_at)
        # One clock for the progress line, the summary and the demo's figures.
        report = Report(plan, outcomes, accounts, account_of, loop.time() - sending)
        report.lookup_s = sending - started
        report.interrupted = interrupted
        if verify and not interrupted:
            await _verify(report, timeout)
    return report


def _repeats(rows: list[Row], account_of: dict[str, str]) -> dict[int, int]:
    """Row index -> the index of the row it repeats. A row repeating the previous value
    of its (account, currency) changes nothing: it is sent once, and the repeat shares
    that row's outcome."""
    previous: dict[tuple[str, str], int] = {}
    repeats: dict[int, int] = {}
    for index, row in enumerate(rows):
        group = (account_of[row.profile], row.ccy)
        before = previous.get(group)
        if before is not None and rows[before].amount == row.amount:
            repeats[index] = before
        else:
            previous[group] = index
    return repeats


def _accounts(
    clients: dict[str, OKXClient],
    account_of: dict[str, str],
    counts: dict[str, list[int]],
    sent_at: dict[str, list[float]],
) -> dict[str, Account]:
    """The profiles' clients and request counts gathered per account."""
    accounts: dict[str, Account] = {}
    for name in sorted(clients):
        key = account_of[name]
        account = accounts.setdefault(key, Account(key, [], clients[name]))
        account.profiles.append(name)
        account.sent += counts[name][0]
        account.rate_limited += counts[name][1]
        account.sent_at = sorted(account.sent_at + sent_at[name])
    return accounts


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


def _counter(counts: list[int], sent_at: list[float]) -> Callable[[ClientEvent], None]:
    def on_event(event: ClientEvent) -> None:
        if event.path == SET_RISK_OFFSET_PATH:
            if event.kind == "sent":
                counts[0] += 1
                sent_at.append(asyncio.get_running_loop().time())
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
