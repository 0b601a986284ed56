"""The exception tree, code mapping and messages."""

from __future__ import annotations

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
    UnexpectedResponseError,
)
from okx_async._errors import api_error_for


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
