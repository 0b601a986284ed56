"""The exception tree, code mapping and messages."""

from __future__ import annotations

import asyncio
import copy
import multiprocessing
import pickle
import socket
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

import okx_async
from okx_async import (
    AccountModeError,
    APIError,
    AuthenticationError,
    ExchangeBusyError,
    NetworkError,
    OKXError,
    ParameterError,
    RateLimitedError,
    RequestTimeoutError,
    TimestampExpiredError,
    TransportError,
    UnexpectedResponseError,
)
from okx_async._errors import api_error_for
from okx_async._transport import Transport


@pytest.mark.parametrize(
    ("code", "status", "cls", "retryable"),
    [
        ("50011", 429, RateLimitedError, True),
        ("50011", 200, RateLimitedError, True),
        ("50001", 503, ExchangeBusyError, True),
        ("50004", 400, ExchangeBusyError, True),
        ("50013", 429, ExchangeBusyError, True),
        ("50026", 500, ExchangeBusyError, True),
        ("50040", 200, ExchangeBusyError, True),
        ("50100", 400, AuthenticationError, False),
        ("50101", 401, AuthenticationError, False),
        ("50102", 401, TimestampExpiredError, True),
        ("50103", 401, AuthenticationError, False),
        ("50107", 401, AuthenticationError, False),
        ("50110", 401, AuthenticationError, False),
        ("50111", 401, AuthenticationError, False),
        ("50113", 401, AuthenticationError, False),
        ("50114", 401, AuthenticationError, False),
        ("50119", 401, AuthenticationError, False),
        ("50120", 401, AuthenticationError, False),
        ("51000", 400, ParameterError, False),
        ("51010", 200, AccountModeError, False),
        ("59648", 200, AccountModeError, False),
        ("59651", 200, AccountModeError, False),
        ("59652", 200, AccountModeError, False),
        ("12345", 200, APIError, False),
        ("12345", 502, ExchangeBusyError, True),
    ],
)
def test_code_table(code: str, status: int, cls: type[APIError], retryable: bool) -> None:
    error = api_error_for(code=code, message="m", status=status, path="/p")
    assert type(error) is cls
    assert error.retryable is retryable
    assert (error.code, error.message, error.status, error.path) == (code, "m", status, "/p")


def test_api_error_reads_well() -> None:
    error = api_error_for(code="51010", message="Not portfolio margin", status=200, path="/x")
    assert str(error) == "OKX error 51010 on /x (HTTP 200): Not portfolio margin"
    assert "51010" in repr(error) and "AccountModeError" in repr(error)


def test_unexpected_response_keeps_status_and_preview() -> None:
    error = UnexpectedResponseError("HTML page", path="/p", status=502, body_preview="<html>")
    assert error.retryable
    assert "HTTP 502" in str(error) and "<html>" in str(error)
    assert not UnexpectedResponseError("x", path="/p", status=200, body_preview="").retryable


def test_every_error_is_an_okx_error_and_timeouts_are_timeout_errors() -> None:
    for name in okx_async._errors.__all__:
        obj = getattr(okx_async._errors, name)
        if isinstance(obj, type):
            assert issubclass(obj, OKXError), name
    assert issubclass(RequestTimeoutError, TimeoutError)
    assert issubclass(okx_async.DeadlineExceededError, TimeoutError)
    assert NetworkError.retryable and RequestTimeoutError.retryable


def test_tree_in_docstring_names_every_class() -> None:
    doc = okx_async._errors.__doc__ or ""
    for name in okx_async._errors.__all__:
        if isinstance(getattr(okx_async._errors, name), type):
            assert name in doc, name


def _one_of_each() -> list[OKXError]:
    """An instance of every exception class okx_async defines, with distinct fields."""
    made: list[OKXError] = []
    for name in okx_async._errors.__all__:
        cls = getattr(okx_async._errors, name)
        if not isinstance(cls, type):
            continue
        if issubclass(cls, APIError):
            made.append(cls(code="50013", message=f"{name} msg", status=503, path="/p/api"))
        elif issubclass(cls, UnexpectedResponseError):
            made.append(cls("HTML page", path="/p/u", status=502, body_preview="<html>"))
        elif issubclass(cls, TransportError):
            made.append(cls(f"{name} happened", path="/p/t"))
        else:
            made.append(cls(f"{name} happened"))
    return made


def _fields(error: BaseException) -> tuple[object, ...]:
    names = ("code", "message", "status", "path", "body_preview", "retryable")
    return (
        type(error),
        str(error),
        repr(error),
        error.args,
        *[getattr(error, n, None) for n in names],
    )


@pytest.mark.parametrize("error", _one_of_each(), ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("protocol", [0, pickle.HIGHEST_PROTOCOL])
def test_every_error_survives_pickle(error: OKXError, protocol: int) -> None:
    copied = pickle.loads(pickle.dumps(error, protocol=protocol))
    assert copied is not error
    assert _fields(copied) == _fields(error)


@pytest.mark.parametrize("error", _one_of_each(), ids=lambda e: type(e).__name__)
def test_every_error_survives_deepcopy(error: OKXError) -> None:
    copied = copy.deepcopy(error)
    assert copied is not error
    assert _fields(copied) == _fields(error)
    assert _fields(copy.copy(error)) == _fields(error)


def _send_to_a_closed_port(port: int) -> None:
    """Run in a worker process: a real request to a port nobody listens on."""

    async def main() -> None:
        transport = Transport(base_url=f"http://127.0.0.1:{port}", request_timeout=5.0)
        try:
            await transport.send("GET", "/api/v5/public/time", headers={})
        finally:
            await transport.aclose()

    asyncio.run(main())


def test_network_error_crosses_a_process_boundary() -> None:
    with socket.socket() as sock:  # bound, then closed: connecting is refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # spawn: a fresh interpreter, and no fork() of a process that runs threads.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(_send_to_a_closed_port, port)
        with pytest.raises(NetworkError) as info:
            future.result(timeout=60)
    assert type(info.value) is NetworkError
    assert info.value.path == "/api/v5/public/time"
    assert "connection to OKX failed" in str(info.value) and not info.value.args[1:]


def test_readme_tree_names_every_class() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    tree = readme.split("## Errors", 1)[1].split("```", 2)[1]
    for name in okx_async._errors.__all__:
        if isinstance(getattr(okx_async._errors, name), type):
            assert name in tree, name
