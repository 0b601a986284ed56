"""Hypothesis fuzzing: every public parameter and every server answer ends in a result or a
documented exception — never a crash, never a hang."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from okx_async import (
    InvalidInputError,
    OKXClient,
    OKXError,
    RetryPolicy,
    RiskOffsetResult,
    validate_amount,
    validate_ccy,
)
from okx_async._defaults import AMOUNT_MAX_DIGITS
from okx_async._transport import _decode

ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(max_size=60),
    st.binary(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.from_regex(r"[+-]?\d{0,30}(\.\d{0,30})?([eE][+-]?\d{1,6})?", fullmatch=True),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
OKX_SHAPED = st.fixed_dictionaries(
    {},
    optional={
        "code": st.one_of(st.sampled_from(["0", "50011", "50013", "51000", "1", ""]), JSON),
        "msg": st.one_of(st.text(max_size=20), JSON),
        "data": st.one_of(
            st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "ccy": st.one_of(st.just("BTC"), JSON),
                        "clSpotInUseAmt": st.one_of(st.just("0.5"), st.text(max_size=8), JSON),
                    },
                ),
                max_size=2,
            ),
            JSON,
        ),
    },
)


@settings(max_examples=300, deadline=None)
@given(ccy=ANYTHING)
def test_validate_ccy_accepts_or_explains(ccy: object) -> None:
    try:
        result = validate_ccy(ccy)
    except InvalidInputError as exc:
        assert str(exc)
    else:
        assert isinstance(result, str) and result.isalnum() and result == result.upper()


@settings(max_examples=500, deadline=None)
@given(amount=ANYTHING)
def test_validate_amount_accepts_or_explains(amount: object) -> None:
    try:
        text, value = validate_amount(amount)
    except InvalidInputError as exc:
        assert 0 < len(str(exc)) < 300
    else:
        assert Decimal(text) == value >= 0
        assert "E" not in text and "e" not in text  # always plain decimal text


# Number-like text, Arabic-Indic digits included: Decimal() reads those, OKX would not.
NUMBER_TEXT = st.text(alphabet="0123456789.+-eE\u0661\u0662", max_size=AMOUNT_MAX_DIGITS + 4)


@settings(max_examples=1000, deadline=None)
@given(amount=NUMBER_TEXT)
def test_amount_text_sent_is_the_canonical_ascii_form(amount: str) -> None:
    """Whichever path validation takes, what is sent is format(value, "f") in ASCII."""
    try:
        text, value = validate_amount(amount)
    except InvalidInputError:
        return
    assert text.isascii()
    assert text == (format(value, "f") if value else "0")


@settings(max_examples=100, deadline=None)
@given(
    api_key=ANYTHING,
    base_url=st.one_of(st.sampled_from(["https://www.okx.com", "eea", "us", "http://x"]), ANYTHING),
    timeout=ANYTHING,
)
def test_constructor_accepts_or_explains(
    api_key: object, base_url: object, timeout: object
) -> None:
    try:
        OKXClient(
            api_key=api_key,  # type: ignore[arg-type]
            secret_key="s",
            passphrase="p",
            base_url=base_url,  # type: ignore[arg-type]
            request_timeout=timeout,  # type: ignore[arg-type]
        )
    except InvalidInputError as exc:
        assert str(exc)


@settings(max_examples=400, deadline=None)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        JSON.map(lambda v: json.dumps(v).encode()),
        OKX_SHAPED.map(lambda v: json.dumps(v).encode()),
    ),
    status=st.sampled_from([200, 204, 400, 401, 404, 429, 500, 502, 503]),
    content_type=st.sampled_from(["application/json", "text/html", "text/plain", ""]),
)
def test_decode_returns_data_or_a_typed_error(body: bytes, status: int, content_type: str) -> None:
    try:
        data = _decode(body, status=status, content_type=content_type, path="/p")
    except OKXError as exc:
        assert str(exc)
    else:
        assert isinstance(data, list)


# Large bodies are named, not generated: hypothesis would print megabytes on failure.
LARGE_BODIES = {"huge": b" " * (3 << 20), "braces": b"{" * 50_000}


async def _one_call_against(reply: tuple[int, str, bytes | str]) -> object:
    status, content_type, raw = reply
    body = LARGE_BODIES[raw] if isinstance(raw, str) else raw

    async def server_time(request: web.Request) -> web.Response:
        import time

        return web.json_response(
            {"code": "0", "msg": "", "data": [{"ts": str(int(time.time() * 1000))}]}
        )

    async def set_offset(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/api/v5/public/time", server_time)
    app.router.add_post("/api/v5/account/set-riskOffset-amt", set_offset)
    async with TestServer(app, host="127.0.0.1") as server:
        client = OKXClient(
            api_key="k",
            secret_key="s",
            passphrase="p",
            base_url=str(server.make_url("")).rstrip("/"),
            user_id="1",
            retry=RetryPolicy(max_attempts=2, backoff_base=0.0, backoff_cap=0.0),
            request_timeout=2.0,
        )
        try:
            return await asyncio.wait_for(client.set_risk_offset_amount("BTC", "0.5"), 10)
        except OKXError as exc:
            return exc
        finally:
            await client.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    reply=st.tuples(
        st.sampled_from([200, 400, 429, 500, 502]),
        st.sampled_from(["application/json", "text/html", "application/octet-stream"]),
        st.one_of(
            st.binary(max_size=200),
            OKX_SHAPED.map(lambda v: json.dumps(v).encode()),
            st.sampled_from(sorted(LARGE_BODIES)),
        ),
    )
)
def test_client_survives_any_server_answer(reply: tuple[int, str, bytes | str]) -> None:
    outcome = asyncio.run(_one_call_against(reply))
    if isinstance(outcome, RiskOffsetResult):
        assert outcome.ccy == "BTC"
    else:
        assert isinstance(outcome, OKXError), repr(outcome)
