"""Typed, immutable results. Amounts are Decimal: never floats for money."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

__all__ = ["AccountConfig", "RiskOffsetAmount", "RiskOffsetResult"]


@dataclass(frozen=True, slots=True)
class RiskOffsetResult:
    """Outcome of one `set_risk_offset_amount` call.

    `amount` is the value OKX holds now for `ccy` as a result of this call. When a newer
    value for the same currency was submitted before ours was sent, ours was never sent:
    `superseded` is True and `amount` is the newer value that was applied instead.
    """

    ccy: str
    amount: Decimal
    requested: Decimal
    superseded: bool = False


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
