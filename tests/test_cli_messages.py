"""What the CLI tells a new user: uncertain outcomes, setup failures, before anything is sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sim_support import run_cli, served, use_key

from okx_async.simulator import SimKey, Simulator, SimUser

SET = "/api/v5/account/set-riskOffset-amt"
KEY = SimKey("msg-key-1001", "SECRET-msg-1001-xyz", "PASS-msg-1001-xyz")
USERS = [SimUser(uid="1001", keys=[KEY], equity={"BTC": "3", "ETH": "40"})]


pytestmark = pytest.mark.usefixtures("cli_env")


@pytest.fixture
async def sim(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Simulator]:
    async with served(USERS) as (simulator, url):
        use_key(monkeypatch, url, KEY)
        yield simulator


cli = run_cli


def plan(tmp_path: Path, *rows: str) -> str:
    path = tmp_path / "plan.csv"
    path.write_text("profile,ccy,amount\n" + "".join(f"{r}\n" for r in rows))
    return str(path)


async def test_a_set_that_timed_out_on_the_wire_says_it_may_still_apply(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.hold_next("BTC", 1.0)  # OKX applies it after the client gave up
    assert await cli("set", "BTC", "1", "--timeout", "0.4", "--limiter-url", "memory://") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("error: okx-async set BTC 1: "), err
    assert "may still apply this value up to 30 s later" in err, err
    assert "check with `okx-async get BTC` before setting it again" in err, err


async def test_a_set_refused_before_sending_does_not_say_it_may_apply(
    sim: Simulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OKX_PASSPHRASE", "wrong-passphrase")  # the lookup fails: none sent
    assert await cli("set", "BTC", "1", "--timeout", "2", "--limiter-url", "memory://") == 1
    err = capsys.readouterr().err
    assert "may still apply" not in err and err.count("\n") == 1, err


async def test_apply_rows_that_timed_out_on_the_wire_may_still_apply(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sim.hold_next("BTC", 1.0)
    report = tmp_path / "report.json"
    rows = plan(tmp_path, "default,BTC,1", "default,ETH,2")
    argv = ["apply", rows, "-q", "--timeout", "0.4", "--limiter-url", "memory://"]
    assert await cli(*argv, "--json", str(report)) == 1
    out = capsys.readouterr().out
    assert "1 failed (1 may still apply)" in out, out
    (failure,) = [line for line in out.splitlines() if "DeadlineExceededError" in line]
    assert "may still apply" in failure and "okx-async get BTC" in failure, failure
    data = json.loads(report.read_text())
    flags = {r["ccy"]: r["may_still_apply"] for r in data["rows"]}
    assert flags == {"BTC": True, "ETH": False}


async def test_an_unwritable_report_path_exits_2_before_anything_is_sent(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rows = plan(tmp_path, "default,BTC,1")
    report = str(tmp_path / "no-such-dir" / "r.json")
    assert await cli("apply", rows, "-q", "--limiter-url", "memory://", "--json", report) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"error: cannot write the report to {report}: the directory "
        f"{tmp_path / 'no-such-dir'} does not exist; nothing was sent\n"
    )
    assert sim.records == []  # not even the User ID lookup


async def test_a_sqlite_limiter_in_a_missing_directory_exits_2_saying_to_create_it(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "no-such-dir"
    url = f"sqlite:///{folder}/x.db"  # four slashes: the style of SQLAlchemy's URLs
    assert url.startswith("sqlite:////")
    assert await cli("set", "BTC", "1", "--limiter-url", url) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"error: the limiter URL {url} names a file in {folder}, which does not exist: "
        f"create the directory (mkdir -p {folder}) or pass another --limiter-url\n"
    )
    assert sim.records == []


def test_an_unreachable_redis_limiter_is_one_line_and_exit_2(tmp_path: Path) -> None:
    # A real process: the log line it must not print goes to stderr only where no logging
    # is set up (under pytest, the log capture would take it).
    pytest.importorskip("redis")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OKX_")}
    env |= {"OKX_API_KEY": "k", "OKX_SECRET_KEY": "s", "OKX_PASSPHRASE": "p"}
    env |= {"OKX_BASE_URL": "http://127.0.0.1:9", "XDG_STATE_HOME": str(tmp_path)}
    url = "redis://127.0.0.1:1/0"  # port 1: nothing listens there
    argv = [sys.executable, "-m", "okx_async", "set", "BTC", "1", "--limiter-url", url]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr  # no log line before it
    assert done.stderr.startswith("error: okx-async set BTC 1: LimiterUnavailableError: ")
    assert "check that the limiter store runs" in done.stderr


@pytest.mark.parametrize(
    ("times", "busiest"),
    [
        ([], 0),
        ([0.0], 1),
        ([0.0, 1.999, 2.0, 2.5], 3),  # [0, 2) holds 2; [0.5, 2.5] holds 3
        ([0.0, 0.0, 0.0, 4.0], 3),
        ([0.0, 1.0, 2.0, 3.0, 4.0], 2),  # a request exactly a window later is the next window
    ],
)
def test_busiest_window_counts_a_half_open_span(times: list[float], busiest: int) -> None:
    from okx_async import busiest_window

    assert busiest_window(times, 2.0) == busiest
