"""Typed, immutable results. Amounts are Decimal: never floats for money."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from ._defaults import ACCOUNT_CONFIG_PATH
from ._errors import UnexpectedResponseError

__all__ = ["AccountConfig", "RiskOffsetAmount", "RiskOffsetResult"]


@dataclass(frozen=True, slots=True)
class RiskOffsetResult:
    """Outcome of one `set_risk_offset_amount` call.

    Fields (positional order kept from earlier versions: ccy, amount, requested,
    superseded, attempts):

    - `ccy` (str): the currency, upper case as sent, e.g. "BTC".
    - `amount` (Decimal, units of `ccy`): the value OKX holds for `ccy` as the result of
      this call — OKX's echo of the value applied. Usually equal to `requested`; a newer
      value of the same currency when that one answered for this call.
    - `requested` (Decimal, units of `ccy`): the value this call asked for.
    - `superseded` (bool): True only when this value was never sent — a newer value of
      the same currency was submitted before it went out, and `amount` is that value.
    - `attempts` (int, >= 0): requests carrying this value that went to OKX (1 + retries;
      0 when superseded). Not part of equality: two results of the same outcome compare
      equal however many attempts each took.
    - `sent` (bool, derived): whether this value went to OKX at all, i.e.
      `not superseded`. `sent` with `amount != requested` means the value was sent, its
      outcome was unknown (timeout, dropped connection) and a newer value, applied after
      it, answered for it instead of a retry.
    """

    ccy: str
    amount: Decimal
    requested: Decimal
    superseded: bool = False
    attempts: int = field(default=0, compare=False)

    @property
    def sent(self) -> bool:
        """Whether a request carrying this value went to OKX (`not superseded`)."""
        return not self.superseded


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """The parts of `GET /api/v5/account/config` this client uses."""

    uid: str
    main_uid: str
    acct_lv: str
    permissions: frozenset[str]

    @property
    def is_portfolio_margin(self) -> bool:
        return self.acct_lv == "4"

    @property
    def is_sub_account(self) -> bool:
        return self.uid != self.main_uid

    @property
    def can_trade(self) -> bool:
        return "trade" in self.permissions


@dataclass(frozen=True, slots=True)
class RiskOffsetAmount:
    """Spot risk offset amounts of one currency; None where OKX gave no value."""

    ccy: str
    user_defined: Decimal | None  # clSpotInUseAmt: what set_risk_offset_amount sets
    in_use: Decimal | None  # spotInUseAmt: actually in use
    maximum: Decimal | None  # maxSpotInUse (some docs: maxSpotInUseAmt)


def parse_decimal(value: object) -> Decimal | None:
    """OKX sends "" for "no value"; anything unparseable is treated the same."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = Decimal(value)
    except InvalidOperation:
        return None
    return parsed if parsed.is_finite() else None


def account_config_from_row(row: dict[str, Any]) -> AccountConfig:
    """An `account/config` data row as an AccountConfig; UnexpectedResponseError without
    a uid. A missing mainUid means the account is its own main account."""
    uid = row.get("uid")
    if not isinstance(uid, str) or not uid:
        raise UnexpectedResponseError(
            "account config without a uid",
            path=ACCOUNT_CONFIG_PATH,
            status=200,
            body_preview=str(row)[:200],
        )
    main_uid = row.get("mainUid")
    perm = row.get("perm")
    return AccountConfig(
        uid=uid,
        main_uid=main_uid if isinstance(main_uid, str) and main_uid else uid,
        acct_lv=str(row.get("acctLv", "")),
        permissions=frozenset(p for p in str(perm or "").split(",") if p),
    )


def risk_offset_amounts(details: object) -> dict[str, RiskOffsetAmount]:
    """The amounts per currency in an `account/balance` row's `details` (a list of
    dicts); entries without a currency are skipped."""
    found: dict[str, RiskOffsetAmount] = {}
    for item in details if isinstance(details, list) else []:
        if isinstance(item, dict) and isinstance(item.get("ccy"), str):
            found[item["ccy"]] = RiskOffsetAmount(
                ccy=item["ccy"],
                user_defined=parse_decimal(item.get("clSpotInUseAmt")),
                in_use=parse_decimal(item.get("spotInUseAmt")),
                maximum=parse_decimal(item.get("maxSpotInUse", item.get("maxSpotInUseAmt"))),
            )
    return found
