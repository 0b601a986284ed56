"""Named credential sets: `[profiles.NAME]` tables in a TOML file, overlaid by env vars.

Precedence per field, lowest first: the config file, then (profile `default` only) the
plain OKX_API_KEY / OKX_SECRET_KEY / OKX_PASSPHRASE / OKX_BASE_URL / OKX_DEMO that
`OKXClient.from_env()` reads, then OKX_PROFILE_<NAME>_<FIELD>. Secrets never appear in
a repr, an error message or any output.
"""

from __future__ import annotations

import importlib
import os
import re
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from okx_async import InvalidInputError, LimiterBackend, OKXClient, env_flag

__all__ = [
    "ConfigError",
    "Profile",
    "ProfileStore",
    "cli_text",
    "default_config_path",
    "env_name",
    "load_profiles",
]

SECRET_FIELDS = ("api_key", "secret_key", "passphrase")
OPTIONAL_FIELDS = ("demo", "base_url", "user_id", "proxy")
_ENV_FIELDS = {f.upper(): f for f in (*SECRET_FIELDS, *OPTIONAL_FIELDS)}
_ENV_PROFILE = re.compile(r"OKX_PROFILE_(?P<name>.+)_(?P<field>" + "|".join(_ENV_FIELDS) + ")")
_PLAIN_ENV = {
    "OKX_API_KEY": "api_key",
    "OKX_SECRET_KEY": "secret_key",
    "OKX_PASSPHRASE": "passphrase",
    "OKX_BASE_URL": "base_url",
    "OKX_DEMO": "demo",
}


class ConfigError(Exception):
    """A config file or profile problem; the message never contains a secret."""


@dataclass(frozen=True)
class Profile:
    """One credential set. `repr` shows no secret."""

    name: str
    api_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    passphrase: str = field(repr=False)
    demo: bool = False
    base_url: str | None = None
    user_id: str | None = None
    source: str = ""
    limiter: LimiterBackend | None = field(default=None, repr=False, compare=False)
    proxy: str | None = field(default=None, repr=False)  # may carry proxy credentials

    def client(self, **kwargs: Any) -> OKXClient:
        """A new OKXClient for this profile (the caller closes it)."""
        if self.base_url is not None:
            kwargs.setdefault("base_url", self.base_url)
        if self.limiter is not None:  # one store for every client of the run
            kwargs.setdefault("limiter", self.limiter)
        if self.proxy is not None:
            kwargs.setdefault("proxy", self.proxy)
        return OKXClient(
            api_key=self.api_key,
            secret_key=self.secret_key,
            passphrase=self.passphrase,
            demo=self.demo,
            user_id=self.user_id,
            **kwargs,
        )

    def secrets(self) -> tuple[str, str, str]:
        return (self.api_key, self.secret_key, self.passphrase)


# The library's way out of plain http is a Python argument the command line does not have.
_PYTHON_ONLY_ADVICE = re.compile(r" \(or pass allow_insecure_http=True[^)]*\)")


def cli_text(exc: BaseException) -> str:
    """An error's text with advice that only a Python caller could follow replaced."""
    return _PYTHON_ONLY_ADVICE.sub(
        " (plain http is accepted only to this computer, e.g. the local simulator)", str(exc)
    )


def env_name(profile: str) -> str:
    """The NAME part of OKX_PROFILE_<NAME>_...: upper case, other characters as `_`."""
    return re.sub(r"[^A-Z0-9]", "_", profile.upper())


@dataclass
class ProfileStore:
    """Profile fields by name from the file and from the environment."""

    path: Path | None = None
    # repr=False: they hold secrets, and reporters print the repr of a traceback's locals.
    file_fields: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    env_fields: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)  # by env_name
    # `limiter_url` at the top of the file; repr=False: a Redis URL may carry a password.
    limiter_url: str | None = field(default=None, repr=False)
    limiter: LimiterBackend | None = None  # given to every profile resolved
    limiter_error: str | None = None  # why no limiter could be opened: resolve() refuses
    proxy: str | None = None  # --proxy: wins over every profile's own

    def names(self) -> list[str]:
        """Known profile names (file spelling; env-only profiles in lower case)."""
        known = list(self.file_fields)
        taken = {env_name(n) for n in known}
        known += [n.lower() for n in self.env_fields if n not in taken]
        return sorted(known)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (
            name in self.file_fields or env_name(name) in self.env_fields
        )

    def resolve(self, name: str) -> Profile:
        """The complete profile `name`, or ConfigError saying what is missing
        (InvalidInputError when the limiter URL is bad)."""
        if self.limiter_error is not None:
            raise InvalidInputError(self.limiter_error)
        if name not in self:
            known = ", ".join(self.names()) or "none"
            raise ConfigError(f"unknown profile {name!r} (known profiles: {known})")
        merged = {**self.file_fields.get(name, {}), **self.env_fields.get(env_name(name), {})}
        if self.proxy is not None:
            merged["proxy"] = self.proxy
        missing = [f for f in SECRET_FIELDS if not merged.get(f)]
        if missing:
            where = f" or to [profiles.{name}] in {self.path}" if self.path else ""
            if name == "default":  # the plain variables OKXClient.from_env() reads too
                plain = {f: var for var, f in _PLAIN_ENV.items()}
                hints = ", ".join(plain[f] for f in missing)
            else:
                hints = ", ".join(f"OKX_PROFILE_{env_name(name)}_{f.upper()}" for f in missing)
            raise ConfigError(
                f"profile {name!r} has no {', '.join(missing)}: add {hints} to the "
                f"environment{where}"
            )
        sources = []
        if name in self.file_fields:
            sources.append(str(self.path) if self.path else "the program")
        if env_name(name) in self.env_fields:
            sources.append("environment")
        return Profile(name=name, source=" + ".join(sources), limiter=self.limiter, **merged)

    def all_secrets(self) -> set[str]:
        """Every key, secret and passphrase known, complete profile or not."""
        tables = [*self.file_fields.values(), *self.env_fields.values()]
        return {t[f] for t in tables for f in SECRET_FIELDS if isinstance(t.get(f), str)}

    def add(self, profile: Profile) -> None:
        """Register a complete profile directly (the demo uses this)."""
        self.file_fields[profile.name] = {
            "api_key": profile.api_key,
            "secret_key": profile.secret_key,
            "passphrase": profile.passphrase,
            "demo": profile.demo,
            "base_url": profile.base_url,
            "user_id": profile.user_id,
            "proxy": profile.proxy,
        }


def default_config_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "okx-async" / "config.toml"


def load_profiles(
    path: Path | None,
    *,
    env: Mapping[str, str],
    warn: Callable[[str], None],
) -> ProfileStore:
    """Profiles from `path` (None: the default path, which may be absent) and `env`."""
    explicit = path is not None
    path = path if path is not None else default_config_path(env)
    store = ProfileStore()
    if explicit or path.exists():
        store.path = path
        store.file_fields, store.limiter_url = _read_file(path, warn)
    for name, value in env.items():
        match = _ENV_PROFILE.fullmatch(name)
        if match and value:
            fields = store.env_fields.setdefault(match["name"], {})
            fields[_ENV_FIELDS[match["field"]]] = _env_value(name, match["field"], value)
    plain = {
        f: _env_value(var, f.upper(), env[var]) for var, f in _PLAIN_ENV.items() if env.get(var)
    }
    if plain:
        default = store.env_fields.setdefault("DEFAULT", {})
        store.env_fields["DEFAULT"] = {**plain, **default}
    return store


def _env_value(var: str, field_name: str, value: str) -> Any:
    if field_name == "DEMO":
        try:
            return env_flag(var, value)  # read exactly as OKXClient.from_env reads it
        except InvalidInputError as exc:
            raise ConfigError(str(exc)) from None
    if field_name == "USER_ID" and not value.isdigit():
        raise ConfigError(f"{var} must be OKX's numeric User ID")
    return value


def _read_file(
    path: Path, warn: Callable[[str], None]
) -> tuple[dict[str, dict[str, Any]], str | None]:
    try:
        mode = path.stat().st_mode
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if os.name == "posix" and stat.S_IMODE(mode) & 0o077:
        warn(
            f"warning: config file {path} is readable by group/others "
            f"(mode {stat.S_IMODE(mode):o}); it holds secrets: run chmod 600 {path}"
        )
    # tomllib is in the standard library from 3.11; tomli is the same code for 3.10.
    toml = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")
    try:
        data = toml.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, toml.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError(f"config file {path}: `profiles` must be a table of [profiles.NAME]")
    limiter_url = data.get("limiter_url")
    if limiter_url is not None and not isinstance(limiter_url, str):
        raise ConfigError(f"config file {path}: limiter_url must be a string")
    tables = {name: _check_table(path, name, table) for name, table in profiles.items()}
    return tables, limiter_url


def _check_table(path: Path, name: str, table: object) -> dict[str, Any]:
    where = f"config file {path}, [profiles.{name}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - {*SECRET_FIELDS, *OPTIONAL_FIELDS})
    if unknown:
        allowed = ", ".join((*SECRET_FIELDS, *OPTIONAL_FIELDS))
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {allowed})")
    for key in (*SECRET_FIELDS, "base_url", "proxy"):
        if key in table and not isinstance(table[key], str):
            raise ConfigError(f"{where}: {key} must be a string")
    if "demo" in table and not isinstance(table["demo"], bool):
        raise ConfigError(f"{where}: demo must be true or false")
    if "user_id" in table:
        uid = table["user_id"]
        if isinstance(uid, int) and not isinstance(uid, bool):
            uid = str(uid)
        if not isinstance(uid, str) or not uid.isdigit():
            raise ConfigError(f"{where}: user_id must be OKX's numeric User ID")
        table = {**table, "user_id": uid}
    return dict(table)
