"""Every URL rule of the package: OKX's hosts and regions, plain http, credentials.

- `resolve_base_url(base_url, allow_insecure_http=)`: a region name ("global", "eea",
  "us") or a URL checked by `check_base_url` (https, or plain http to this computer
  only: `is_loopback`).
- `canonical_host(base_url)`: one `host:port` for every spelling of one server (what
  budgets keyed per host use).
- Masking credentials before they reach a message, a log line or a repr, for every URL
  the package takes (`base_url`, proxies, Redis/limiter URLs): `mask_url_credentials`
  replaces the password of `user:password@` (all of a lone `token@`), and the value of
  any query option but a few known harmless ones (`db=`, `socket_timeout=`, …), with
  `***`. It parses by hand rather than with
  `urlsplit`, which raises on malformed URLs (a bad IPv6 literal, an out-of-range
  port): a URL that is wrong in some other way must still be masked before the message
  that says so.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Final, TypeVar
from urllib.parse import urlsplit

from ._defaults import DEFAULT_BASE_URL, GLOBAL_URL, OPENAPI_URL, REGION_URLS
from ._errors import InvalidInputError

__all__ = [
    "MASK",
    "MaskedURL",
    "canonical_host",
    "check_base_url",
    "has_url_credentials",
    "is_loopback",
    "mask_credentials_in_text",
    "mask_url_credentials",
    "masked",
    "refuse_url_credentials",
    "resolve_base_url",
]

MASK = "***"
_T = TypeVar("_T")
# A secret-looking parameter in a query string (password=, ssl_password=, pwd=,
# auth_token=, client_secret=, ...): its value, up to the next separator.
_QUERY_PASSWORD = re.compile(
    r"(?i)([?&;][^=&;#]*(?:pass|pwd|secret|token|auth|credential)[^=&;#]*=)[^&;#]*"
)
# Query options shown as they are in messages and reprs (the stores' documented options,
# none of them a secret); any other option's value is masked, since an unknown one may
# be anything.
_SHOWN_QUERY_OPTIONS: Final = frozenset(
    {
        "db",
        "protocol",
        "client_name",
        "username",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "retry_on_timeout",
        "max_connections",
        "health_check_interval",
        "timeout",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
        "hold_new_file",
    }
)
_QUERY_OPTION = re.compile(r"([?&;])([^=&;#]*)=([^&;#]*)")
# scheme://userinfo@ anywhere in free text (an aiohttp message naming a proxy URL).
_USERINFO_IN_TEXT = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^\s/?#@]*@")


def mask_url_credentials(url: str) -> str:
    """`url` with the password of its userinfo, and the value of every query option but
    the known harmless ones (`db`, `socket_timeout`, `ssl_cert_reqs`, …), as `***`.

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
    query = url.find("?")
    return url if query < 0 else url[:query] + _QUERY_OPTION.sub(_mask_option, url[query:])


def _mask_option(match: re.Match[str]) -> str:
    if match.group(2).lower() in _SHOWN_QUERY_OPTIONS:
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}={MASK}"


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


# -- OKX hosts ----------------------------------------------------------------------------

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain"})
_INET_ATON_FORM: Final = re.compile(r"[0-9A-Fa-fXx]+(?:\.[0-9A-Fa-fXx]+){0,3}")
# www.okx.com and openapi.okx.com serve the same accounts and count the same budget.
_ALIASES: Final = {urlsplit(OPENAPI_URL).netloc: urlsplit(GLOBAL_URL).netloc}


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an IP literal, any case) is this computer."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    # The short IPv4 spellings the resolver also takes (127.1, 0x7f.1, 2130706433), which
    # ipaddress refuses; the pattern keeps out what inet_aton would cut short ("1.2.3.4 x").
    if _INET_ATON_FORM.fullmatch(host) is None:
        return False
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host)).is_loopback
    except OSError:
        return False


def resolve_base_url(base_url: object, *, allow_insecure_http: bool = False) -> str:
    """OKXClient's `base_url`: a region name (`REGION_URLS`: "global", "eea", "us") or a
    URL, checked by `check_base_url`. Raises InvalidInputError (the URL's credentials
    masked in every message)."""
    if not isinstance(base_url, str):
        raise InvalidInputError(
            f"base_url must be a URL or a region name (global, eea, us), "
            f"not {type(base_url).__name__}"
        )
    base_url = REGION_URLS.get(base_url, base_url)
    refuse_url_credentials(base_url)  # first: no later message may echo them
    if "://" not in base_url:
        raise InvalidInputError(
            f"base_url {base_url[:40]!r} is neither a URL nor a region name: use "
            f"{', '.join(REGION_URLS)} or a URL such as {DEFAULT_BASE_URL}"
        )
    return check_base_url(base_url, allow_insecure_http=allow_insecure_http)


def check_base_url(base_url: str, *, allow_insecure_http: bool = False) -> str:
    """The base URL without a trailing slash; plain http only for loopback hosts.

    Raises InvalidInputError. Credentials (`user:pw@`) are checked first, and every
    message shows the URL with them masked, so a secret in the URL is never echoed.
    """
    refuse_url_credentials(base_url)
    shown = repr(base_url)
    try:
        parts = urlsplit(base_url)
        hostname = parts.hostname
    except ValueError:  # a malformed IPv6 literal, for one
        raise InvalidInputError(f"base_url {shown} is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not hostname:
        raise InvalidInputError(f"base_url {shown} must look like https://www.okx.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidInputError(f"base_url {shown} must not have a path or query")
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(hostname):
        raise InvalidInputError(
            f"base_url {shown} uses plain http to a non-loopback host; use https "
            "(or pass allow_insecure_http=True if you really mean it)"
        )
    return base_url.rstrip("/")


def refuse_url_credentials(base_url: str) -> None:
    """InvalidInputError if `base_url` carries credentials (`user:pw@`, `password=`); the
    message shows the URL with them masked. Runs before any other check of the URL."""
    if has_url_credentials(base_url):
        raise InvalidInputError(
            f"base_url {mask_url_credentials(base_url)!r} must not carry credentials: OKX "
            "takes none in the URL; pass the API key, secret key and passphrase as "
            "api_key=, secret_key=, passphrase= (or OKX_API_KEY, OKX_SECRET_KEY, "
            "OKX_PASSPHRASE)"
        )


def canonical_host(base_url: str) -> str:
    """`host:port` for a checked base URL, the same for every spelling of one server:
    scheme and host case, a trailing dot, the scheme's default port, loopback names and
    addresses, and OKX's two global hostnames.

    >>> canonical_host("HTTPS://WWW.OKX.COM.:443/")
    'www.okx.com:443'
    >>> canonical_host("http://localhost:8080") == canonical_host("http://127.0.0.1:8080")
    True
    """
    parts = urlsplit(base_url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")  # urlsplit lower-cases the hostname
    host = _ALIASES.get(host, host)
    if is_loopback(host):
        host = "loopback"
    port = parts.port if parts.port is not None else _DEFAULT_PORTS.get(scheme, 0)
    return f"{host}:{port}"


class MaskedURL(str):
    """A URL string whose repr masks its credentials.

    Reporters that capture frame locals (Sentry-style, `traceback.TracebackException(...,
    capture_locals=True)`) print every local with repr(); a proxy, Redis or base URL with a
    password passes through many frames. Wrapped once where it enters the package, it shows
    as `'http://bob:***@host:3128'` in each of them, and is still the plain string aiohttp
    and redis-py need.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(mask_url_credentials(str(self)))


def masked(url: _T) -> _T:
    """`url` as a MaskedURL if it is a string (anything else unchanged, for the
    validation that follows to refuse)."""
    if isinstance(url, str) and not isinstance(url, MaskedURL):
        return MaskedURL(url)  # type: ignore[return-value]
    return url
