"""Masking credentials in URLs before they reach a message, a log line or a repr.

One helper for every URL the package takes (`base_url`, proxies, Redis/limiter URLs):
`mask_url_credentials(url)` replaces the password of `user:password@` (all of a lone
`token@`), and the value of any `password=` query parameter, with `***`. It parses by
hand rather than with `urlsplit`, which raises on malformed URLs (a bad IPv6 literal,
an out-of-range port): a URL that is wrong in some other way must still be masked
before the message that says so.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "has_url_credentials", "mask_credentials_in_text", "mask_url_credentials"]

MASK = "***"
# "password=" (or pass=, pwd=) in a query string, up to the next separator.
_QUERY_PASSWORD = re.compile(r"(?i)([?&;](?:password|pass|pwd)=)[^&;#]*")
# scheme://userinfo@ anywhere in free text (an aiohttp message naming a proxy URL).
_USERINFO_IN_TEXT = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^\s/?#@]*@")


def mask_url_credentials(url: str) -> str:
    """`url` with the password of its userinfo and any `password=` query value as `***`.

    "redis://:pw@host:6379/0" -> "redis://:***@host:6379/0", "https://u:pw@h" ->
    "https://u:***@h", "https://token@h" -> "https://***@h"; a URL without credentials is
    returned unchanged. Never raises on a malformed URL.
    """
    span = _userinfo_span(url)
    if span is not None:
        start, at = span
        # "user:password": the user name stays (it tells accounts apart); a lone userinfo
        # may well be a password or token, so all of it goes.
        user, colon, _ = url[start:at].partition(":")
        url = url[:start] + (user + colon if colon else "") + MASK + url[at:]
    return _QUERY_PASSWORD.sub(lambda m: m.group(1) + MASK, url)


def has_url_credentials(url: str) -> bool:
    """Whether `url` carries a userinfo (`user:password@`, `token@`) or a `password=`
    query parameter. Never raises."""
    return _userinfo_span(url) is not None or _QUERY_PASSWORD.search(url) is not None


def _userinfo_span(url: str) -> tuple[int, int] | None:
    """(start, index of "@") of the userinfo, or None."""
    scheme_end = url.find("://")
    start = 0 if scheme_end < 0 else scheme_end + 3
    end = len(url)
    for separator in "?#":
        found = url.find(separator, start)
        if 0 <= found < end:
            end = found
    # The last "@" before the query: a password with an unescaped "/" must not end the
    # userinfo early (a path with "@" in it counts too, which is the safe side).
    at = url.rfind("@", start, end)
    return None if at < 0 else (start, at)


def mask_credentials_in_text(text: str) -> str:
    """Every `scheme://user:password@` inside free text (an error message) masked."""
    return _USERINFO_IN_TEXT.sub(lambda m: m.group(1) + MASK + "@", text)
