"""The public surface: names in __all__ exist, private modules stay private."""

from __future__ import annotations

import re
from pathlib import Path

import okx_async


def test_all_names_exist_and_are_sorted_sensibly() -> None:
    for name in okx_async.__all__:
        assert hasattr(okx_async, name), name
    assert len(set(okx_async.__all__)) == len(okx_async.__all__)


def test_documented_names_are_public() -> None:
    for name in [
        "OKXClient",
        "OKXError",
        "APIError",
        "RateLimitedError",
        "TLSError",
        "RiskOffsetResult",
        "AccountConfig",
        "RiskOffsetAmount",
        "RetryPolicy",
        "TooManyOpenFilesError",
        "sign",
        "__version__",
    ]:
        assert name in okx_async.__all__


def test_version_comes_from_metadata() -> None:
    from importlib.metadata import version

    assert okx_async.__version__ == version("okx_async")


def test_public_names_do_not_leak_private_modules() -> None:
    for name in okx_async.__all__:
        obj = getattr(okx_async, name)
        if isinstance(obj, type) or callable(obj):
            # Defined inside the package (re-exported), never a third-party object.
            assert obj.__module__.startswith("okx_async."), name


def test_simulator_and_cli_use_only_the_public_api() -> None:
    root = Path(okx_async.__file__).parent
    for sub in ("simulator", "cli"):
        for path in (root / sub).rglob("*.py"):
            text = path.read_text()
            bad = re.findall(r"okx_async\._[a-z]\w*|from \.\._[a-z]\w*", text)
            assert not bad, f"{path} imports private modules: {bad}"


def test_limiter_stores_are_public_and_redis_stays_optional() -> None:
    for name in [
        "KeyLimiter",
        "LimiterBackend",
        "LocalLimiterBackend",
        "SqliteLimiterBackend",
        "RedisLimiterBackend",
        "limiter_from_url",
    ]:
        assert name in okx_async.__all__, name
    # Importing okx_async must not import redis: it is an optional extra.
    import subprocess
    import sys

    code = (
        "import sys, okx_async; assert 'redis' not in sys.modules; "
        "assert 'okx_async._redis_limiter' not in sys.modules; "
        "okx_async.RedisLimiterBackend; assert 'okx_async._redis_limiter' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_what_the_cli_and_benchmarks_need_is_public() -> None:
    for name in [
        "SET_RISK_OFFSET_PATH",
        "ACCOUNT_CONFIG_PATH",
        "BALANCE_PATH",
        "SERVER_TIME_PATH",
        "REGION_URLS",
        "KeyLimiter",
        "LimiterBackend",
        "Lease",
        "LimiterSnapshot",
        "LocalKeyLimiter",
        "SqliteKeyLimiter",
        "RedisKeyLimiter",
        "ClientOptions",
        "env_flag",
        "busiest_window",
    ]:
        assert name in okx_async.__all__, name
    assert okx_async.SET_RISK_OFFSET_PATH == "/api/v5/account/set-riskOffset-amt"
    # Nothing private is listed.
    assert [n for n in okx_async.__all__ if n.startswith("_") and n != "__version__"] == []


def test_benchmarks_use_only_the_public_api() -> None:
    root = Path(okx_async.__file__).parent.parent / "benchmarks"
    for path in root.glob("*.py"):
        bad = re.findall(r"okx_async\._[a-z]\w*", path.read_text())
        assert not bad, f"{path} imports private modules: {bad}"
