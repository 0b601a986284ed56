"""Whose budget a request spends: OKX counts per User ID, not per spelling of a URL.

Private limits belong to (live or demo, User ID): every API key, client, process and host
of one user, however it spells OKX's address, lands on one limiter key and one set of
currency lanes. Two budgets are not a user's:

- `public/time` is limited per source IP, so it is keyed by the host as OKX sees it;
- before a client knows its User ID, its `account/config` lookup cannot be charged to the
  user. Every cold lookup against one host shares one budget of that endpoint's size, so
  many keys waking up at once never send more lookups than one user may.

`canonical_host` turns every spelling of one server into one name: scheme and host case,
a trailing dot, the scheme's default port, loopback names and addresses, and OKX's two
global hostnames.
"""

from __future__ import annotations

import ipaddress
from typing import Final
from urllib.parse import urlsplit

from ._defaults import GLOBAL_URL, OPENAPI_URL, SERVER_TIME_PATH
from ._limits import LimiterKey

__all__ = ["canonical_host", "cold_start_key", "host_key", "mode", "user_key"]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain"})
# www.okx.com and openapi.okx.com serve the same accounts and count the same budget.
_ALIASES: Final = {urlsplit(OPENAPI_URL).netloc: urlsplit(GLOBAL_URL).netloc}


def canonical_host(base_url: str) -> str:
    """`host:port` for a checked base URL, the same for every spelling of one server.

    >>> canonical_host("HTTPS://WWW.OKX.COM.:443/")
    'www.okx.com:443'
    >>> canonical_host("http://localhost:8080") == canonical_host("http://127.0.0.1:8080")
    True
    """
    parts = urlsplit(base_url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")  # urlsplit lower-cases the hostname
    host = _ALIASES.get(host, host)
    if _is_loopback(host):
        host = "loopback"
    port = parts.port if parts.port is not None else _DEFAULT_PORTS.get(scheme, 0)
    return f"{host}:{port}"


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


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
