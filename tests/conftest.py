"""Shared test set-up."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import BuiltinFunctionType, FrameType, FunctionType, ModuleType
from typing import Any

import pytest

from okx_async import Credentials, OKXClient, OKXError
from okx_async._auth import RequestHeaders

# Which event loop pytest-asyncio runs the async tests on: OKX_ASYNC_TEST_LOOP=uvloop (.ci/run
# runs the suite once so) or "asyncio" (the default). Tests that make their own loop
# (tests/virtual_time.py, asyncio.run in a sync test) keep asyncio's. pytest-asyncio 1.4+
# takes loop factories from this hook (overriding the event_loop_policy fixture is
# deprecated there); it is only defined when it has something to return, because an
# implementation that returns nothing is a usage error.
TEST_LOOP = os.environ.get("OKX_ASYNC_TEST_LOOP", "asyncio")
if TEST_LOOP == "uvloop":

    @pytest.hookimpl(optionalhook=True)
    def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Any:
        import uvloop

        return {"uvloop": uvloop.new_event_loop}

elif TEST_LOOP != "asyncio":
    raise pytest.UsageError(f"OKX_ASYNC_TEST_LOOP={TEST_LOOP!r}: expected 'asyncio' or 'uvloop'")


def pytest_configure(config: pytest.Config) -> None:
    # No test reads or writes the machine user's state directory (the CLI's default
    # limiter file lives there): a file another version of the library wrote, or one
    # still holding a window from the last run, would make results depend on the
    # machine. Child processes inherit the variable.
    state = tempfile.mkdtemp(prefix="okx-async-test-state-")
    os.environ["XDG_STATE_HOME"] = state
    config.add_cleanup(lambda: shutil.rmtree(state, ignore_errors=True))


_TESTS_DIR = str(Path(__file__).resolve().parent)
_SCALARS = (int, float, bool, type(None), complex)


def _exception_graph(error: BaseException) -> Iterator[BaseException]:
    """The error and every exception reachable through __cause__, __context__ (whether
    or not suppressed by `from None`) and exception groups."""
    seen: set[int] = set()
    stack = [error]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack += [e for e in (current.__cause__, current.__context__) if e is not None]
        stack += list(getattr(current, "exceptions", ()))


def _attribute_texts(root: object, *, depth: int = 5, budget: int = 20_000) -> list[str]:
    """Every str (and bytes) reachable from `root` through attributes, slots, mappings
    and sequences: what a reporter that serialises an exception's attributes could see.
    Also the repr of each object on the way."""
    texts: list[str] = []
    seen: set[int] = set()
    stack: list[tuple[object, int]] = [(root, 0)]
    while stack and len(seen) < budget:
        obj, level = stack.pop()
        if id(obj) in seen or isinstance(obj, _SCALARS):
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            texts.append(obj)
            continue
        if isinstance(obj, (bytes, bytearray)):
            texts.append(bytes(obj).decode("utf-8", "replace"))
            continue
        if isinstance(obj, (type, ModuleType, FunctionType, BuiltinFunctionType, FrameType)):
            continue
        with contextlib.suppress(Exception):  # a half-built object: still walk its parts
            texts.append(repr(obj))
        if level >= depth:
            continue
        children: list[object] = []
        if isinstance(obj, Mapping):
            children += [*obj.keys(), *obj.values()]
        elif isinstance(obj, (list, tuple, set, frozenset)):
            children += list(obj)
        if isinstance(obj, BaseException):
            children += list(obj.args)
        children += list(getattr(obj, "__dict__", {}).values())
        for cls in type(obj).__mro__:
            for name in cls.__dict__.get("__slots__", ()):
                with contextlib.suppress(Exception):
                    children.append(getattr(obj, name))
        stack += [(child, level + 1) for child in children]
    return texts


def frame_local_texts(error: BaseException) -> list[str]:
    """The locals of every frame in the error's traceback as a reporter that captures
    locals prints them (repr, as `TracebackException(..., capture_locals=True)`), except
    frames of the tests themselves."""
    texts = []
    for frame, _ in traceback.walk_tb(error.__traceback__):
        filename = frame.f_code.co_filename
        if filename.startswith(_TESTS_DIR):
            continue
        for name, value in frame.f_locals.items():
            try:
                shown = repr(value)
            except Exception as exc:  # Python 3.11's traceback would crash here instead
                shown = f"<repr raised {type(exc).__name__}>"
            texts.append(f"{filename}:{frame.f_code.co_name}: {name}={shown}")
    return texts


def exception_texts(error: BaseException) -> list[str]:
    """Everything of `error` a person or a reporter could see: str and repr, attributes
    (recursively), the whole cause/context graph, and the locals of every frame."""
    texts: list[str] = []
    for current in _exception_graph(error):
        texts.append(f"{current}{current!r}")
        texts += _attribute_texts(current)
        texts += frame_local_texts(current)
    return texts


@pytest.fixture(autouse=True)
def no_secret_in_any_log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Across every test's scenario: no secret key, passphrase or signature made during
    the test appears in any log record (okx_async, aiohttp, asyncio, at DEBUG), in any
    okx_async exception created (`exception_texts`: str, repr, attributes, the whole
    cause/context graph and its frames' locals), or in the repr of any client or its
    stats."""
    secrets: set[str] = set()
    errors: list[OKXError] = []
    clients: list[OKXClient] = []
    original_init = Credentials.__init__
    original_headers = Credentials.request_headers  # every signature is made here
    original_client_init = OKXClient.__init__

    def init(self: Credentials, **kwargs: str) -> None:
        secrets.update(v for k, v in kwargs.items() if k != "api_key" and isinstance(v, str))
        try:
            original_init(self, **kwargs)
        finally:
            kwargs.clear()

    def headers(self: Credentials, *args: Any) -> RequestHeaders:
        made = original_headers(self, *args)
        secrets.add(dict(made)["OK-ACCESS-SIGN"])
        return made

    def error_init(self: OKXError, *args: Any) -> None:
        Exception.__init__(self, *args)
        errors.append(self)

    def client_init(self: OKXClient, **kwargs: Any) -> None:
        try:
            original_client_init(self, **kwargs)
        finally:
            kwargs.clear()
        clients.append(self)

    monkeypatch.setattr(Credentials, "__init__", init)
    monkeypatch.setattr(Credentials, "request_headers", headers)
    monkeypatch.setattr(OKXError, "__init__", error_init)
    monkeypatch.setattr(OKXClient, "__init__", client_init)
    caplog.set_level(logging.DEBUG)
    yield
    texts = [r.getMessage() + str(r.exc_info or "") for r in caplog.records]
    for error in errors:
        texts += exception_texts(error)
    texts += [f"{c!r}{c.stats()!r}" for c in clients]
    leaked = [s for s in secrets if len(s) >= 4 and any(s in t for t in texts)]
    if leaked:
        where = [t[:300] for t in texts if any(s in t for s in leaked)]
        pytest.fail(
            f"a secret appeared in a log record, an exception or a repr: {len(where)} "
            f"place(s), e.g. {where[0].replace(leaked[0], '<SECRET>')!r}"
        )


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An environment of the test's own for the CLI: no OKX_* variable of the machine's,
    and config and state directories under tmp_path (no real config file, a fresh
    limiter file)."""
    for name in list(os.environ):
        if name.startswith("OKX_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    # A fresh file with no history: not held one window (as a new file is by default).
    monkeypatch.setenv(
        "OKX_ASYNC_LIMITER_URL", f"sqlite://{tmp_path}/limits.db?hold_new_file=false"
    )
