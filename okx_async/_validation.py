"""Input checks that run before any network I/O, with messages a person understands."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from ._defaults import AMOUNT_MAX_DIGITS, CCY_MAX_LENGTH
from ._errors import InvalidInputError

__all__ = ["validate_amount", "validate_ccy"]

_CCY = re.compile(rf"[A-Za-z0-9]{{1,{CCY_MAX_LENGTH}}}")
# Digits, an optional point, an optional exponent. Decimal() alone would also take
# "1_000", "NaN", "Infinity" and surrounding blanks, none of which OKX understands.
# ASCII digits only: Decimal() also reads other scripts' digits (a fullwidth "1"),
# which OKX would refuse or misread.
_AMOUNT_TEXT = re.compile(r"\+?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)
# The usual input, "12.25": ASCII digits, no sign, exponent or redundant leading zero, not
# zero. Such text is already what format(Decimal(text), "f") gives, so it is sent as is.
_PLAIN_NONZERO = re.compile(r"[1-9][0-9]*(?:\.[0-9]+)?|0\.[0-9]*[1-9][0-9]*")
# Zero with a minus sign ("-0", "-0.00"): zero, as Decimal('-0') is.
_NEGATIVE_ZERO = re.compile(r"-(0+\.?0*|\.0+)([eE][+-]?\d+)?", re.ASCII)


def validate_ccy(ccy: object) -> str:
    """The currency code in OKX's upper case, or InvalidInputError."""
    if not isinstance(ccy, str):
        raise InvalidInputError(f"ccy must be a string such as 'BTC', not {type(ccy).__name__}")
    if not ccy:
        raise InvalidInputError("ccy must not be empty (e.g. 'BTC')")
    if _CCY.fullmatch(ccy) is None:
        raise InvalidInputError(
            f"ccy {ccy[:40]!r} is not a currency code: use 1 to {CCY_MAX_LENGTH} letters or "
            "digits, e.g. 'BTC'"
        )
    return ccy.upper()


def validate_amount(amount: object) -> tuple[str, Decimal]:
    """(plain decimal text to send, its Decimal value), or InvalidInputError.

    Accepts str, Decimal and int. Floats are refused: 0.1 is not exactly 0.1, and an
    offset amount must be exactly what the caller meant.
    """
    if isinstance(amount, str):  # the common case first
        if len(amount) <= AMOUNT_MAX_DIGITS and _PLAIN_NONZERO.fullmatch(amount):
            return amount, Decimal(amount)  # in range: at most AMOUNT_MAX_DIGITS digits
        if _NEGATIVE_ZERO.fullmatch(amount) is not None:
            return "0", Decimal(0)
        if _AMOUNT_TEXT.fullmatch(amount) is None:
            shown = amount[:40]
            hint = " (negative amounts are not allowed)" if shown.startswith("-") else ""
            raise InvalidInputError(
                f"amount {shown!r} is not a plain decimal number{hint}: pass ASCII digits "
                "with an optional point, such as '0.5' (an exponent, '5E-1', also works)"
            )
        try:
            value = Decimal(amount)
        except InvalidOperation as exc:  # pragma: no cover - the pattern already guards
            raise InvalidInputError(f"amount {amount[:40]!r} is not a number") from exc
    elif isinstance(amount, bool):
        raise InvalidInputError("amount must be a number as str, Decimal or int, not a bool")
    elif isinstance(amount, float):
        if amount != amount or amount in (float("inf"), float("-inf")):
            raise InvalidInputError(f"amount must be a finite number, not the float {amount!r}")
        raise InvalidInputError(
            f"amount {amount!r} is a float, which loses precision: pass a str such as "
            f"'{amount}' or a Decimal"
        )
    elif isinstance(amount, Decimal):
        value = amount
    elif isinstance(amount, int):
        value = Decimal(amount)
    else:
        raise InvalidInputError(
            f"amount must be a str, Decimal or int, not {type(amount).__name__}"
        )
    if not value.is_finite():
        raise InvalidInputError(f"amount must be a finite number, not {value}")
    if value < 0:
        raise InvalidInputError(f"amount must not be negative (got {value})")
    if value == 0:
        return "0", Decimal(0)
    # An exponent like 1E+1000000 would format to a million digits: refuse it early.
    exponent = value.adjusted()
    if exponent >= AMOUNT_MAX_DIGITS or exponent < -AMOUNT_MAX_DIGITS:
        raise InvalidInputError(
            f"amount {value} is out of range: it must be at least 1E-{AMOUNT_MAX_DIGITS} and "
            f"below 1E+{AMOUNT_MAX_DIGITS}, written in at most {AMOUNT_MAX_DIGITS} digits"
        )
    text = format(value, "f")
    if len(text) > AMOUNT_MAX_DIGITS + 2:
        raise InvalidInputError(
            f"amount {text[:40]}... has too many digits: use at most {AMOUNT_MAX_DIGITS} "
            "(leading zeros after the point included)"
        )
    return text, value
