"""The simulator's answers: OKX's codes, messages and HTTP statuses, and the bodies of
`account/config`, `account/balance` and `set-riskOffset-amt` as pure functions of a
user's state (authentication is `_auth`'s, limits `_app`'s, faults `_faults`')."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import orjson
from aiohttp import web

from ._state import SimKey, SimUser

__all__ = [
    "AMOUNT",
    "FAULT_REPLIES",
    "MAX_BALANCE_CCYS",
    "NOT_JSON",
    "NO_REPLY",
    "RATE_LIMIT_200_TEXT",
    "RATE_LIMIT_429_TEXT",
    "Reply",
    "account_config",
    "balance",
    "okx",
    "parse_json",
    "set_amount",
]

MAX_BALANCE_CCYS: Final = 20
AMOUNT: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")  # plain, non-negative decimals only
# The two texts OKX sends with 50011: with HTTP 429, and with HTTP 200.
RATE_LIMIT_429_TEXT: Final = "Too Many Requests"
RATE_LIMIT_200_TEXT: Final = (
    "Rate limit reached. Please refer to API documentation and throttle requests accordingly"
)

_MESSAGES: Final = {
    "0": "",
    "50000": "Body for POST request cannot be empty.",
    "50001": "Service temporarily unavailable. Please try again later.",
    "50002": "JSON syntax error",
    "50004": "API endpoint request timeout (does not mean that the request was successful "
    "or failed, please check the request result).",
    "50006": 'Invalid Content-Type, please use "application/JSON" format',
    "50011": RATE_LIMIT_429_TEXT,
    "50013": "Systems are busy. Please try again later.",
    "50026": "System error. Try again later.",
    "50101": "APIKey does not match current environment.",
    "50102": "Timestamp request expired.",
    "50103": 'Request header "OK-ACCESS-KEY" cannot be empty.',
    "50104": 'Request header "OK-ACCESS-PASSPHRASE" cannot be empty.',
    "50105": 'Request header "OK-ACCESS-PASSPHRASE" incorrect.',
    "50106": 'Request header "OK-ACCESS-SIGN" cannot be empty.',
    "50107": 'Request header "OK-ACCESS-TIMESTAMP" cannot be empty.',
    "50111": "Invalid OK-ACCESS-KEY.",
    "50112": "Invalid OK-ACCESS-TIMESTAMP.",
    "50113": "Invalid Sign.",
    "50119": "API key doesn't exist",
    "50120": "API key doesn't have permission to access this endpoint.",
    "51000": "Parameter error",
    "51010": "You can't complete this request under your current account mode.",
    "59648": "Your modified spot-in-use amount is insufficient, which may lead to liquidation.",
    "59651": "Enable spot-derivatives risk offset mode to set your spot-in-use amount.",
    "59652": "You can only set a spot-in-use amount for crypto that can be used as margin.",
}
# The HTTP status OKX answers each code with; everything else (business errors) is 200.
_STATUS: Final = {"50004": 400, "50011": 429, "50013": 429, "51000": 400} | {
    str(code): 401 for code in range(50101, 50121)
}
_STATUS.update({"50000": 400, "50001": 503, "50002": 400, "50006": 400, "50014": 400})
_STATUS.update({"50026": 500})

_GATEWAY_PAGE: Final = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int  # 0: close the connection without a response
    body: bytes = b""
    content_type: str = "application/json"
    code: str | None = None

    def response(self) -> web.Response:
        charset = None if self.content_type == "application/json" else "utf-8"
        return web.Response(
            status=self.status, body=self.body, content_type=self.content_type, charset=charset
        )


NO_REPLY: Final = Reply(0)
FAULT_REPLIES: Final = {
    "http_500": Reply(500, b"500 Internal Server Error", "text/plain"),
    "html_502": Reply(502, _GATEWAY_PAGE, "text/html"),
}


def okx(
    code: str,
    msg: str | None = None,
    data: list[dict[str, Any]] | None = None,
    *,
    status: int | None = None,
) -> Reply:
    text = _MESSAGES.get(code, "") if msg is None else msg
    body = orjson.dumps({"code": code, "msg": text, "data": data or []})
    return Reply(_STATUS.get(code, 200) if status is None else status, body, code=code)


# Faults answered with OKX JSON: the exchange overloaded (50001, HTTP 503) or failing
# (50026, HTTP 500), and 50011 in the form OKX sends with HTTP 200.
FAULT_REPLIES.update(
    unavailable_50001=okx("50001"),
    error_50026=okx("50026"),
    rate_limit_200=okx("50011", RATE_LIMIT_200_TEXT, status=200),
)

NOT_JSON: Final = object()  # a body that does not parse (None is JSON's null)


def parse_json(raw: bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return NOT_JSON


def account_config(user: SimUser, key: SimKey) -> dict[str, Any]:
    """The `account/config` row of `user` seen through `key`."""
    is_main = user.main_uid in (None, user.uid)
    return {
        "uid": user.uid,
        "mainUid": user.main_uid or user.uid,
        "acctLv": user.acct_lv,
        "perm": key.permissions,
        "label": "okx_async simulator",
        "level": "Lv1",
        "levelTmp": "",
        "posMode": "net_mode",
        "autoLoan": False,
        "greeksType": "PA",
        "ctIsoMode": "automatic",
        "mgnIsoMode": "automatic",
        "spotOffsetType": "1" if user.risk_offset_mode else "",
        "roleType": "0",
        "kycLv": "2",
        "ip": "",
        "type": "0" if is_main else "1",
    }


def balance(user: SimUser, ccy_param: str, *, now: float, max_field_name: str) -> Reply:
    """The `account/balance` answer for `?ccy=` (empty: every currency held)."""
    if ccy_param:
        ccys = ccy_param.split(",")
        if len(ccys) > MAX_BALANCE_CCYS or not all(ccys):
            return okx("51000", "Parameter ccy error")
    else:
        ccys = sorted(user.margin_ccys if user.equity is None else user.equity)
    now_ms = str(int(now * 1000))
    details = [
        {
            "ccy": ccy,
            "clSpotInUseAmt": user.values.get(ccy, ""),
            "spotInUseAmt": user.spot_in_use.get(ccy, ""),
            max_field_name: user.max_spot_in_use.get(ccy, ""),
            "uTime": now_ms,
        }
        for ccy in dict.fromkeys(ccys)  # in order, without repeats
        if user.holds(ccy)  # OKX leaves out a currency with no equity
    ]
    return okx("0", data=[{"uTime": now_ms, "details": details}])


def set_amount(user: SimUser, body: object, raw: bytes, content_type: str) -> tuple[Reply, bool]:
    """The `set-riskOffset-amt` answer, and whether it changed a value."""
    refusal = _request_error(body, raw, content_type)
    if refusal is not None:
        return refusal, False
    assert isinstance(body, dict)  # _request_error checked it
    ccy, amount = body["ccy"], body["clSpotInUseAmt"]
    refusal = _account_error(user, ccy, amount)
    if refusal is not None:
        return refusal, False
    user.values[ccy] = amount
    return okx("0", data=[{"ccy": ccy, "clSpotInUseAmt": amount}]), True


def _request_error(body: object, raw: bytes, content_type: str) -> Reply | None:
    """The refusal of a malformed request: its content type, JSON, or fields."""
    if content_type != "application/json":  # aiohttp: the media type, lower case
        return okx("50006")
    if not raw.strip():
        return okx("50000")
    if body is NOT_JSON:
        return okx("50002")
    if not isinstance(body, dict):
        return okx("51000", "Parameter error: the body must be a JSON object")
    ccy, amount = body.get("ccy"), body.get("clSpotInUseAmt")
    for name, value in (("ccy", ccy), ("clSpotInUseAmt", amount)):
        if value is None or value == "":
            return okx("50014", f"Parameter {name} can not be empty.")
    if not isinstance(ccy, str):
        return okx("51000", "Parameter ccy error")
    if not isinstance(amount, str) or not AMOUNT.fullmatch(amount):
        return okx("51000", "Parameter clSpotInUseAmt error")
    return None


def _account_error(user: SimUser, ccy: str, amount: str) -> Reply | None:
    """The refusal of a well-formed request the user's account cannot take."""
    if user.acct_lv != "4":
        return okx("51010")
    if not user.risk_offset_mode:
        return okx("59651")
    if ccy not in user.margin_ccys:
        return okx("59652")
    floor = user.min_values.get(ccy)
    if floor is not None and Decimal(amount) < Decimal(floor):
        return okx("59648")
    return None
