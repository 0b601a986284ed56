"""Who sent a request: the simulator's key table and OKX's authentication checks."""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from okx_async import parse_timestamp, sign

from ._state import SimKey, SimUser

TIMESTAMP_TOLERANCE: Final = 30.0  # seconds either side of the simulator clock (else 50102)
# OKX's timestamp: UTC, milliseconds (exactly three digits) and Z. Anything else: 50112.
_TIMESTAMP: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
# The four headers every private request needs, in the order OKX checks them, and the
# code of each one's absence.
_REQUIRED: Final = (
    ("OK-ACCESS-KEY", "50103"),
    ("OK-ACCESS-PASSPHRASE", "50104"),
    ("OK-ACCESS-SIGN", "50106"),
    ("OK-ACCESS-TIMESTAMP", "50107"),
)


@dataclass(frozen=True, slots=True)
class Caller:
    """What authentication found out about one request: the user and key its
    OK-ACCESS-KEY names (None: unknown), whether its signature matched, and the OKX code
    refusing it (None: authenticated)."""

    user: SimUser | None
    key: SimKey | None
    signature_ok: bool
    code: str | None


class KeyTable:
    """The simulator's own copies of its users (`users`, uid -> SimUser) and the key
    index authentication looks API keys up in. Raises ValueError for a uid given twice
    or an API key of two users."""

    __slots__ = ("_keys", "users")

    def __init__(self, users: Iterable[SimUser]) -> None:
        self.users: dict[str, SimUser] = {}
        self._keys: dict[str, tuple[SimUser, SimKey]] = {}
        for original in users:
            self._add(original.copy())

    def _add(self, user: SimUser) -> None:
        if user.uid in self.users:
            raise ValueError(f"duplicate uid {user.uid!r}")
        self.users[user.uid] = user
        for key in user.keys:
            if key.api_key in self._keys:
                raise ValueError(f"API key {key.api_key!r} belongs to two users")
            self._keys[key.api_key] = (user, key)

    def authenticate(self, request: web.Request, raw: bytes, *, region: str, now: float) -> Caller:
        """Checks in OKX's spirit, cheapest first, for a simulator playing `region`'s
        host whose clock reads `now` (Unix seconds)."""
        headers = request.headers
        user, key = self._keys.get(headers.get("OK-ACCESS-KEY", ""), (None, None))
        signature_ok = key is not None and _signature_matches(key, request, raw)
        code = _missing_header(headers)
        if code is None:
            code = refusal_code(headers, request.method, key, signature_ok, region, now)
        return Caller(user, key, signature_ok, code)

    def __repr__(self) -> str:
        return f"KeyTable({len(self.users)} users, {len(self._keys)} keys)"


def _signature_matches(key: SimKey, request: web.Request, raw: bytes) -> bool:
    signature = request.headers.get("OK-ACCESS-SIGN", "")
    timestamp = request.headers.get("OK-ACCESS-TIMESTAMP", "")
    if not signature or not timestamp:
        return False
    # Over the exact bytes received and the raw path with its query string.
    expected = sign(key.secret_key, timestamp, request.method, request.raw_path, raw)
    return hmac.compare_digest(expected.encode(), signature.encode())


def _missing_header(headers: Mapping[str, str]) -> str | None:
    return next((code for name, code in _REQUIRED if not headers.get(name, "")), None)


def refusal_code(
    headers: Mapping[str, str],
    method: str,
    key: SimKey | None,
    signature_ok: bool,
    region: str,
    now: float,
) -> str | None:
    """The OKX code refusing a request that carries all four headers, or None."""
    if key is None:
        return "50111"
    if key.region != region:
        return "50119"  # the key lives in another region's user database
    if not hmac.compare_digest(headers["OK-ACCESS-PASSPHRASE"].encode(), key.passphrase.encode()):
        return "50105"
    sent_at = _parse_timestamp(headers["OK-ACCESS-TIMESTAMP"])
    if sent_at is None:
        return "50112"
    if abs(sent_at - now) > TIMESTAMP_TOLERANCE:
        return "50102"
    if (headers.get("x-simulated-trading") == "1") != key.demo:
        return "50101"
    if not signature_ok:
        return "50113"
    if method == "POST" and "trade" not in key.permissions.split(","):
        return "50120"
    return None


def _parse_timestamp(text: str) -> float | None:
    if _TIMESTAMP.fullmatch(text) is None:
        return None
    try:
        return parse_timestamp(text)
    except (ValueError, OverflowError):
        return None
