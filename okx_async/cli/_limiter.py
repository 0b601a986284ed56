"""Which limiter store the CLI uses.

By default a sqlite file in the user's state directory, so `okx-async` runs back to back
or side by side share each user's budget instead of each starting with a full burst.
Precedence: --limiter-url, then OKX_ASYNC_LIMITER_URL (or its alias OKX_ASYNC_REDIS_URL),
then `limiter_url` at the top of the config file, then the default file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from okx_async import (
    InvalidInputError,
    LimiterBackend,
    SqliteLimiterBackend,
    limiter_from_url,
)

__all__ = ["default_limiter_path", "open_limiter"]

ENV_LIMITER_URL = "OKX_ASYNC_LIMITER_URL"
ENV_REDIS_URL = "OKX_ASYNC_REDIS_URL"


def default_limiter_path(env: Mapping[str, str]) -> Path:
    """$XDG_STATE_HOME/okx-async/limits.db, else ~/.local/state/okx-async/limits.db
    (a relative XDG_STATE_HOME is ignored, as other XDG-aware programs ignore it)."""
    base = env.get("XDG_STATE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    return root / "okx-async" / "limits.db"


_ELSEWHERE = f"pass --limiter-url or set {ENV_LIMITER_URL}"


def _check_folder(url: str, path: str) -> None:
    """InvalidInputError unless the sqlite file's directory exists: sqlite would say only
    "unable to open database file", and only when the first request waits for a slot."""
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        # sqlite:////dir/x.db (four slashes) names /dir/x.db; normpath keeps the "//".
        folder = folder[1:] if folder.startswith("//") else folder
        raise InvalidInputError(
            f"the limiter URL {url} names a file in {folder}, which does not exist: create "
            f"the directory (mkdir -p {folder}) or pass another --limiter-url"
        )
    _check_writable(path, f"the limiter file {path}", "pass another --limiter-url")


def _check_writable(path: str, what: str, instead: str) -> None:
    """InvalidInputError unless this user may write `path` (or create it in its
    directory): sqlite would fail only at the first request, without saying why."""
    target = path if os.path.exists(path) else os.path.dirname(path)
    if not os.access(target, os.W_OK):
        raise InvalidInputError(
            f"{what} cannot be written ({target} is not writable by this user): "
            f"{instead}, or make {target} writable"
        )


def _source(flag: str | None, env: Mapping[str, str]) -> str:
    """The environment variable the URL came from, if it came from one."""
    if flag:
        return ""
    return (
        ENV_LIMITER_URL
        if env.get(ENV_LIMITER_URL)
        else ENV_REDIS_URL
        if env.get(ENV_REDIS_URL)
        else ""
    )


def open_limiter(flag: str | None, env: Mapping[str, str], file_url: str | None) -> LimiterBackend:
    """The store for this run (the caller closes it). Raises InvalidInputError for a bad
    URL, or a sqlite file (the default one included) that cannot be created or written."""
    url = flag or env.get(ENV_LIMITER_URL) or env.get(ENV_REDIS_URL) or file_url
    if url:
        try:
            backend = limiter_from_url(url)
        except InvalidInputError as exc:
            source = _source(flag, env)
            raise InvalidInputError(f"{source}: {exc}" if source else str(exc)) from None
        if isinstance(backend, SqliteLimiterBackend):
            _check_folder(url, backend.path)
        return backend
    path = default_limiter_path(env)
    try:
        # 0700: the file names the users whose budgets it holds.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(
            f"the default limiter file {path} cannot be created ({exc.strerror}: "
            f"{exc.filename or path.parent}): {_ELSEWHERE}, or make {path.parent.parent} "
            "writable"
        ) from None
    _check_writable(str(path), f"the default limiter file {path}", _ELSEWHERE)
    return SqliteLimiterBackend(path)
