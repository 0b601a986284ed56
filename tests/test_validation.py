"""Input validation happens before any I/O and says what is wrong."""

from __future__ import annotations

from decimal import Decimal

import pytest

from okx_async import InvalidInputError, OKXClient, validate_amount, validate_ccy


@pytest.mark.parametrize(
    ("given", "expected"), [("BTC", "BTC"), ("btc", "BTC"), ("USDT", "USDT"), ("1INCH", "1INCH")]
)
def test_valid_ccy(given: str, expected: str) -> None:
    assert validate_ccy(given) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("", "must not be empty"),
        (None, "must be a string"),
        (b"BTC", "must be a string"),
        ("BT C", "not a currency code"),
        ("BTC-USDT", "not a currency code"),
        ("A" * 21, "not a currency code"),
        ("\u0392TC", "not a currency code"),  # Greek capital beta
    ],
)
def test_invalid_ccy(given: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        validate_ccy(given)


def test_invalid_input_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        validate_ccy("")


@pytest.mark.parametrize(
    ("given", "text", "value"),
    [
        ("0.5", "0.5", Decimal("0.5")),
        (Decimal("1E-8"), "0.00000001", Decimal("1E-8")),
        ("1e-8", "0.00000001", Decimal("1E-8")),
        ("1E+3", "1000", Decimal("1000")),
        (3, "3", Decimal(3)),
        (0, "0", Decimal(0)),
        ("0.000", "0", Decimal(0)),
        (Decimal("-0"), "0", Decimal(0)),
        (".5", "0.5", Decimal("0.5")),
        ("10.", "10", Decimal("10")),
        ("+2", "2", Decimal(2)),
        ("123456789.123456789", "123456789.123456789", Decimal("123456789.123456789")),
    ],
)
def test_valid_amount(given: object, text: str, value: Decimal) -> None:
    assert validate_amount(given) == (text, value)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (True, "not a bool"),
        (0.5, "float, which loses precision"),
        (float("nan"), "float"),
        ("-1", "negative"),
        (Decimal("-0.1"), "negative"),
        (-3, "negative"),
        ("NaN", "not a plain decimal"),
        (Decimal("NaN"), "finite"),
        (Decimal("Infinity"), "finite"),
        ("inf", "not a plain decimal"),
        ("1_000", "not a plain decimal"),
        (" 1", "not a plain decimal"),
        ("", "not a plain decimal"),
        ("abc", "not a plain decimal"),
        ("1e999999", "out of range"),
        (Decimal("1E-100"), "out of range"),
        ("0x10", "not a plain decimal"),
        ([1], "must be a str, Decimal or int"),
        (None, "must be a str, Decimal or int"),
        (10**60, "out of range"),
    ],
)
def test_invalid_amount(given: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        validate_amount(given)


def test_long_garbage_is_cut_in_the_message() -> None:
    with pytest.raises(InvalidInputError) as info:
        validate_amount("x" * 10_000)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize(
    ("given", "demo"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("false", False),
        ("False", False),
        (" 0 ", False),
        ("1", True),
        ("yes", True),
        ("off", False),
        ("", False),
    ],
)
def test_demo_takes_a_bool_or_a_string_read_as_okx_demo_is(
    given: object, demo: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = OKXClient(api_key="k", secret_key="s", passphrase="p", demo=given)  # type: ignore[arg-type]
    assert f"demo={demo}" in repr(client)
    if isinstance(given, str):  # one parser: the environment variable reads the same
        monkeypatch.setenv("OKX_DEMO", given)
        from_env = OKXClient.from_env(api_key="k", secret_key="s", passphrase="p")
        assert f"demo={demo}" in repr(from_env)


@pytest.mark.parametrize("given", ["perhaps", "ture", 1, 0, None, 1.0, [True]])
def test_demo_refuses_anything_else(given: object) -> None:
    with pytest.raises(InvalidInputError, match="demo"):
        OKXClient(api_key="k", secret_key="s", passphrase="p", demo=given)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "given",
    ["\N{FULLWIDTH DIGIT ONE}", "0.\N{FULLWIDTH DIGIT FIVE}", "\u0663", "1e\u0665", "-\uff10"],
)
def test_digits_of_other_scripts_are_refused(given: str) -> None:
    # Decimal() reads them (fullwidth one is Decimal(1)); OKX takes ASCII digits only.
    with pytest.raises(InvalidInputError, match="not a plain decimal number"):
        validate_amount(given)


def test_amount_messages_say_what_to_pass() -> None:
    with pytest.raises(InvalidInputError) as info:
        validate_amount("abc")
    assert str(info.value) == (
        "amount 'abc' is not a plain decimal number: pass ASCII digits with an optional "
        "point, such as '0.5' (an exponent, '5E-1', also works)"
    )
    with pytest.raises(InvalidInputError) as info:
        validate_amount("1E+400")
    assert str(info.value) == (
        "amount 1E+400 is out of range: it must be at least 1E-40 and below 1E+40, written "
        "in at most 40 digits"
    )
    # OKX documents no precision for clSpotInUseAmt: a small amount is passed on as is.
    assert validate_amount("1e-30")[0] == "0." + "0" * 29 + "1"
