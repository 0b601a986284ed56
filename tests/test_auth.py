"""Signing against the test vectors in OKX-FACTS.md, and secrets kept out of reprs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import pickle

import pytest

from okx_async import Credentials, InvalidInputError, format_timestamp, parse_timestamp, sign

TS = "2024-01-01T00:00:00.000Z"
SECRET = "test-secret"


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
