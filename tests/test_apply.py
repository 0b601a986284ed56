"""`okx-async apply` end to end: main() in a worker thread against the simulator on port 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sim_support import run_cli, served

from okx_async.simulator import DEFAULT_MARGIN_CCYS, SimKey, Simulator, SimUser

SET = "/api/v5/account/set-riskOffset-amt"
K1 = SimKey("key-one-1001", "SECRET-one-1001-xyz", "PASS-one-1001-xyz")
K2 = SimKey("key-two-1001", "SECRET-two-1001-xyz", "PASS-two-1001-xyz")
K3 = SimKey("key-three-2002", "SECRET-three-2002-xyz", "PASS-three-2002-xyz")
K4 = SimKey("key-spot-3003", "SECRET-spot-3003-xyz", "PASS-spot-3003-xyz")
USERS = [
    SimUser(uid="1001", keys=[K1, K2]),
    SimUser(uid="2002", keys=[K3], main_uid="1001"),
    SimUser(uid="3003", keys=[K4], acct_lv="1"),  # not portfolio margin: 51010
]
PROFILES = {"a": K1, "b": K2, "c": K3, "spot": K4}
SECRETS = [k.secret_key for k in PROFILES.values()] + [k.passphrase for k in PROFILES.values()]


pytestmark = pytest.mark.usefixtures("cli_env")


@pytest.fixture
async def sim() -> AsyncIterator[tuple[Simulator, str]]:
    async with served(USERS) as pair:
        yield pair


def write_config(path: Path, base_url: str, mode: int = 0o600) -> Path:
    text = "".join(
        f'[profiles.{name}]\napi_key = "{k.api_key}"\nsecret_key = "{k.secret_key}"\n'
        f'passphrase = "{k.passphrase}"\nbase_url = "{base_url}"\n\n'
        for name, k in PROFILES.items()
    )
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def simulator(sim: tuple[Simulator, str]) -> Simulator:
    return sim[0]


@pytest.fixture
def config(tmp_path: Path, sim: tuple[Simulator, str]) -> Path:
    return write_config(tmp_path / "config.toml", sim[1])


cli = run_cli


def posts(simulator: Simulator) -> list[object]:
    return [r for r in simulator.records if r.path == SET]


async def apply_reporting(plan: Path, config: Path, *flags: str) -> tuple[int, dict[str, Any]]:
    """`apply PLAN --config CONFIG FLAGS --json FILE`: the exit code and the JSON report
    written to FILE (beside the plan)."""
    report_path = plan.with_name("report.json")
    code = await cli("apply", plan, "--config", config, *flags, "--json", report_path)
    return code, json.loads(report_path.read_text())


def plan_csv(tmp_path: Path, *rows: str, name: str = "plan.csv") -> Path:
    path = tmp_path / name
    path.write_text("profile,ccy,amount\n" + "".join(r + "\n" for r in rows))
    return path


async def test_apply_csv_sets_every_row_without_a_carriage_return(
    simulator: Simulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ccys = ["BTC", "ETH", "USDT", "SOL", "XRP", "DOGE", "ADA", "LTC"]
    rows = [f"{'ab'[i % 2]},{c},{i}.5" for i, c in enumerate(ccys)] + [f"c,{c},7" for c in ccys]
    plan = plan_csv(tmp_path, *rows)
    assert await cli("apply", plan, "--config", config) == 0
    out, err = capsys.readouterr()
    held = simulator.values("1001")
    assert {k: held[k] for k in ccys} == {c: f"{i}.5" for i, c in enumerate(ccys)}
    assert all(simulator.values("2002")[c] == "7" for c in ccys)
    assert "\r" not in out + err  # not a terminal: plain progress lines
    assert err.count("\n[") + err.startswith("[") == len(rows)  # one line per row
    assert "[16/16]" in err and "plan.csv line 2 a BTC=0.5 applied" in err
    table = out.splitlines()
    assert table[0].split() == ["ACCOUNT", "PROFILES", "ROWS", "SENT", "APPLIED", "SUPERSEDED",
                                "FAILED", "50011"]  # fmt: skip
    assert table[1].split() == ["1001", "a,", "b", "8", "8", "8", "0", "0", "0"]
    assert table[2].split() == ["2002", "c", "8", "8", "8", "0", "0", "0"]
    assert "16 rows: 16 applied, 0 superseded, 0 failed" in out
    assert simulator.rate_limited_count() == 0
    assert simulator.max_in_window("1001", SET) <= 10


async def test_apply_json_with_verify_and_report(
    simulator: Simulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.json"
    items = [
        {"profile": "a", "ccy": "btc", "amount": "0.25"},
        {"profile": "c", "ccy": "ETH", "amount": 3},
        {"profile": "b", "ccy": "SOL", "amount": 0.1},  # a JSON number, kept exact
    ]
    plan.write_text(json.dumps(items))
    code, report = await apply_reporting(plan, config, "--verify")
    assert code == 0
    out, _ = capsys.readouterr()
    assert "verify: read back 3 values; all match" in out
    assert report["ok"] is True and report["format"] == "json"
    assert [(r["line"], r["ccy"], r["status"], r["applied"]) for r in report["rows"]] == [
        (1, "BTC", "applied", "0.25"),
        (2, "ETH", "applied", "3"),
        (3, "SOL", "applied", "0.1"),
    ]
    assert report["verify"] == {"checked": 3, "mismatches": []}
    assert simulator.values("1001")["SOL"] == "0.1"


async def test_json_report_on_stdout_stays_clean(
    sim: tuple[Simulator, str], config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = plan_csv(tmp_path, "a,BTC,1", "c,ETH,2")
    assert await cli("apply", plan, "--config", config, "--json", "-") == 0
    out, err = capsys.readouterr()
    report = json.loads(out)  # nothing but the report on stdout
    assert [r["status"] for r in report["rows"]] == ["applied", "applied"]
    assert "ACCOUNT" in err and "[2/2]" in err


async def test_dry_run_sends_nothing(
    simulator: Simulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = plan_csv(tmp_path, "a,BTC,1", "b,ETH,2", "c,BTC,3")
    assert await cli("apply", plan, "--config", config, "--dry-run") == 0
    out, _ = capsys.readouterr()
    assert simulator.records == []
    assert "nothing was sent" in out
    assert "3 rows for 3 profiles" in out
    assert "profile a: 1 row, 1 currency: BTC\n" in out  # a and b: not known to share a user
    assert "profile b: 1 row, 1 currency: ETH\n" in out
    assert "profile c: 1 row, 1 currency: BTC\n" in out


async def test_failing_rows_exit_1_with_reasons(
    simulator: Simulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 3003 is not in portfolio margin mode (51010); PEPE is not a margin currency (59652).
    plan = plan_csv(tmp_path, "a,BTC,1", "spot,BTC,1", "spot,ETH,2", "a,PEPE,5")
    code, report = await apply_reporting(plan, config)
    assert code == 1
    out, err = capsys.readouterr()
    assert "3003: AccountModeError 51010: " in out
    assert "(2 rows: lines 3, 4)" in out
    assert "1001: AccountModeError 59652: " in out and "(1 row: line 5)" in out
    assert "4 rows: 1 applied, 0 superseded, 3 failed" in out
    assert "line 5 a PEPE=5 failed (AccountModeError 59652)" in err
    assert report["ok"] is False
    failed = [r for r in report["rows"] if r["status"] == "failed"]
    assert [(r["line"], r["error"]["type"], r["error"]["code"]) for r in failed] == [
        (3, "AccountModeError", "51010"),
        (4, "AccountModeError", "51010"),
        (5, "AccountModeError", "59652"),
    ]
    assert all(r["error"]["message"] for r in failed)
    assert simulator.values("1001")["BTC"] == "1"


async def test_a_profile_that_cannot_log_in_fails_only_its_rows(
    sim: tuple[Simulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator, url = sim
    config = write_config(tmp_path / "config.toml", url)
    with config.open("a") as f:
        f.write(f'[profiles.wrong]\napi_key = "{K3.api_key}"\nsecret_key = "{K3.secret_key}"\n'
                f'passphrase = "not-the-passphrase"\nbase_url = "{url}"\n')  # fmt: skip
    plan = plan_csv(tmp_path, "wrong,BTC,1", "a,BTC,2", "wrong,ETH,3")
    assert await cli("apply", plan, "--config", config, "--verify") == 1
    out, _ = capsys.readouterr()
    assert "profile wrong: AuthenticationError 50105: " in out and "(2 rows: lines 2, 4)" in out
    assert "3 rows: 1 applied, 0 superseded, 2 failed" in out
    assert "verify: read back 1 value; all match" in out
    assert "not-the-passphrase" not in out
    assert simulator.values("1001")["BTC"] == "2" and "BTC" not in simulator.values("2002")
    assert len(posts(simulator)) == 1  # nothing was sent for the profile that failed


class DropsBTC(dict[str, str]):
    """A user's stored values that acknowledge BTC but never keep it."""

    def __setitem__(self, key: str, value: str) -> None:
        if key != "BTC":
            super().__setitem__(key, value)


async def test_verify_reports_mismatches_and_exits_1(
    simulator: Simulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.users["1001"].values = DropsBTC(BTC="0.5")
    plan = plan_csv(tmp_path, "a,BTC,2", "a,ETH,3", "c,BTC,4")
    code, report = await apply_reporting(plan, config, "--verify")
    assert code == 1
    out, _ = capsys.readouterr()
    assert "3 rows: 3 applied, 0 superseded, 0 failed" in out
    assert "verify: read back 3 values; 1 differ:" in out
    assert "account 1001 BTC (" in out and "plan.csv line 2): expected 2, OKX holds 0.5" in out
    assert report["ok"] is False
    assert report["verify"]["mismatches"] == [
        {"account": "1001", "ccy": "BTC", "line": 2, "expected": "2", "actual": "0.5",
         "reason": "OKX holds 0.5"},
    ]  # fmt: skip
    # Without --verify the same plan succeeds: OKX acknowledged every row.
    assert await cli("apply", plan, "--config", config) == 0


async def test_bad_rows_are_all_reported_and_nothing_is_sent(
    simulator: Simulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = plan_csv(tmp_path, "a,BTC,1", "a,B-TC,1", "", "b,ETH,-1", "nobody,SOL,1", "a,XRP")
    assert await cli("apply", plan, "--config", config) == 2
    _, err = capsys.readouterr()
    assert simulator.records == []
    assert "4 error(s)" in err and "nothing was sent" in err
    assert "plan.csv line 3: bad ccy: ccy 'B-TC' is not a currency code" in err
    assert "plan.csv line 5: bad amount: amount '-1' is not a plain decimal number" in err
    assert "plan.csv line 6: unknown profile 'nobody' (known profiles: a, b, c, spot)" in err
    assert "plan.csv line 7: expected 3 fields, found 2" in err
    assert "Traceback" not in err


async def test_bad_json_items_are_numbered_from_1(
    simulator: Simulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text('[{"profile": "a", "ccy": "BTC", "amount": "1"}, {"profile": "a"}, 7,'
                    ' {"profile": "a", "ccy": "ETH", "amount": true}]')  # fmt: skip
    assert await cli("apply", plan, "--config", config) == 2
    _, err = capsys.readouterr()
    assert "JSON items, numbered from 1" in err
    assert "plan.json item 2: missing key(s) ccy, amount" in err
    assert "plan.json item 3: must be an object" in err
    assert "plan.json item 4: amount must be a string or a number in JSON, not true" in err
    assert simulator.records == []


async def test_missing_column_and_format_by_content(
    simulator: Simulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.txt"  # no extension: CSV by content
    plan.write_text("profile,currency,amount\na,BTC,1\n")
    assert await cli("apply", plan, "--config", config) == 2
    _, err = capsys.readouterr()
    assert "plan.txt line 1: missing column(s) ccy" in err
    plan.write_text('[{"profile": "a", "ccy": "BTC", "amount": "2"}]')  # JSON by content
    assert await cli("apply", plan, "--config", config) == 0
    assert simulator.values("1001")["BTC"] == "2"


async def test_duplicate_currency_warns_and_the_later_row_wins(
    simulator: Simulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Lines 2 and 4: one profile. Lines 3 and 5: two profiles of one user (found via OKX).
    plan = plan_csv(tmp_path, "a,BTC,1", "a,ETH,5", "a,BTC,2", "b,ETH,6")
    code, report = await apply_reporting(plan, config, "--verify")
    assert code == 0
    out, err = capsys.readouterr()
    # Told once the accounts are known: profile a's key belongs to account 1001.
    assert "lines 2 and 4 set BTC of account 1001 to different values: 1 (profile a), then 2 " \
        "(profile a); line 4 wins" in err  # fmt: skip
    assert err.count("warning: ") == 2, err
    assert "lines 3 and 5 set ETH of account 1001 to different values: 5 (profile a), then 6 " \
        "(profile b); line 5 wins" in err  # fmt: skip
    assert simulator.values("1001") == {**simulator.values("1001"), "BTC": "2", "ETH": "6"}
    rows = report["rows"]
    # Each currency's lane was idle, so the earlier row went out at once; the later row
    # followed it, in order, and is what the exchange holds.
    assert [(r["line"], r["status"], r["applied"]) for r in rows] == [
        (2, "applied", "1"),
        (3, "applied", "5"),
        (4, "applied", "2"),
        (5, "applied", "6"),
    ]
    bodies = [(r.body or {}).get("clSpotInUseAmt") for r in posts(simulator)]
    assert bodies.index("2") > bodies.index("1") and bodies.index("6") > bodies.index("5")
    assert "verify: read back 2 values; all match" in out


async def test_equal_duplicates_do_not_warn(
    sim: tuple[Simulator, str], config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = plan_csv(tmp_path, "a,BTC,1.0", "a,BTC,1")
    assert await cli("apply", plan, "--config", config, "--dry-run") == 0
    assert "warning" not in capsys.readouterr().err


async def test_config_file_readable_by_others_warns(
    sim: tuple[Simulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = plan_csv(tmp_path, "a,BTC,1")
    for mode in (0o644, 0o640, 0o604, 0o620):
        loose = write_config(tmp_path / "loose.toml", sim[1], mode=mode)
        assert await cli("apply", plan, "--config", loose, "--dry-run") == 0
        err = capsys.readouterr().err
        assert f"config file {loose} is readable by group/others (mode {mode:o})" in err
        assert "chmod 600" in err
    tight = write_config(tmp_path / "tight.toml", sim[1], mode=0o600)
    assert await cli("apply", plan, "--config", tight, "--dry-run") == 0
    assert "readable by group/others" not in capsys.readouterr().err


async def test_default_config_path_and_env_profiles(
    sim: tuple[Simulator, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    simulator, url = sim
    default = tmp_path / "xdg" / "okx-async" / "config.toml"
    default.parent.mkdir(parents=True)
    write_config(default, url)
    monkeypatch.setenv("OKX_PROFILE_EXTRA_KEY_API_KEY", K3.api_key)
    monkeypatch.setenv("OKX_PROFILE_EXTRA_KEY_SECRET_KEY", K3.secret_key)
    monkeypatch.setenv("OKX_PROFILE_EXTRA_KEY_PASSPHRASE", K3.passphrase)
    monkeypatch.setenv("OKX_PROFILE_EXTRA_KEY_BASE_URL", url)
    plan = plan_csv(tmp_path, "a,BTC,3", "extra-key,ETH,4")
    assert await cli("apply", plan) == 0  # profiles from $XDG_CONFIG_HOME and the env
    assert simulator.values("1001")["BTC"] == "3"
    assert simulator.values("2002")["ETH"] == "4"
    monkeypatch.delenv("OKX_PROFILE_EXTRA_KEY_PASSPHRASE")
    assert await cli("apply", plan) == 2
    err = capsys.readouterr().err
    assert "profile 'extra-key' has no passphrase: add OKX_PROFILE_EXTRA_KEY_PASSPHRASE" in err


async def test_bad_config_file_is_one_line(
    sim: tuple[Simulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = plan_csv(tmp_path, "a,BTC,1")
    bad = tmp_path / "bad.toml"
    bad.write_text('[profiles.a]\napi_key = "x"\nsecret = "oops"\n')
    bad.chmod(0o600)
    assert await cli("apply", plan, "--config", bad) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: config file") and "unknown key(s) secret" in err
    assert "oops" not in err
    assert await cli("apply", plan, "--config", tmp_path / "absent.toml") == 2
    assert "cannot read config file" in capsys.readouterr().err
    good = write_config(tmp_path / "good.toml", sim[1])
    assert await cli("apply", tmp_path / "absent.csv", "--config", good) == 2
    assert "cannot read plan" in capsys.readouterr().err


async def test_secrets_never_appear_in_any_output(
    sim: tuple[Simulator, str], config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = []
    plan = plan_csv(tmp_path, "a,BTC,1", "b,BTC,2", "spot,ETH,1", "c,SOL,3")
    report_path = tmp_path / "report.json"
    for args in (["--dry-run"], ["--dry-run", "--json", "-"], ["--json", report_path, "--verify"],
                 ["--json", "-"]):  # fmt: skip
        await cli("apply", plan, "--config", config, *args)
        texts += capsys.readouterr()
    texts.append(report_path.read_text())
    bad = plan_csv(tmp_path, "a,BTC,x", "nobody,BTC,1", name="bad.csv")
    assert await cli("apply", bad, "--config", config) == 2
    texts += capsys.readouterr()
    blob = "\n".join(texts)
    assert "AccountModeError 51010" in blob and "unknown profile" in blob  # output was captured
    for secret in SECRETS:
        assert secret not in blob


async def test_timeout_fails_rows_that_cannot_be_sent_in_time(
    simulator: Simulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ccys = [f"C{i}" for i in range(14)]  # 10 go out at once, the rest need a new window
    plan = plan_csv(tmp_path, *(f"a,{c},1" for c in ccys))
    assert await cli("apply", plan, "--config", config, "--timeout", "1.0", "-q") == 1
    out, err = capsys.readouterr()
    assert "DeadlineExceededError" in out
    assert err == ""  # -q: no progress
    assert len(posts(simulator)) == 10


def test_ctrl_c_exits_130_without_a_traceback(tmp_path: Path) -> None:
    """SIGINT to a real `okx-async apply` that waits on the rate limit: the summary of
    applied and not sent rows is printed and the JSON report written, then exit 130."""
    server = subprocess.Popen(
        [sys.executable, "-m", "okx_async", "simulate", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        url = first.split()[4]
        assert url.startswith("http://127.0.0.1:")
        env = {k: v for k, v in os.environ.items() if not k.startswith("OKX_")}
        from okx_async.simulator import demo_config

        key = demo_config().users[0].keys[0]
        env.update(OKX_API_KEY=key.api_key, OKX_SECRET_KEY=key.secret_key,
                   OKX_PASSPHRASE=key.passphrase, OKX_BASE_URL=url)  # fmt: skip
        ccys = sorted(DEFAULT_MARGIN_CCYS)  # 24: 10 go at once, the rest wait a window
        plan = plan_csv(tmp_path, *(f"default,{c},1" for c in ccys))
        report_path = tmp_path / "report.json"
        apply = subprocess.Popen(
            [sys.executable, "-m", "okx_async", "apply", str(plan), "--json", str(report_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert apply.stderr is not None
        assert apply.stderr.readline().startswith("[1/24]")
        apply.send_signal(signal.SIGINT)
        out, err = apply.communicate(timeout=30)
        assert apply.returncode == 130
        assert "interrupted" in err and "Traceback" not in err + out
        report = json.loads(report_path.read_text())
        statuses = [r["status"] for r in report["rows"]]
        applied, not_sent = statuses.count("applied"), statuses.count("not_sent")
        assert applied >= 1 and not_sent >= 1 and applied + not_sent == 24, statuses
        assert (report["ok"], report["interrupted"]) == (False, True)
        assert f"24 rows: {applied} applied, 0 superseded, 0 failed, {not_sent} not sent" in out
        assert "NOT SENT" in out and f"report written to {report_path}" in err
    finally:
        server.send_signal(signal.SIGINT)
        try:
            _, server_err = server.communicate(timeout=30)
        finally:
            server.kill()
    assert server.returncode == 0, server_err
    assert "Traceback" not in server_err and "simulator stopped" in server_err


async def test_json_plans_are_told_about_json_types(
    simulator: Simulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(
        '[{"profile": 5, "ccy": "BTC", "amount": "1"}, {"profile": "a", "ccy": null, '
        '"amount": "1"}, {"profile": "a", "ccy": "ETH", "amount": true}, '
        '{"profile": "a", "ccy": ["SOL"], "amount": NaN}, {"profile": "a", "ccy": "XRP", '
        '"amount": {"v": 1}}, {"profile": "a", "ccy": "DOGE", "amount": -Infinity}]'
    )
    assert await cli("apply", plan, "--config", config) == 2
    _, err = capsys.readouterr()
    assert "item 1: profile must be a string in JSON, not a number" in err
    assert "item 2: ccy must be a string in JSON, not null" in err
    assert "item 3: amount must be a string or a number in JSON, not true" in err
    assert "item 4: ccy must be a string in JSON, not an array" in err
    assert "item 4: bad amount: amount must be a finite number, not NaN" in err
    assert "item 5: amount must be a string or a number in JSON, not an object" in err
    assert "item 6: bad amount: amount must be a finite number, not -Infinity" in err
    for python_word in ("NoneType", "bool", "not str", "'nan'", "float", "list", "dict"):
        assert python_word not in err, python_word
    assert simulator.records == []


async def test_a_bad_limiter_url_is_reported_once(
    simulator: Simulator,
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OKX_ASYNC_LIMITER_URL")  # cli_env's; the alias is under test
    monkeypatch.setenv("OKX_ASYNC_REDIS_URL", "bad://nowhere")
    plan = plan_csv(tmp_path, "a,BTC,1", "a,ETH,1", "b,SOL,1", "c,XRP,1", "a,DOGE,x")
    assert await cli("apply", plan, "--config", config) == 2
    _, err = capsys.readouterr()
    assert err.count("unknown limiter store 'bad' in 'bad://nowhere'") == 1, err
    assert "plan.csv line 2: OKX_ASYNC_REDIS_URL: unknown limiter store" in err  # first row
    assert "plan.csv line 6: bad amount" in err  # other problems are still all told
    assert simulator.records == []


async def test_minus_zero_in_a_plan_is_sent_as_zero(
    simulator: Simulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text('[{"profile": "a", "ccy": "BTC", "amount": "-0"},'
                    ' {"profile": "a", "ccy": "ETH", "amount": -0.0}]')  # fmt: skip
    assert await cli("apply", plan, "--config", config, "-q") == 0, capsys.readouterr()
    assert simulator.values("1001") == {"BTC": "0", "ETH": "0"}


async def test_verify_reports_a_currency_okx_does_not_return(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with served([SimUser("1001", [K1], equity={"BTC": "1"})]) as (simulator, url):
        config = write_config(tmp_path / "config.toml", url)
        plan = plan_csv(tmp_path, "a,BTC,0.5", "a,ETH,2")  # ETH: accepted, but none is held
        code, report = await apply_reporting(plan, config, "--verify", "-q")
        assert code == 1
    out, _ = capsys.readouterr()
    assert "verify: read back 2 values; 1 differ:" in out
    assert "account 1001 ETH (" in out and "expected 2, not returned by OKX" in out
    [mismatch] = report["verify"]["mismatches"]
    assert (mismatch["ccy"], mismatch["actual"], mismatch["reason"]) == (
        "ETH", None, "not returned by OKX",
    )  # fmt: skip
    assert simulator.values("1001") == {"BTC": "0.5", "ETH": "2"}


async def test_identical_duplicate_rows_are_sent_once(
    simulator: Simulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a and b are keys of user 1001; c is user 2002. Rows 2 and 3 repeat row 1's value.
    plan = plan_csv(tmp_path, "a,BTC,1", "a,BTC,1.0", "b,BTC,1", "c,BTC,1", "a,BTC,2")
    code, report = await apply_reporting(plan, config)
    assert code == 0
    _, err = capsys.readouterr()
    sent = [(r.uid, r.body) for r in posts(simulator)]  # type: ignore[attr-defined]
    assert [r["status"] for r in report["rows"]] == ["applied"] * 5
    assert sent.count(("1001", {"ccy": "BTC", "clSpotInUseAmt": "1"})) == 1
    assert sent.count(("2002", {"ccy": "BTC", "clSpotInUseAmt": "1"})) == 1
    assert len(sent) == 3
    assert "plan.csv line 3 a BTC=1.0 applied (same as " in err
    assert "plan.csv line 4 b BTC=1 applied (same as " in err and "line 2: sent once)" in err
    assert simulator.values("1001")["BTC"] == "2"


async def test_a_profile_with_another_users_id_warns_and_uses_the_real_one(
    simulator: Simulator,
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OKX_PROFILE_A_USER_ID", "9999")
    ccys = sorted(DEFAULT_MARGIN_CCYS)  # 12 rows per profile: two budgets would send 20 at once
    plan = plan_csv(tmp_path, *(f"a,{c},1" for c in ccys[:12]), *(f"b,{c},1" for c in ccys[12:]))
    code, report = await apply_reporting(plan, config, "-q")
    assert code == 0
    _, err = capsys.readouterr()
    assert (
        "warning: profile 'a' says user_id 9999, but its API key belongs to User ID 1001: "
        "using 1001 (correct the profile)"
    ) in err
    # Both profiles are one account again: the budget of 1001 is the one that counts.
    assert [a["account"] for a in report["accounts"]] == ["1001"]
    assert simulator.rate_limited_count() == 0 and simulator.max_in_window("1001", SET) == 10
    assert all(simulator.values("1001")[c] == "1" for c in ccys)


async def test_dry_run_names_each_profile_once(
    sim: tuple[Simulator, str], config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = plan_csv(tmp_path, "a,BTC,1", "a,ETH,1", "c,SOL,2")
    assert await cli("apply", plan, "--config", config, "--dry-run") == 0
    out, _ = capsys.readouterr()
    assert out.count("profile a") == 1 and out.count("profile c") == 1, out
    assert f"    {sim[1]}, from {config}" in out


async def test_plain_http_elsewhere_gets_advice_the_cli_user_can_follow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "config.toml", "http://okx.example.com")
    plan = plan_csv(tmp_path, "a,BTC,1", "b,ETH,1", "a,SOL,1")
    assert await cli("apply", plan, "--config", config) == 2
    _, err = capsys.readouterr()
    assert "allow_insecure_http" not in err
    assert err.count("uses plain http to a non-loopback host; use https (plain http is") == 1


async def test_a_conflict_is_told_once_per_account_in_a_run(
    sim: tuple[Simulator, str], config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Lines 2 and 3: one profile; line 4: another profile of the same user (1001).
    plan = plan_csv(tmp_path, "a,BTC,1", "a,BTC,2", "b,BTC,3")
    assert await cli("apply", plan, "--config", config, "-q") == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        f"warning: {plan} lines 2, 3 and 4 set BTC of account 1001 to different values: 1 "
        "(profile a), then 2 (profile a), then 3 (profile b); line 4 wins (the last value "
        "asked for is the one applied)"
    ]
    # A dry run cannot ask OKX: it tells what the plan alone shows.
    assert await cli("apply", plan, "--config", config, "--dry-run") == 0
    err = capsys.readouterr().err
    assert err.count("warning: ") == 1 and "lines 2 and 3 set BTC of profile a" in err, err


async def test_the_summary_shows_the_busiest_window_against_the_limit(
    simulator: Simulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = plan_csv(tmp_path, *(f"a,{ccy},1" for ccy in sorted(DEFAULT_MARGIN_CCYS)[:12]))
    report = tmp_path / "report.json"
    assert await cli("apply", plan, "--config", config, "-q", "--json", report) == 0
    out = capsys.readouterr().out
    # 12 requests for one user: 10 go at once, 2 wait for the next window.
    busiest = simulator.max_in_window("1001", SET)
    assert busiest == 10
    assert "12 requests in " in out
    assert "(busiest 2-s window: 10 of the 10 allowed per user)" in out, out
    assert "/s)" not in out
    [account] = json.loads(report.read_text())["accounts"]
    assert account["busiest_window"] == 10
