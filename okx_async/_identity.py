"""Whose budget a request spends: OKX counts per User ID, not per spelling of a URL.

Private limits belong to (live or demo, User ID): every API key, client, process and host
of one user, however it spells OKX's address, lands on one limiter key and one set of
currency lanes. Two budgets are not a user's:

- `public/time` is limited per source IP, so it is keyed by the host as OKX sees it;
- before a client knows its User ID, its `account/config` lookup cannot be charged to the
  user. Every cold lookup against one host shares one budget of that endpoint's size, so
  many keys waking up at once never send more lookups than one user may.

`canonical_host` (from `_urls`) turns every spelling of one server into one name.
"""

from __future__ import annotations

from ._defaults import SERVER_TIME_PATH
from ._limits import LimiterKey
from ._urls import canonical_host

__all__ = ["canonical_host", "cold_start_key", "host_key", "mode", "user_key"]


def mode(demo: bool) -> str:
    """Live and demo trading are separate budgets, even for one User ID."""
    return "demo" if demo else "live"


def user_key(demo: bool, uid: str, path: str) -> LimiterKey:
    """The budget of `path` for one user: the same from every host spelling and key."""
    return LimiterKey(mode(demo), "uid:" + uid, path)


def cold_start_key(demo: bool, base_url: str, path: str) -> LimiterKey:
    """The budget shared by the User ID lookups of every not-yet-identified key on one
    host (see the module docstring)."""
    return LimiterKey(mode(demo), "cold@" + canonical_host(base_url), path)


def host_key(base_url: str, path: str = SERVER_TIME_PATH) -> LimiterKey:
    """The budget of an endpoint OKX limits per IP: per server, not per user or mode."""
    return LimiterKey("ip", "host@" + canonical_host(base_url), path)
