"""set / get / config / demo / --help, the progress display and profile precedence."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from sim_support import run_cli, served, use_key

import okx_async
from okx_async.cli import main
from okx_async.cli._profiles import ConfigError, load_profiles
from okx_async.cli._progress import Console, Progress
from okx_async.simulator import SimKey, Simulator, SimUser

SET = "/api/v5/account/set-riskOffset-amt"
KEY = SimKey("cli-key-1001", "SECRET-cli-1001-xyz", "PASS-cli-1001-xyz")
SPOT = SimKey("cli-key-3003", "SECRET-cli-3003-xyz", "PASS-cli-3003-xyz")
DEMO_KEY = SimKey("cli-key-demo", "SECRET-cli-demo-xyz", "PASS-cli-demo-xyz", demo=True)
USERS = [
    SimUser(uid="1001", keys=[KEY, DEMO_KEY], equity={"BTC": "3", "ETH": "40"}),
    SimUser(uid="3003", keys=[SPOT], acct_lv="1"),
]


pytestmark = pytest.mark.usefixtures("cli_env")


@pytest.fixture
async def sim() -> AsyncIterator[tuple[Simulator, str]]:
    async with served(USERS) as pair:
        yield pair


@pytest.fixture
def simulator(sim: tuple[Simulator, str], monkeypatch: pytest.MonkeyPatch) -> Simulator:
    """The simulator, the environment pointing the CLI at it with KEY."""
    use_key(monkeypatch, sim[1], KEY)
    return sim[0]


cli = run_cli


async def test_set_get_config_from_env(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("set", "btc", "0.50") == 0
    assert capsys.readouterr().out == "BTC: risk offset amount set to 0.50\n"
    assert simulator.values("1001")["BTC"] == "0.50"
    assert await cli("set", "ETH", "2", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {
        "profile": "default", "ccy": "ETH", "requested": "2", "applied": "2", "superseded": False,
    }  # fmt: skip
    assert await cli("get", "BTC", "ETH") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["CCY", "USER-DEFINED"]
    assert lines[1].split()[:2] == ["BTC", "0.50"] and lines[2].split()[:2] == ["ETH", "2"]
    assert await cli("get", "BTC", "--json") == 0
    amounts = json.loads(capsys.readouterr().out)["amounts"]
    assert amounts[0]["ccy"] == "BTC" and amounts[0]["user_defined"] == "0.50"
    assert await cli("config") == 0
    out = capsys.readouterr().out
    assert "uid            1001 (main account" in out and "4 (portfolio margin)" in out
    assert await cli("config", "--json") == 0
    config = json.loads(capsys.readouterr().out)
    assert (config["uid"], config["is_portfolio_margin"]) == ("1001", True)
    assert "trade" in config["permissions"]


async def test_set_with_a_profile_from_a_config_file(
    sim: tuple[Simulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator, url = sim
    config = tmp_path / "c.toml"
    config.write_text(
        f'[profiles.main]\napi_key = "{KEY.api_key}"\nsecret_key = "{KEY.secret_key}"\n'
        f'passphrase = "{KEY.passphrase}"\nbase_url = "{url}"\nuser_id = "1001"\n'
    )
    config.chmod(0o600)
    assert await cli("set", "SOL", "9", "--profile", "main", "--config", str(config)) == 0
    assert simulator.values("1001")["SOL"] == "9"
    assert await cli("set", "SOL", "9", "--profile", "other", "--config", str(config)) == 2
    assert "unknown profile 'other' (known profiles: main)" in capsys.readouterr().err


async def test_bad_input_to_set_exits_2_before_any_request(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("set", "BTC", "-1") == 2
    _, err = capsys.readouterr()
    assert err == "error: amount '-1' is not a plain decimal number (negative amounts are " \
        "not allowed): pass ASCII digits with an optional point, such as '0.5' (an exponent, " \
        "'5E-1', also works)\n"  # fmt: skip
    assert await cli("set", "B-TC", "1") == 2
    assert "ccy 'B-TC' is not a currency code" in capsys.readouterr().err
    assert await cli("set", "BTC", "1e999999") == 2
    assert "Traceback" not in capsys.readouterr().err
    assert simulator.records == []


async def test_okx_errors_are_one_line_and_exit_1(
    sim: tuple[Simulator, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = sim
    use_key(monkeypatch, url, SPOT)
    assert await cli("set", "BTC", "1") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: okx-async set BTC 1: AccountModeError 51010: ")
    assert err.count("\n") == 1
    monkeypatch.setenv("OKX_PASSPHRASE", "wrong-passphrase")
    assert await cli("get", "BTC") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: okx-async get BTC: AuthenticationError 50105")
    assert "check the passphrase" in err and "wrong-passphrase" not in err
    assert SPOT.secret_key not in err


AUTH_ADVICE = [
    ("live/demo mix-up", DEMO_KEY, {}, "50101", "OKX_DEMO"),
    ("wrong secret key", KEY, {"OKX_SECRET_KEY": "SECRET-wrong-xyz"}, "50113", "check the secret"),
    ("unknown API key", KEY, {"OKX_API_KEY": "no-such-key"}, "50111", "check the API key"),
]


@pytest.mark.parametrize(
    ("case", "key", "env", "code", "advice"), AUTH_ADVICE, ids=[a[0] for a in AUTH_ADVICE]
)
async def test_authentication_errors_say_what_to_check_and_name_the_call(
    sim: tuple[Simulator, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: str,
    key: SimKey,
    env: dict[str, str],
    code: str,
    advice: str,
) -> None:
    _, url = sim
    use_key(monkeypatch, url, key)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert await cli("set", "BTC", "0.5") == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: okx-async set BTC 0.5: AuthenticationError {code}: "), err
    assert "in the User ID lookup (GET /api/v5/account/config) that comes first" in err
    assert advice in err and err.count("\n") == 1


async def test_config_notes_an_account_that_is_not_portfolio_margin(
    sim: tuple[Simulator, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = sim
    use_key(monkeypatch, url, SPOT)
    assert await cli("config") == 0
    assert "note: set-riskOffset-amt works only in portfolio margin mode" in capsys.readouterr().out


def test_no_credentials_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", "BTC"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no credentials: export OKX_API_KEY")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bogus"]) == 2
    assert main(["get"]) == 2  # at least one CCY
    assert main(["apply", "x.csv", "--timeout", "0"]) == 2
    assert "not a positive number of seconds" in capsys.readouterr().err
    assert main(["--version"]) == 0


def test_demo_json_reports_no_rate_limited_answers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--accounts", "2", "--ccys", "14", "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    demo = report["demo"]
    assert demo["rows"] == 28 and demo["calls"] == demo["rows"]
    assert demo["rate_limited"] == 0
    assert demo["limit"] == {"requests": 10, "window_s": 2.0, "per": "user"}
    assert all(a["max_in_window"] <= 10 for a in demo["accounts"])
    assert all(a["calls"] == 14 for a in demo["accounts"])
    # Both keys of each account were used, and 14 calls for one user need two windows.
    assert all(len(a["profiles"]) == 2 for a in report["accounts"])
    assert demo["elapsed_s"] >= 2.0
    assert report["verify"]["checked"] == 28 and report["verify"]["mismatches"] == []
    assert "[28/28]" in err and "\r" not in err


def test_demo_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--accounts", "1", "--ccys", "3", "-q"]) == 0
    out, err = capsys.readouterr()
    assert "rate-limited (50011) answers from the simulator: 0" in out
    assert "verify: read back 3 values; all match" in out
    assert err == ""


def test_python_dash_m_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "okx_async", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: okx-async")
    for command in ("set", "get", "config", "apply", "simulate", "demo"):
        assert f"    {command} " in done.stdout


# -- progress and console -------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_on_a_terminal_redraws_in_place_at_most_10_times_a_second() -> None:
    out = io.StringIO()
    clock = FakeClock()
    bar = Progress(100, out.write, tty=True, clock=clock)
    for _ in range(50):  # 50 rows within 0.05 s: one redraw
        clock.now += 0.001
        bar.advance()
    assert out.getvalue().count("\r") == 1
    for _ in range(50):  # 50 more, 0.125 s apart: a redraw each time
        clock.now += 0.125
        bar.advance()
    bar.close()
    text = out.getvalue()
    assert text.count("\r") == 1 + 50 + 1 and text.endswith("\n") and text.count("\n") == 1
    assert "[############" in text and "calls/s, ETA" in text
    assert text.rsplit("\r", 1)[1] == "[########################] 100/100 done in 6.3 s\n"


async def test_progress_bar_keeps_its_clock_moving_while_calls_wait() -> None:
    out = io.StringIO()
    bar = Progress(3, out.write, tty=True)
    bar.advance()
    ticker = asyncio.ensure_future(bar.keep_fresh())
    await asyncio.sleep(0.35)
    ticker.cancel()
    assert 3 <= out.getvalue().count("\r") <= 5
    quiet = io.StringIO()
    assert await asyncio.wait_for(Progress(3, quiet.write, tty=False).keep_fresh(), 1) is None


def test_progress_elsewhere_writes_plain_lines() -> None:
    out = io.StringIO()
    clock = FakeClock()
    bar = Progress(4, out.write, tty=False, clock=clock)
    for i in range(4):
        clock.now += 0.5
        bar.advance(f"row {i}")
    bar.close()
    assert "\r" not in out.getvalue()
    assert out.getvalue().splitlines() == [
        "[1/4] 0.5 s, -- calls/s, ETA --: row 0",
        "[2/4] 1.0 s, 2.0 calls/s, ETA 1 s: row 1",
        "[3/4] 1.5 s, 2.0 calls/s, ETA <1 s: row 2",  # a row is still due: never "0 s"
        "[4/4] done in 2.0 s: row 3",
    ]


def test_progress_shows_no_burst_as_a_pace_and_plans_by_the_limit() -> None:
    """One user (5 rows/s sustained): 30 rows in a first burst, 12 still due."""
    out = io.StringIO()
    clock = FakeClock()
    bar = Progress(42, out.write, tty=False, clock=clock, max_rate=5.0, warm_up=2.0)
    for _ in range(30):
        clock.now += 0.01
        bar.advance()
    clock.now = 2.0
    bar.advance()
    lines = out.getvalue().splitlines()
    assert lines[0] == "[1/42] 0.0 s, -- calls/s, ETA --"  # the burst: no rate yet
    # 31 rows in 2 s is 15.5/s, but the limit allows 5/s for long: 11 rows need 2 s more.
    assert lines[-1] == "[31/42] 2.0 s, 5.0 calls/s (the limit), ETA 2 s"


def test_demo_prints_one_consistent_summary(capsys: pytest.CaptureFixture[str]) -> None:
    # 6 profiles: the sixth User ID lookup waits for the next window, 2 s before any row.
    assert main(["demo", "--accounts", "3", "--ccys", "4"]) == 0
    out, err = capsys.readouterr()
    done = [line for line in err.splitlines() if line.startswith("[12/12] done in ")]
    [progress_s] = [float(line.split()[3]) for line in done]
    [totals] = [line for line in out.splitlines() if line.startswith("12 rows: ")]
    assert "12 requests in " in totals
    summary_s = float(totals.split("12 requests in ")[1].split()[0])
    assert abs(summary_s - progress_s) <= 0.051, (progress_s, totals)  # one clock, one span
    assert out.count(" calls for ") == 0 and out.count(": 4 calls, ") == 3  # counted once
    assert "after 2." in totals  # the lookups are told apart from the sending
    assert "ETA 0 s" not in err


def test_many_rows_log_every_percent_and_every_failure() -> None:
    out = io.StringIO()
    bar = Progress(1000, out.write, tty=False)
    for i in range(1000):
        bar.advance(f"row {i}", notable=i == 15)
    lines = out.getvalue().splitlines()
    assert len(lines) == 101
    assert lines[0].startswith("[10/1000]") and lines[1].endswith(": row 15")


def test_console_masks_registered_secrets() -> None:
    out, err = io.StringIO(), io.StringIO()
    console = Console(out, err)
    console.hide(["s3cret-value", "abc"])  # too short to mask safely
    console.out("key s3cret-value abc")
    console.err("s3cret-value")
    assert out.getvalue() == "key *** abc\n" and err.getvalue() == "***\n"


def test_profile_precedence(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[profiles.default]\napi_key = "file-key"\nsecret_key = "file-secret"\n'
        'passphrase = "file-pass"\nbase_url = "eea"\n'
    )
    path.chmod(0o600)
    warnings: list[str] = []
    env = {
        "OKX_API_KEY": "plain-key",
        "OKX_PROFILE_DEFAULT_API_KEY": "profile-key",
        "OKX_SECRET_KEY": "plain-secret",
        "OKX_DEMO": "yes",
    }
    store = load_profiles(path, env=env, warn=warnings.append)
    profile = store.resolve("default")
    assert (profile.api_key, profile.secret_key, profile.passphrase) == (
        "profile-key", "plain-secret", "file-pass",
    )  # fmt: skip
    assert (profile.demo, profile.base_url) == (True, "eea")
    assert "plain-secret" not in repr(profile) and "file-pass" not in repr(profile)
    assert warnings == []
    with pytest.raises(ConfigError, match="OKX_DEMO must be"):
        load_profiles(path, env={"OKX_DEMO": "maybe"}, warn=warnings.append)


# -- advice that points the right way --------------------------------------------------------


def test_offline_advice_names_what_the_cli_user_can_change(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OKX_API_KEY", KEY.api_key)
    monkeypatch.setenv("OKX_SECRET_KEY", KEY.secret_key)
    assert main(["get", "BTC"]) == 2  # no passphrase: name the variable the user set up
    err = capsys.readouterr().err
    assert "OKX_PASSPHRASE" in err and "OKX_PROFILE_DEFAULT_PASSPHRASE" not in err
    monkeypatch.setenv("OKX_PASSPHRASE", KEY.passphrase)
    monkeypatch.setenv("OKX_BASE_URL", "http://okx.example.com")
    assert main(["get", "BTC"]) == 2  # plain http elsewhere: no Python-only way out
    err = capsys.readouterr().err
    assert "use https" in err and "allow_insecure_http" not in err and err.count("\n") == 1
    monkeypatch.setenv("OKX_BASE_URL", "europe")
    assert main(["get", "BTC"]) == 2
    err = capsys.readouterr().err
    assert "region name: use global, eea, us or a URL" in err, err


async def test_minus_zero_is_zero(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for args in (["-0"], ["-0.000"], ["--", "-0e3"]):
        assert await cli("set", "BTC", *args) == 0, capsys.readouterr().err
        assert simulator.values("1001")["BTC"] == "0"
    capsys.readouterr()
    assert [r.body for r in simulator.records if r.path == SET] == [
        {"ccy": "BTC", "clSpotInUseAmt": "0"}
    ] * 3
    assert okx_async.validate_amount("-0") == okx_async.validate_amount(Decimal("-0"))
    assert await cli("set", "BTC", "-0.1") == 2  # a real negative is still refused
    assert "negative" in capsys.readouterr().err


def test_a_nan_amount_is_not_suggested_back() -> None:
    for nan in (float("nan"), float("inf")):
        with pytest.raises(okx_async.InvalidInputError) as caught:
            okx_async.validate_amount(nan)
        assert "finite" in str(caught.value) and "such as" not in str(caught.value)


async def test_amounts_are_shown_as_plain_decimals(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = "0.000000000000000000001"
    assert await cli("set", "BTC", tiny) == 0
    assert capsys.readouterr().out == f"BTC: risk offset amount set to {tiny}\n"
    assert simulator.values("1001")["BTC"] == tiny
    assert await cli("set", "ETH", "1E+3", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["requested"], shown["applied"]) == ("1000", "1000")
    assert await cli("get", "BTC") == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:2] == ["BTC", tiny]
    assert await cli("get", "BTC", "--json") == 0
    assert json.loads(capsys.readouterr().out)["amounts"][0]["user_defined"] == tiny


async def test_get_says_a_currency_is_not_returned_and_exits_1(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("get", "BTC", "NOPE") == 1
    out, err = capsys.readouterr()
    assert (
        err == "NOPE: not returned by OKX: an unknown currency, or one this account holds none of\n"
    )
    assert out.splitlines()[2].split() == ["NOPE", "not", "returned", "by", "OKX"]
    assert "-" not in out.splitlines()[2]
    assert await cli("get", "SOL", "--json") == 1  # a real currency this account holds none of
    out, err = capsys.readouterr()
    assert json.loads(out)["amounts"] == [
        {"ccy": "SOL", "found": False, "user_defined": None, "in_use": None, "maximum": None}
    ]
    assert err.startswith("SOL: not returned by OKX")
    assert await cli("get", "BTC", "ETH") == 0


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_simulate_with_a_bad_port_is_one_line(port: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "okx_async", "simulate", "--port", port],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr == f"error: --port {port} is not a TCP port: use 0 to 65535 (0: any free)\n"
    assert done.stdout == ""


def test_simulate_on_a_port_in_use_says_to_pick_another() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "okx_async", "simulate", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert done.stderr == (
        f"error: port {port} on 127.0.0.1 is in use: pick another --port, or --port 0 for "
        "any free one (the chosen URL is printed)\n"
    )
