"""Signing against OKX's published example request and signature, and secrets kept out of reprs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import pickle

import pytest
from conftest import frame_local_texts

from okx_async import (
    Credentials,
    InvalidInputError,
    OKXClient,
    format_timestamp,
    parse_timestamp,
    sign,
)

TS = "2024-01-01T00:00:00.000Z"
SECRET = "test-secret"
SECRET_KEY = "secret-key-1f2e3d4c"
PASSPHRASE = "passphrase-6b7a8c9d"


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        (
            "POST",
            "/api/v5/account/set-riskOffset-amt",
            b'{"ccy":"BTC","clSpotInUseAmt":"0.5"}',
            "2CI8XCOU2pHM23625tKRmiwaO+vzRD7bcXH7dS1m6xA=",
        ),
        (
            "POST",
            "/api/v5/account/set-riskOffset-amt",
            b'{"ccy": "BTC", "clSpotInUseAmt": "0.5"}',
            "PfSsL3dZf6qVg99ebWrM3siFfInCRNUJQsZEOX1gMH8=",
        ),
        (
            "GET",
            "/api/v5/account/balance?ccy=BTC",
            b"",
            "HizPQSXiSU9q4kYm42z9KJQTLQGoM38nn8Q5rbWXqKo=",
        ),
        ("GET", "/api/v5/account/config", b"", "NfkMNfz4vjShYvSVid7Q8pujRyGpr10e2jI6+XZ2ZRU="),
    ],
)
def test_signature_vectors(method: str, path: str, body: bytes, expected: str) -> None:
    assert sign(SECRET, TS, method, path, body) == expected
    creds = Credentials(api_key="test-api-key", secret_key=SECRET, passphrase="test-passphrase")
    assert creds.signature(TS, method, path, body) == expected
    headers = creds.headers(TS, method, path, body)
    assert headers == {
        "OK-ACCESS-KEY": "test-api-key",
        "OK-ACCESS-SIGN": expected,
        "OK-ACCESS-TIMESTAMP": TS,
        "OK-ACCESS-PASSPHRASE": "test-passphrase",
    }


def test_lower_case_method_is_signed_upper_case() -> None:
    assert sign(SECRET, TS, "get", "/api/v5/account/config") == sign(
        SECRET, TS, "GET", "/api/v5/account/config"
    )


@pytest.mark.parametrize(
    "secret",
    ["k", "x" * 32, "y" * 63, "z" * 64, "w" * 65, "ü" * 32, "v" * 200],
    ids=["1B", "32B", "63B", "64B", "65B", "64B-utf8", "200B"],
)
def test_keyed_signature_equals_the_standard_library_hmac(secret: str) -> None:
    # 64 bytes is SHA-256's block: shorter keys are padded, longer ones hashed first
    # ("ü" * 32 is 64 bytes of UTF-8).
    creds = Credentials(api_key="k", secret_key=secret, passphrase="p")
    body = b'{"ccy":"BTC","clSpotInUseAmt":"0.5"}' * 3
    path = "/api/v5/account/set-riskOffset-amt"
    digest = hmac.new(secret.encode(), (TS + "POST" + path).encode() + body, hashlib.sha256)
    assert creds.signature(TS, "POST", path, body) == base64.b64encode(digest.digest()).decode()


def test_signing_the_keyed_copy_twice_gives_the_same_answer() -> None:
    creds = Credentials(api_key="k", secret_key=SECRET, passphrase="p")
    first = creds.signature(TS, "GET", "/api/v5/account/config", b"")
    assert creds.signature(TS, "GET", "/api/v5/account/config", b"") == first


@pytest.mark.parametrize(
    ("unix", "text"),
    [
        (1607418537.715, "2020-12-08T09:08:57.715Z"),
        (1704067200.0, "2024-01-01T00:00:00.000Z"),
        (1704067200.0009, "2024-01-01T00:00:00.000Z"),
        (1704067199.999, "2023-12-31T23:59:59.999Z"),
    ],
)
def test_timestamp_format(unix: float, text: str) -> None:
    assert format_timestamp(unix) == text
    assert abs(parse_timestamp(text) - unix) < 0.001


def test_credentials_repr_and_pickle_hide_secrets() -> None:
    creds = Credentials(api_key="abcdef-123456", secret_key="s3cr3t-value", passphrase="pa55-word")
    text = repr(creds) + str(creds)
    assert "s3cr3t-value" not in text and "pa55-word" not in text
    assert "abcdef-123456" not in text  # only a prefix of the key
    with pytest.raises(TypeError):
        pickle.dumps(creds)


@pytest.mark.parametrize("field", ["api_key", "secret_key", "passphrase"])
@pytest.mark.parametrize("value", ["", None, 5])
def test_credentials_refuse_empty_fields_without_echoing(field: str, value: object) -> None:
    kwargs: dict[str, object] = {"api_key": "k", "secret_key": "s", "passphrase": "p"}
    kwargs[field] = value
    with pytest.raises(InvalidInputError, match=field):
        Credentials(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["api_key", "secret_key", "passphrase"])
@pytest.mark.parametrize(
    "value",
    [
        "Val-9x7\n",
        "Val-9x7\r\n",
        " Val-9x7",
        "Val-9x7\t",
        "Val\x00-9x7",
        "Val\x1b-9x7",
        "Va\u200bl",
    ],
    ids=["lf", "crlf", "leading-space", "tab", "nul", "esc", "zero-width"],
)
def test_control_characters_and_surrounding_whitespace_are_refused(field: str, value: str) -> None:
    kwargs = {"api_key": "key-1", "secret_key": "secret-1", "passphrase": "pass-1"}
    kwargs[field] = value
    for build in (Credentials, OKXClient):
        with pytest.raises(InvalidInputError, match=f"^{field} has surrounding whitespace") as info:
            build(**kwargs)
        assert value.strip() not in str(info.value)  # names the field, not the value


def test_inner_spaces_and_punctuation_are_fine() -> None:
    Credentials(api_key="a-b_c.d", secret_key="S3cr+t/=", passphrase="pass phrase !#$%")


def _frame_locals(error: BaseException) -> str:
    """What a reporter capturing locals prints (repr of each local of each frame), for the
    frames outside the tests (conftest's own wrappers hold the secrets they watch for)."""
    return "\n".join(frame_local_texts(error))


@pytest.mark.parametrize(
    "bad",
    [
        {"base_url": "ftp://www.okx.com"},
        {"request_timeout": -1},
        {"demo": "perhaps"},
        {"passphrase": PASSPHRASE + "\n"},
        {"api_key": ""},
    ],
    ids=["base_url", "timeout", "demo", "passphrase", "api_key"],
)
def test_a_refused_constructor_leaves_no_secret_in_frame_locals(bad: dict[str, object]) -> None:
    kwargs: dict[str, object] = {
        "api_key": "key-1",
        "secret_key": SECRET_KEY,
        "passphrase": PASSPHRASE,
    }
    kwargs.update(bad)
    with pytest.raises(InvalidInputError) as info:
        OKXClient(**kwargs)  # type: ignore[arg-type]
    kwargs.clear()  # this test's own frame is skipped below, but keep it clean anyway
    shown = _frame_locals(info.value)
    assert "_client.py:__init__: self=OKXClient(<not constructed>)" in shown  # the frames...
    assert SECRET_KEY not in shown and PASSPHRASE not in shown  # ...without the secrets


@pytest.mark.parametrize(
    "env",
    [{"OKX_BASE_URL": "https://www.okx.com/api"}, {"OKX_DEMO": "perhaps"}, {"OKX_API_KEY": ""}],
)
def test_from_env_leaves_no_secret_in_frame_locals(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    monkeypatch.setenv("OKX_API_KEY", "key-1")
    monkeypatch.setenv("OKX_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("OKX_PASSPHRASE", PASSPHRASE)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InvalidInputError) as info:
        OKXClient.from_env(passphrase=PASSPHRASE)
    shown = _frame_locals(info.value)
    assert "from_env" in shown
    assert SECRET_KEY not in shown and PASSPHRASE not in shown
