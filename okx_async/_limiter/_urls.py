"""Choosing a limiter store by URL, in the style of storage URIs.

    memory://                 this process only (the default)
    sqlite:///ABSOLUTE/PATH   every process on this host that names the same file
        ?hold_new_file=false  a file this store creates is not held one window (its
                              spent history is known to be empty: tests, a first run)
    redis://[user:password@]host[:port][/db]   rediss://…   unix:///path/to/socket
    redis+cluster://host:port   rediss+cluster://…        every process that reaches it

sqlite takes an absolute path only (`sqlite:///var/lib/x.db` is `/var/lib/x.db`): a
relative path would depend on each process's working directory, so two processes
started from different directories would silently keep two budgets. `~` is not
expanded for the same reason (a service account's home differs).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import unquote, urlsplit

from .._defaults import (
    ENV_LIMITER_URL,
    ENV_REDIS_URL,
    LEASE_TTL_MARGIN,
    REDIS_INFLIGHT_TTL,
    SQLITE_INFLIGHT_TTL,
)
from .._errors import InvalidInputError
from .._urls import mask_url_credentials as mask_url

if TYPE_CHECKING:
    from .._limits import LimiterBackend

__all__ = [
    "LimiterUrl",
    "check_lease_ttl",
    "client_backend",
    "limiter_from_url",
    "parse_limiter_url",
]

REDIS_SCHEMES = frozenset({"redis", "rediss", "unix", "redis+cluster", "rediss+cluster"})

_EXPECTED = (
    "pass memory://, sqlite:///ABSOLUTE/PATH, or a redis://, rediss://, unix:// or "
    "redis+cluster:// URL"
)


class LimiterUrl(NamedTuple):
    """A checked limiter URL: `kind` is "memory", "sqlite" or "redis"; `target` the
    file path (sqlite), the URL itself (redis) or "" (memory); `hold_new_file` the
    sqlite option (True unless `?hold_new_file=false`)."""

    kind: str
    target: str
    hold_new_file: bool = True


_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _sqlite_options(url: str, query: str) -> bool:
    """`hold_new_file` from a sqlite URL's query, the only option it takes."""
    if not query:
        return True
    name, _, value = query.partition("=")
    if name != "hold_new_file" or value.lower() not in _BOOLS:
        raise InvalidInputError(
            f"a sqlite limiter URL takes only ?hold_new_file=true|false, got {_shown(url)}"
        )
    return _BOOLS[value.lower()]


def _check_sqlite_file(url: str, path: str, fragment: str) -> None:
    """InvalidInputError for a sqlite URL that names no file sqlite could share: a
    directory, sqlite's per-connection `:memory:`, or one with a #fragment."""
    if fragment:
        raise InvalidInputError(
            f"a sqlite limiter URL takes no #fragment (a '#' in the file name is written "
            f"%23), got {_shown(url)}"
        )
    if os.path.basename(path) == ":memory:":
        raise InvalidInputError(
            "sqlite:///:memory: would be one process's store, not a shared one: pass "
            "memory:// for that, or sqlite:///ABSOLUTE/PATH to share a file"
        )
    if path.endswith("/") or os.path.isdir(path):
        raise InvalidInputError(
            f"a sqlite limiter URL names a file, not a directory, as sqlite:///ABSOLUTE/"
            f"PATH, got {_shown(url)}; e.g. sqlite://{path.rstrip('/')}/limits.db"
        )


def _shown(url: str) -> str:
    """`url` for an error message: password masked; not shown at all when it is too
    malformed to tell where a password would be."""
    masked = mask_url(url)
    if "@" in masked.replace("***@", ""):
        return f"a {url.split(':', 1)[0][:20]!r} URL (not shown: it may hold a password)"
    return repr(masked)


def parse_limiter_url(url: object) -> LimiterUrl:
    """Check `url` and say which store it names. Raises InvalidInputError (never
    echoing a password) for anything else."""
    if not isinstance(url, str):
        raise InvalidInputError(f"the limiter URL must be a string; {_EXPECTED}")
    scheme, sep = url.partition("://")[:2]  # not the rest: it may hold a password
    scheme = scheme.lower()
    if not sep:
        raise InvalidInputError(f"not a limiter URL: {_shown(url)}; {_EXPECTED}")
    if scheme == "memory":
        if url.lower() not in ("memory://", "memory:///"):
            raise InvalidInputError(f"memory:// takes nothing after it; {_EXPECTED}")
        return LimiterUrl("memory", "")
    if scheme == "sqlite":
        parts = urlsplit(url)
        path = unquote(parts.path)
        if parts.netloc or not path.startswith("/"):
            raise InvalidInputError(
                f"a sqlite limiter URL names an absolute file path, as sqlite:///ABSOLUTE/"
                f"PATH (three slashes), got {_shown(url)}"
            )
        _check_sqlite_file(url, path, parts.fragment)
        return LimiterUrl("sqlite", os.path.normpath(path), _sqlite_options(url, parts.query))
    if scheme in REDIS_SCHEMES:
        return LimiterUrl("redis", url)
    raise InvalidInputError(f"unknown limiter store {scheme[:20]!r} in {_shown(url)}; {_EXPECTED}")


def limiter_from_url(
    url: str, *, redis_fallback_share: float | None = None, longest_hold: float = 0.0
) -> LimiterBackend:
    """A new limiter backend for `url` (see the module doc for the forms).

    `memory://` gives a new in-process LocalLimiterBackend (an OKXClient given
    `limiter_url="memory://"` shares its event loop's instead). `redis_fallback_share`
    applies to Redis URLs only. `longest_hold` (seconds, default 0): the longest a
    caller keeps a lease before releasing it; a sqlite or Redis store's `inflight_ttl`
    is raised above it (plus a margin) when its default is shorter. Raises
    InvalidInputError for a bad URL; ImportError for a Redis URL without the `redis`
    package installed. The caller closes it (`aclose()`).
    """
    kind, target, hold_new_file = parse_limiter_url(url)
    if kind == "memory":
        from ._memory import LocalLimiterBackend

        return LocalLimiterBackend()
    if kind == "sqlite":
        from ._sqlite import SqliteLimiterBackend

        ttl = max(SQLITE_INFLIGHT_TTL, longest_hold + LEASE_TTL_MARGIN)
        return SqliteLimiterBackend(target, hold_new_file=hold_new_file, inflight_ttl=ttl)
    from .._redis_limiter import RedisLimiterBackend

    ttl = max(REDIS_INFLIGHT_TTL, longest_hold + LEASE_TTL_MARGIN)
    return RedisLimiterBackend(target, fallback_share=redis_fallback_share, inflight_ttl=ttl)


def check_lease_ttl(backend: LimiterBackend, longest_hold: float) -> None:
    """InvalidInputError when `backend`'s leases (its `inflight_ttl`, if it has one)
    could lapse in the store while a request holding one may still land."""
    ttl = getattr(backend, "inflight_ttl", None)
    if isinstance(ttl, (int, float)) and ttl < longest_hold + LEASE_TTL_MARGIN:
        raise InvalidInputError(
            f"the limiter store's inflight_ttl ({ttl:g} s) must be at least request_timeout "
            f"+ landing_horizon + {LEASE_TTL_MARGIN:g} s ({longest_hold + LEASE_TTL_MARGIN:g} "
            "s): an unanswered request keeps its slot that long, and a lease that lapsed "
            "sooner would let another process take it; lower them or create the store with "
            "a larger inflight_ttl"
        )


def client_backend(
    *,
    limiter_url: str | None,
    redis_url: str | None,
    limiter: LimiterBackend | None,
    redis_fallback_share: float | None,
    longest_hold: float = 0.0,
) -> tuple[LimiterBackend | None, bool]:
    """OKXClient's store: (backend or None for the event loop's shared in-process one,
    whether the client owns it and closes it).

    `limiter` wins; else `limiter_url`, or its alias `redis_url` (passing both is an
    InvalidInputError); else OKX_ASYNC_LIMITER_URL, or its alias OKX_ASYNC_REDIS_URL.
    """
    if limiter_url is not None and redis_url is not None:
        raise InvalidInputError("pass limiter_url or its alias redis_url, not both")
    url = limiter_url if limiter_url is not None else redis_url
    if limiter is not None:
        check_lease_ttl(limiter, longest_hold)
        return limiter, False
    if url is None:
        return _backend_from_env(redis_fallback_share, longest_hold)
    if parse_limiter_url(url).kind == "memory":
        return None, False
    backend = limiter_from_url(
        url, redis_fallback_share=redis_fallback_share, longest_hold=longest_hold
    )
    return backend, True


def _backend_from_env(
    redis_fallback_share: float | None, longest_hold: float
) -> tuple[LimiterBackend | None, bool]:
    """`client_backend` for OKX_ASYNC_LIMITER_URL (or OKX_ASYNC_REDIS_URL); a bad value's
    error names the variable."""
    name = ENV_LIMITER_URL if os.environ.get(ENV_LIMITER_URL) else ENV_REDIS_URL
    url = os.environ.get(name)
    if not url:
        return None, False
    try:
        if parse_limiter_url(url).kind == "memory":
            return None, False
    except InvalidInputError as exc:
        raise InvalidInputError(f"{name}: {exc}") from None
    backend = limiter_from_url(
        url, redis_fallback_share=redis_fallback_share, longest_hold=longest_hold
    )
    return backend, True
