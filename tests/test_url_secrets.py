"""A password in a URL (proxy, Redis, base_url) is never readable from an error's
traceback locals: reporters that capture locals print each one with repr()."""

from __future__ import annotations

import asyncio

import pytest
from conftest import exception_texts

from okx_async import InvalidInputError, OKXClient, OKXError, RetryPolicy
from okx_async._urls import MaskedURL, masked

PASSWORD = "hunter2-pw"
KEY = {"api_key": "url-key", "secret_key": "url-secret-xyz", "passphrase": "url-pass-xyz"}


async def closed_port() -> int:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()
    return port


def test_a_masked_url_is_the_same_string_with_a_masked_repr() -> None:
    url = masked(f"http://bob:{PASSWORD}@proxy.example:3128")
    assert isinstance(url, MaskedURL) and url == f"http://bob:{PASSWORD}@proxy.example:3128"
    assert PASSWORD not in repr(url) and "bob:***@" in repr(url)
    assert PASSWORD not in repr((url, [url], {"u": url}))
    assert masked(None) is None and masked(3) == 3


async def test_a_dead_proxy_with_a_password_leaves_no_password_in_frame_locals() -> None:
    port = await closed_port()
    async with OKXClient(
        **KEY,
        base_url=f"http://127.0.0.1:{port}",
        user_id="1",
        proxy=f"http://bob:{PASSWORD}@127.0.0.1:{port}",
        retry=RetryPolicy(max_attempts=1),
    ) as client:
        with pytest.raises(OKXError) as info:
            await client.set_risk_offset_amount("BTC", "1")
    texts = exception_texts(info.value)
    assert texts and not [t for t in texts if PASSWORD in t]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_url": f"https://bob:{PASSWORD}@www.okx.com"},
        {"limiter_url": f"mongodb://:{PASSWORD}@127.0.0.1:1/0"},
        {"proxy": f"ftp://bob:{PASSWORD}@proxy:21"},
        {"limiter_url": f"rediss://:{PASSWORD}@[::1/0"},  # urllib raises inside redis-py
        {"limiter_url": f"redis://:{PASSWORD}@127.0.0.1:notaport/0"},
        {"limiter_url": f"redis://:{PASSWORD}@127.0.0.1:1/0?no_such_option=1"},
        {"limiter_url": f"rediss://127.0.0.1:1/0?ssl_password={PASSWORD}&no_such_option=1"},
        {"limiter_url": f"redis://127.0.0.1:1/0?no_such_option={PASSWORD}"},
    ],
)
def test_a_refused_url_leaves_no_password_in_frame_locals(kwargs: dict[str, str]) -> None:
    with pytest.raises(InvalidInputError) as info:
        OKXClient(**KEY, **kwargs)  # type: ignore[arg-type]
    texts = exception_texts(info.value)
    assert texts and not [t for t in texts if PASSWORD in t]


def test_an_unknown_redis_url_option_is_refused_before_anything_is_sent() -> None:
    # redis-py would only fail at the first connection, as an "unreachable" store.
    with pytest.raises(InvalidInputError) as info:
        OKXClient(**KEY, limiter_url="redis://127.0.0.1:1/0?db=2&sockettimeout=5")
    message = str(info.value)
    assert "'sockettimeout' is not an option" in message and "remove it" in message
    assert "sockettimeout=***" in message  # its value is never repeated


@pytest.mark.parametrize(
    ("message", "hint"),
    [
        ("AbstractConnection.__init__() got an unexpected keyword argument 'sockettimeout'", ""),
        (  # Python 3.13 adds a suggestion
            "AbstractConnection.__init__() got an unexpected keyword argument "
            "'sockettimeout'. Did you mean 'socket_timeout'?",
            " (did you mean 'socket_timeout'?)",
        ),
    ],
)
def test_redis_pys_unknown_option_message_on_every_python(message: str, hint: str) -> None:
    from okx_async._redis_link import _unknown_option

    assert _unknown_option(message).startswith(
        f"'sockettimeout' is not an option redis-py takes in a URL's query string{hint} (e.g."
    )
