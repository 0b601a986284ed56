"""The transport translates every odd answer into a typed error (aioresponses unit tests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aioresponses import aioresponses

from okx_async import (
    ExchangeBusyError,
    InvalidInputError,
    NetworkError,
    RateLimitedError,
    RequestTimeoutError,
    UnexpectedResponseError,
)
from okx_async._transport import MAX_RESPONSE_BYTES, Transport, check_base_url

BASE = "https://www.okx.com"
PATH = "/api/v5/account/set-riskOffset-amt"
URL = BASE + PATH


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    t = Transport(base_url=BASE, request_timeout=2.0)
    yield t
    await t.aclose()


async def send(t: Transport) -> list[object]:
    return await t.send("POST", PATH, body=b"{}", headers={"Content-Type": "application/json"})


async def test_success_returns_data(transport: Transport) -> None:
    with aioresponses() as mocked:
        mocked.post(URL, payload={"code": "0", "msg": "", "data": [{"ccy": "BTC"}]})
        assert await send(transport) == [{"ccy": "BTC"}]


@pytest.mark.parametrize(
    ("status", "body", "content_type", "reason"),
    [
        (502, "<html><body>Bad Gateway</body></html>", "text/html", "HTML page"),
        (500, "Internal Server Error", "text/plain", "non-JSON"),
        (200, "", "application/json", "empty response"),
        (200, '{"code": "0", "data": [', "application/json", "non-JSON"),
        (200, '{"msg": "no code"}', "application/json", "without OKX's 'code'"),
        (200, "[1, 2]", "application/json", "without OKX's 'code'"),
        (200, '{"code": "0", "data": {"ccy": "BTC"}}', "application/json", "'data' is not a list"),
        (200, '{"code": null}', "application/json", "without OKX's 'code'"),
    ],
)
async def test_non_okx_answers(
    transport: Transport, status: int, body: str, content_type: str, reason: str
) -> None:
    with aioresponses() as mocked:
        mocked.post(URL, status=status, body=body, content_type=content_type)
        with pytest.raises(UnexpectedResponseError, match=reason) as info:
            await send(transport)
    assert info.value.status == status
    assert info.value.path == PATH
    assert info.value.body_preview == body[:200]
    assert info.value.retryable is (status >= 500)


async def test_preview_is_cut_to_200_characters(transport: Transport) -> None:
    with aioresponses() as mocked:
        mocked.post(URL, status=502, body="<html>" + "x" * 5000, content_type="text/html")
        with pytest.raises(UnexpectedResponseError) as info:
            await send(transport)
    assert len(info.value.body_preview) == 200


async def test_huge_body_is_refused_by_a_real_server() -> None:
    # aioresponses' fake protocol cannot stream a large body, so a real app on port 0.
    async def huge(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * (MAX_RESPONSE_BYTES * 3), content_type="text/plain")

    app = web.Application()
    app.router.add_post(PATH, huge)
    async with TestServer(app, host="127.0.0.1") as server:
        t = Transport(base_url=str(server.make_url("")).rstrip("/"))
        try:
            with pytest.raises(UnexpectedResponseError, match="larger than 1 MiB") as info:
                await send(t)
        finally:
            await t.aclose()
    assert info.value.status == 200 and len(info.value.body_preview) == 200


async def test_rate_limit_with_http_200_and_integer_code(transport: Transport) -> None:
    with aioresponses() as mocked:
        mocked.post(URL, status=200, payload={"code": 50011, "msg": "Too Many Requests"})
        with pytest.raises(RateLimitedError) as info:
            await send(transport)
    assert info.value.code == "50011" and info.value.status == 200


async def test_busy_code_is_typed(transport: Transport) -> None:
    with aioresponses() as mocked:
        mocked.post(URL, status=429, payload={"code": "50013", "msg": "Systems busy", "data": []})
        with pytest.raises(ExchangeBusyError, match="Systems busy"):
            await send(transport)


@pytest.mark.parametrize(
    ("exception", "expected"),
    [
        (aiohttp.ServerDisconnectedError(), NetworkError),
        (aiohttp.ClientConnectionError("refused"), NetworkError),
        (aiohttp.ClientPayloadError("cut"), NetworkError),
        (asyncio.TimeoutError(), RequestTimeoutError),
        (aiohttp.ServerTimeoutError(), RequestTimeoutError),
    ],
)
async def test_backend_errors_are_translated(
    transport: Transport, exception: Exception, expected: type[Exception]
) -> None:
    with aioresponses() as mocked:
        mocked.post(URL, exception=exception)
        with pytest.raises(expected) as info:
            await send(transport)
    assert info.value.__cause__ is exception
    assert info.value.path == PATH  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://www.okx.com", True),
        ("https://www.okx.com/", True),
        ("http://127.0.0.1:8080", True),
        ("http://localhost:1", True),
        ("http://[::1]:8080", True),
        ("http://example.com", False),
        ("http://10.0.0.1", False),
        ("ftp://www.okx.com", False),
        ("https://www.okx.com/api", False),
        ("https://user:pw@www.okx.com", False),
        ("www.okx.com", False),
    ],
)
def test_base_url_rules(url: str, ok: bool) -> None:
    if ok:
        assert check_base_url(url) == url.rstrip("/")
    else:
        with pytest.raises(InvalidInputError):
            check_base_url(url)


def test_insecure_http_must_be_asked_for() -> None:
    assert check_base_url("http://example.com", allow_insecure_http=True) == "http://example.com"
