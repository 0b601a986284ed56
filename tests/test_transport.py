"""The transport translates every odd answer into a typed error, each produced by a real
server on 127.0.0.1, port 0: an aiohttp app for odd HTTP answers, raw sockets for broken
connections."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import ssl
import traceback
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import exception_texts

from okx_async import (
    ClientClosedError,
    Credentials,
    ExchangeBusyError,
    InvalidInputError,
    NetworkError,
    OKXClient,
    RateLimitedError,
    RequestTimeoutError,
    RetryPolicy,
    TLSError,
    TransportError,
    UnexpectedResponseError,
)
from okx_async._auth import RequestHeaders
from okx_async._pool import LoopPools, NetworkSettings, Pool
from okx_async._shared import for_loop
from okx_async._transport import MAX_RESPONSE_BYTES, Transport, _translate, check_base_url
from okx_async._urls import has_url_credentials, mask_credentials_in_text, mask_url_credentials

PATH = "/api/v5/account/set-riskOffset-amt"


class Answering:
    """A real HTTP server answering every POST to PATH with one configurable response.

    `answer(...)` sets status, body (bytes or str) and Content-Type; `json(...)` a JSON
    body. `requests` counts the requests that reached it; `base_url` is its
    `http://127.0.0.1:port` (plain http is allowed to loopback)."""

    __slots__ = ("base_url", "body", "content_type", "requests", "status")

    def __init__(self) -> None:
        self.base_url = ""
        self.requests = 0
        self.answer(status=200, body="", content_type="application/json")

    def answer(self, *, status: int, body: bytes | str, content_type: str) -> None:
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type

    def json(self, payload: object, *, status: int = 200) -> None:
        self.answer(status=status, body=orjson.dumps(payload), content_type="application/json")

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests += 1
        return web.Response(
            status=self.status, body=self.body, headers={"Content-Type": self.content_type}
        )

    def __repr__(self) -> str:
        return (
            f"Answering(base_url={self.base_url!r}, status={self.status}, requests={self.requests})"
        )


@pytest.fixture
async def okx() -> AsyncIterator[Answering]:
    answering = Answering()
    app = web.Application()
    app.router.add_post(PATH, answering.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        answering.base_url = str(server.make_url("")).rstrip("/")
        yield answering


@pytest.fixture
async def transport(okx: Answering) -> AsyncIterator[Transport]:
    t = Transport(base_url=okx.base_url, request_timeout=2.0)
    yield t
    await t.aclose()


async def send(t: Transport) -> list[object]:
    return await t.send("POST", PATH, body=b"{}", headers={"Content-Type": "application/json"})


async def test_success_returns_data(okx: Answering, transport: Transport) -> None:
    okx.json({"code": "0", "msg": "", "data": [{"ccy": "BTC"}]})
    assert await send(transport) == [{"ccy": "BTC"}]
    assert okx.requests == 1


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
    okx: Answering, transport: Transport, status: int, body: str, content_type: str, reason: str
) -> None:
    okx.answer(status=status, body=body, content_type=content_type)
    with pytest.raises(UnexpectedResponseError, match=reason) as info:
        await send(transport)
    assert info.value.status == status
    assert info.value.path == PATH
    assert info.value.body_preview == body[:200]
    assert info.value.retryable is (status >= 500)


async def test_preview_is_cut_to_200_characters(okx: Answering, transport: Transport) -> None:
    okx.answer(status=502, body="<html>" + "x" * 5000, content_type="text/html")
    with pytest.raises(UnexpectedResponseError) as info:
        await send(transport)
    assert info.value.body_preview == ("<html>" + "x" * 5000)[:200]


async def test_huge_body_is_refused(okx: Answering, transport: Transport) -> None:
    okx.answer(status=200, body=b"x" * (MAX_RESPONSE_BYTES * 3), content_type="text/plain")
    with pytest.raises(UnexpectedResponseError, match="larger than 1 MiB") as info:
        await send(transport)
    assert info.value.status == 200 and len(info.value.body_preview) == 200


async def test_rate_limit_with_http_200_and_integer_code(
    okx: Answering, transport: Transport
) -> None:
    okx.json({"code": 50011, "msg": "Too Many Requests"}, status=200)
    with pytest.raises(RateLimitedError) as info:
        await send(transport)
    assert info.value.code == "50011" and info.value.status == 200


async def test_busy_code_is_typed(okx: Answering, transport: Transport) -> None:
    okx.json({"code": "50013", "msg": "Systems busy", "data": []}, status=429)
    with pytest.raises(ExchangeBusyError, match="Systems busy"):
        await send(transport)


# -- where the pool comes from ------------------------------------------------------------


async def test_the_transport_takes_its_pools_from_what_it_is_given(okx: Answering) -> None:
    """`pools=` decides the pool; the transport asks once per loop and gives it back."""
    given = LoopPools()
    asked: list[tuple[asyncio.AbstractEventLoop, NetworkSettings]] = []

    async def pools(loop: asyncio.AbstractEventLoop, settings: NetworkSettings) -> Pool:
        asked.append((loop, settings))
        return await given.acquire(loop, settings)

    first = Transport(base_url=okx.base_url, pools=pools)
    second = Transport(base_url=okx.base_url, pools=pools)
    okx.json({"code": "0", "msg": "", "data": []})
    assert await send(first) == [] and await send(first) == []
    assert await send(second) == []
    assert okx.requests == 3
    assert [loop for loop, _ in asked] == [asyncio.get_running_loop()] * 2
    (pool,) = given.pools.values()
    assert pool.users == 2 and "users=2" in repr(pool)
    await first.aclose()
    assert not pool.closed and pool.users == 1
    await second.aclose()  # the last user closes it, and it leaves its owner
    assert pool.closed and pool.session.closed and not given.pools


async def test_without_pools_a_transport_has_its_own_pool(okx: Answering) -> None:
    first = Transport(base_url=okx.base_url)
    second = Transport(base_url=okx.base_url)
    okx.json({"code": "0", "msg": "", "data": []})
    try:
        await send(first), await send(second)
        # The owner of an own pool is referenced by nothing but the pool: were it
        # collected, its keeper would close the pool under the transport.
        gc.collect()
        for _ in range(3):
            await asyncio.sleep(0)
        await send(first), await send(second)
        assert okx.requests == 4
        sessions = [t._bound[1] for t in (first, second) if t._bound is not None]
        assert len(sessions) == 2 and sessions[0] is not sessions[1]
        assert not any(session.closed for session in sessions)
        # Nothing of the loop's shared pools: those are the clients' (`_shared`).
        assert not for_loop(asyncio.get_running_loop()).pools.pools
    finally:
        await first.aclose()
        await second.aclose()
    assert all(session.closed for session in sessions)


# -- broken connections, each made for real -------------------------------------------------

_CUT = (  # announces 100 bytes of body, sends 10, hangs up
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"code":"0'
)


@contextlib.asynccontextmanager
async def _serving(answer_for: Callable[[bytes], bytes | None]) -> AsyncIterator[str]:
    connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
    server = await _raw_server(answer_for, connections)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        # Hang up on whoever is still waiting, and let each handler end by itself: a
        # handler left to the loop's teardown is cancelled, and asyncio logs that.
        for writer in connections.values():
            writer.close()
        await asyncio.gather(*connections)
        await server.wait_closed()


def _disconnecting() -> contextlib.AbstractAsyncContextManager[str]:
    return _serving(lambda request_line: b"")  # reads the request, hangs up unanswered


def _cutting() -> contextlib.AbstractAsyncContextManager[str]:
    return _serving(lambda request_line: _CUT)


def _silent() -> contextlib.AbstractAsyncContextManager[str]:
    return _serving(lambda request_line: None)  # reads the request, never answers


@contextlib.asynccontextmanager
async def _refusing() -> AsyncIterator[str]:
    """A loopback port bound but not listening: the kernel refuses every connection, and
    no other program can take the port while the test runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextlib.asynccontextmanager
async def _not_accepting() -> AsyncIterator[str]:
    """A listening port whose accept queue is full (backlog 0, one connection never
    accepted): Linux drops further SYNs, so a connect hangs until its timeout."""
    with socket.socket() as listener, socket.socket() as waiting:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        waiting.connect(listener.getsockname())  # on loopback, done within the call
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


async def _aiohttp_error(base_url: str, timeout: aiohttp.ClientTimeout) -> BaseException:
    """What plain aiohttp raises for one POST to `base_url`: proves which case a row's
    server makes."""
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            async with session.post(base_url + PATH, data=b"{}") as response:
                await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return exc
    raise AssertionError(f"{base_url} answered")


_Scenario = Callable[[], contextlib.AbstractAsyncContextManager[str]]


@pytest.mark.parametrize(
    ("scenario", "options", "aiohttp_error", "expected"),
    [
        (_disconnecting, {}, aiohttp.ServerDisconnectedError, NetworkError),
        (_refusing, {}, aiohttp.ClientConnectorError, NetworkError),
        (_cutting, {}, aiohttp.ClientPayloadError, NetworkError),
        # The total timeout while waiting for the answer: plain asyncio.TimeoutError.
        (_silent, {"request_timeout": 0.2}, asyncio.TimeoutError, RequestTimeoutError),
        # The connect timeout: aiohttp's ServerTimeoutError (ConnectionTimeoutError). The
        # transport sets no sock_read, so this is where aiohttp's own timeout error arises.
        (_not_accepting, {"connect_timeout": 0.1}, aiohttp.ServerTimeoutError, RequestTimeoutError),
    ],
    ids=["disconnected", "refused", "cut", "no-answer", "no-connection"],
)
async def test_backend_errors_are_translated(
    scenario: _Scenario,
    options: dict[str, float],
    aiohttp_error: type[BaseException],
    expected: type[TransportError],
) -> None:
    timeout = aiohttp.ClientTimeout(
        total=options.get("request_timeout", 2.0), sock_connect=options.get("connect_timeout")
    )
    async with scenario() as base_url:
        t = Transport(base_url=base_url, **options)
        try:
            with pytest.raises(expected) as info:
                await send(t)
        finally:
            await t.aclose()
        # After the transport's turn: on Python 3.10 an exception caught in a task can
        # become the __context__ of the task's next raise.
        raw = await _aiohttp_error(base_url, timeout)
    assert isinstance(raw, aiohttp_error), repr(raw)
    if aiohttp_error is asyncio.TimeoutError:
        assert not isinstance(raw, aiohttp.ClientError), repr(raw)
    # Described, not chained: aiohttp's errors hold the request headers (see test_secrets).
    assert type(info.value) is expected
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert info.value.retryable is True
    if isinstance(info.value, NetworkError):
        assert aiohttp_error.__name__ in str(info.value)
        assert info.value.sent is (aiohttp_error is not aiohttp.ClientConnectorError)
    assert info.value.path == PATH


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


# -- secrets out of errors ---------------------------------------------------------------

SECRET_KEY = "secret-key-9f8e7d6c"
PASSPHRASE = "passphrase-5a4b3c2d"


async def _raw_server(
    answer_for: Callable[[bytes], bytes | None],
    connections: dict[asyncio.Task[Any], asyncio.StreamWriter] | None = None,
) -> asyncio.Server:
    """A socket server that reads one request (head, then a Content-Length body) and
    writes `answer_for(request line)`, then hangs up; for None it never answers and waits
    for the client to hang up. The whole request is read first, so hanging up sends a FIN,
    not a reset. `connections`, if given, gets each handler's task and writer."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if connections is not None and task is not None:
            connections[task] = writer
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(_content_length(head))
            answer = answer_for(head.split(b"\r\n", 1)[0])
            if answer is None:
                await reader.read()  # returns when the client closes the connection
            else:
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _time_or_garbage(request_line: bytes) -> bytes:
    if b"/api/v5/public/time" in request_line:
        body = b'{"code":"0","msg":"","data":[{"ts":"1704067200000"}]}'
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        return head.encode() + b"\r\nConnection: close\r\n\r\n" + body
    return b"HTTP/1.1 OOPS not a status line\r\n\r\n"  # aiohttp: ClientResponseError


def _captured_locals(error: BaseException) -> str:
    """The error as a reporter capturing locals prints it, from below the test's frame."""
    below_test = error.__traceback__.tb_next if error.__traceback__ else None
    summary = traceback.TracebackException(type(error), error, below_test, capture_locals=True)
    return "".join(summary.format())


def _graph(error: BaseException) -> list[BaseException]:
    found, todo = [], [error]
    while todo:
        current = todo.pop()
        if current not in found:
            found.append(current)
            todo += [e for e in (current.__cause__, current.__context__) if e is not None]
    return found


def _leaks(error: BaseException, *secrets: str) -> list[str]:
    formatted = _captured_locals(error)
    texts = [*exception_texts(error), formatted]
    return [t[:200] for t in texts if any(s in t for s in secrets)]


@pytest.fixture
def signatures(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every signature (OK-ACCESS-SIGN) the test's clients make, to look for in errors."""
    made_so_far: list[str] = []
    original = Credentials.request_headers

    def spy(self: Credentials, *args: Any) -> RequestHeaders:
        made = original(self, *args)
        made_so_far.append(dict(made)["OK-ACCESS-SIGN"])
        return made

    monkeypatch.setattr(Credentials, "request_headers", spy)
    return made_so_far


def _client_of(server: asyncio.Server, **options: Any) -> OKXClient:
    port = server.sockets[0].getsockname()[1]
    return OKXClient(
        api_key="api-key-1234",
        secret_key=SECRET_KEY,
        passphrase=PASSPHRASE,
        base_url=f"http://127.0.0.1:{port}",
        **options,
    )


async def test_a_malformed_status_line_leaves_no_secret_in_the_error(
    signatures: list[str],
) -> None:
    server = await _raw_server(_time_or_garbage)
    client = _client_of(server, user_id="1001", retry=RetryPolicy(max_attempts=1))
    try:
        with pytest.raises(NetworkError) as info:
            await client.set_risk_offset_amount("BTC", "1")
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
    error = info.value
    assert "ClientResponseError" in str(error)  # the reason is described...
    # ...but nothing of aiohttp's error is kept: its request_info holds the headers, and
    # the frames of its traceback hold them in locals. (Python 3.10 may leave the parser's
    # HttpProcessingError "being handled" in the task, which then becomes the context of
    # any later raise: it holds no request, and the leak checks below cover it.)
    assert error.__cause__ is None
    assert not any(isinstance(e, aiohttp.ClientError) for e in _graph(error))
    assert len(signatures) == 1
    assert not _leaks(error, SECRET_KEY, PASSPHRASE, *signatures)
    # The frames' locals print the signed headers masked.
    assert "headers = RequestHeaders(" in _captured_locals(error)


# -- URLs with credentials ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2pw@www.okx.com",
        "https://user:hunter2pw@www.okx.com/api",  # also a path
        "ftp://user:hunter2pw@www.okx.com/api?x=1",  # also scheme, path, query
        "http://user:hunter2pw@example.com",  # also plain http to a remote host
        "https://user:hunter2pw@[::1",  # also unparseable
        "https://user:hunter2pw@www.okx.com:99999",  # also a bad port
        "user:hunter2pw@www.okx.com",  # also no scheme
        "https://user:hunt/er2pw@www.okx.com",  # an unescaped "/" in the password
        "https://hunter2pw@www.okx.com",  # a token as the user name
    ],
)
def test_base_url_with_credentials_is_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(InvalidInputError, match="must not carry credentials") as info:
        check_base_url(url)
    assert "hunter2pw" not in str(info.value) and "er2pw" not in str(info.value)
    with pytest.raises(InvalidInputError) as info:
        OKXClient(api_key="k", secret_key="s", passphrase="p", base_url=url)
    assert "hunter2pw" not in str(info.value) and "credentials" in str(info.value)


def test_malformed_base_url_is_invalid_input_not_a_raw_value_error() -> None:
    with pytest.raises(InvalidInputError, match="not a valid URL"):
        check_base_url("https://[::1")


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("https://user:pw@www.okx.com/api", "https://user:***@www.okx.com/api"),
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        (
            "rediss://default:pw@h:1?ssl_cert_reqs=none",
            "rediss://default:***@h:1?ssl_cert_reqs=none",
        ),
        ("redis://h:6379/0?password=pw&db=1", "redis://h:6379/0?password=***&db=1"),
        ("http://u:p@w@proxy:3128", "http://u:***@proxy:3128"),
        ("http://proxy:3128", "http://proxy:3128"),
        ("https://www.okx.com/x?db=@z", "https://www.okx.com/x?db=@z"),
        ("rediss://h:1/0?ssl_password=pw&db=2", "rediss://h:1/0?ssl_password=***&db=2"),
        ("redis://h:1/0?auth_token=t;db=2", "redis://h:1/0?auth_token=***;db=2"),
        ("user:pw@host", "user:***@host"),
        ("token@host", "***@host"),
        ("not a url", "not a url"),
        ("", ""),
    ],
)
def test_mask_url_credentials(url: str, masked: str) -> None:
    assert mask_url_credentials(url) == masked
    assert has_url_credentials(url) is (masked != url)
    assert has_url_credentials(masked) is (masked != url)  # an already-masked URL too


def test_an_unknown_query_options_value_is_masked_too() -> None:
    # It may be anything (a misplaced secret included); only known harmless options show.
    url = "redis://h:1/0?db=3&no_such_option=s3cr3t&socket_timeout=2"
    assert mask_url_credentials(url) == "redis://h:1/0?db=3&no_such_option=***&socket_timeout=2"


@pytest.mark.parametrize("url", ["https://***@www.okx.com", "https://u:***@www.okx.com"])
def test_a_masked_looking_userinfo_is_still_credentials(url: str) -> None:
    with pytest.raises(InvalidInputError, match="must not carry credentials"):
        check_base_url(url)


def test_mask_credentials_in_text() -> None:
    text = "Cannot connect to proxy http://u:pw@proxy:3128 or socks5://x@y:1 [refused]"
    assert mask_credentials_in_text(text) == (
        "Cannot connect to proxy http://***@proxy:3128 or socks5://***@y:1 [refused]"
    )


# -- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def https_server(certificate_authority: trustme.CA) -> AsyncIterator[tuple[str, list[str]]]:
    """A real HTTPS server on 127.0.0.1 with a certificate from a CA nobody trusts."""
    seen: list[str] = []

    async def server_time(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"code": "0", "msg": "", "data": [{"ts": "1704067200000"}]})

    async def set_amount(request: web.Request) -> web.Response:
        seen.append(request.path)
        row = {"ccy": "BTC", "clSpotInUseAmt": "1"}
        return web.json_response({"code": "0", "msg": "", "data": [row]})

    app = web.Application()
    app.router.add_get("/api/v5/public/time", server_time)
    app.router.add_post(PATH, set_amount)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1").configure_cert(context)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_an_untrusted_certificate_is_a_tls_error_after_one_attempt(
    https_server: tuple[str, list[str]],
) -> None:
    base_url, seen = https_server
    sent: list[int] = []
    client = OKXClient(
        api_key="api-key-1234",
        secret_key=SECRET_KEY,
        passphrase=PASSPHRASE,
        base_url=base_url,
        user_id="1001",
        on_event=lambda event: sent.append(event.attempt) if event.kind == "sent" else None,
    )
    try:
        with pytest.raises(TLSError) as info:
            await client.set_risk_offset_amount("BTC", "1", timeout=30)
    finally:
        await client.close()
    assert sent == [1]  # the default policy allows 6 attempts: none was retried
    # The one attempt was the clock sync (a lookup): no set request went out.
    assert client.stats().retried == 0 and client.stats().lookups == 1
    assert client.stats().sent == 0
    assert not seen  # nothing reached the application
    assert isinstance(info.value, TransportError) and not info.value.retryable
    message = str(info.value)
    assert f"certificate of {base_url} was not trusted" in message
    assert "ssl=ssl.create_default_context(cafile=" in message
    assert info.value.__cause__ is None and info.value.__context__ is None


async def test_a_context_trusting_the_certificate_works(
    https_server: tuple[str, list[str]], certificate_authority: trustme.CA
) -> None:
    base_url, seen = https_server
    trusting = ssl.create_default_context()
    certificate_authority.configure_trust(trusting)
    async with OKXClient(
        api_key="api-key-1234",
        secret_key=SECRET_KEY,
        passphrase=PASSPHRASE,
        base_url=base_url,
        user_id="1001",
        ssl=trusting,
    ) as client:
        result = await client.set_risk_offset_amount("BTC", "1", timeout=30)
    assert result.amount == Decimal("1")
    assert seen == ["/api/v5/public/time", PATH]


def test_a_tls_handshake_failure_is_a_tls_error_too() -> None:
    key = aiohttp.client_reqrep.ConnectionKey("h", 443, True, True, None, None, None)
    handshake = aiohttp.ClientConnectorSSLError(key, ssl.SSLError(1, "wrong version number"))
    error = _translate(handshake, "https://h", PATH)
    assert type(error) is TLSError and "TLS handshake with https://h failed" in str(error)
    assert "wrong version number" in str(error) and "cafile=" in str(error)


@pytest.mark.parametrize("value", [False, True, "cert.pem", 0])
def test_ssl_must_be_a_context(value: object) -> None:
    with pytest.raises(InvalidInputError, match=r"ssl must be an ssl\.SSLContext"):
        OKXClient(api_key="k", secret_key="s", passphrase="p", ssl=value)  # type: ignore[arg-type]


async def test_closing_during_a_request_leaves_no_secret_in_the_error(
    signatures: list[str],
) -> None:
    # The request is on the wire when close() stops it: the CancelledError ran through
    # aiohttp's frames, whose locals hold the headers, so it must not be the context.
    received = asyncio.Event()

    def time_or_stall(request_line: bytes) -> bytes:
        if b"/api/v5/public/time" in request_line:
            return _time_or_garbage(request_line)
        received.set()
        return b""  # no answer: the client waits until it is closed

    async def stall_after(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        writer.write(time_or_stall(head.split(b"\r\n", 1)[0]))
        await reader.read()  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(stall_after, "127.0.0.1", 0)
    client = _client_of(server)
    try:
        call = asyncio.ensure_future(client.get_account_config())
        await asyncio.wait_for(received.wait(), 30)
        await client.close(timeout=0)
        with pytest.raises(ClientClosedError) as info:
            await call
    finally:
        server.close()
        await server.wait_closed()
    assert signatures
    assert info.value.__context__ is None
    assert not _leaks(info.value, SECRET_KEY, PASSPHRASE, *signatures)
