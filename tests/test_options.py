"""ClientOptions: OKXClient's arguments validated in one frozen object; one yes/no reader."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from okx_async import (
    ClientKeywords,
    ClientOptions,
    InvalidInputError,
    OKXClient,
    RetryPolicy,
    env_flag,
)
from okx_async.cli._profiles import ConfigError, load_profiles


def test_build_normalises_and_freezes() -> None:
    options = ClientOptions.build(base_url="eea", demo="yes", user_id="42")
    assert options.base_url == "https://eea.okx.com"
    assert options.demo is True
    assert options.retry == RetryPolicy()
    assert not hasattr(options, "__dict__")  # slotted
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.demo = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_url": 7}, "base_url must be a URL or a region name"),
        ({"base_url": "mars"}, "neither a URL nor a region name"),
        ({"base_url": "http://example.com"}, "plain http to a non-loopback host"),
        ({"request_timeout": 0}, "request_timeout must be a positive number"),
        ({"connect_timeout": float("nan")}, "connect_timeout must be a positive number"),
        ({"user_id": "12a"}, "user_id must be OKX's numeric User ID"),
        ({"demo": "perhaps"}, "demo must be 1/0"),
        ({"demo": 1}, "demo must be a bool"),
        ({"ssl": True}, "ssl must be an ssl.SSLContext"),
    ],
)
def test_build_refuses_what_the_client_refuses(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ClientOptions.build(**kwargs)  # type: ignore[arg-type]
    # The client's constructor is the same check, not a second copy of it.
    with pytest.raises(InvalidInputError, match=message):
        OKXClient(api_key="k", secret_key="s", passphrase="p", **kwargs)  # type: ignore[arg-type]


def test_repr_masks_proxy_and_store_credentials() -> None:
    options = ClientOptions.build(
        proxy="http://user:hunter2@proxy:3128", limiter_url="redis://:s3cret@localhost:6379/0"
    )
    text = repr(options)
    assert "hunter2" not in text and "s3cret" not in text
    assert "user:***@proxy" in text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[("1", True), (" TRUE ", True), ("on", True), ("yes", True)],
        *[("0", False), ("off", False), ("No", False), ("", False), ("maybe", None), ("2", None)],
    ],
)
def test_one_flag_reader_for_library_and_cli(
    value: str, expected: bool | None, tmp_path: Path
) -> None:
    # No config file (XDG_CONFIG_HOME is empty): the profile comes from the environment.
    env = {
        "XDG_CONFIG_HOME": str(tmp_path),
        "OKX_API_KEY": "k",
        "OKX_SECRET_KEY": "s",
        "OKX_PASSPHRASE": "p",
        "OKX_DEMO": value,
    }
    if expected is None:
        with pytest.raises(InvalidInputError, match="OKX_DEMO must be"):
            env_flag("OKX_DEMO", value)
        with pytest.raises(ConfigError, match="OKX_DEMO must be"):
            load_profiles(None, env=env, warn=print).resolve("default")
        return
    assert env_flag("OKX_DEMO", value) is expected
    if value:  # the CLI skips empty variables
        store = load_profiles(None, env=env, warn=print)
        assert store.resolve("default").demo is expected


@pytest.mark.parametrize("name", ["coalesce", "allow_insecure_http", "trust_env"])
@pytest.mark.parametrize("value", ["no", "false", 0, None])
def test_yes_no_options_take_a_bool_only(name: str, value: object) -> None:
    # 'no' is a truthy str: taking it would turn coalescing (or plain http) on.
    with pytest.raises(InvalidInputError, match=f"^{name} must be True or False, not "):
        ClientOptions.build(**{name: value})  # type: ignore[arg-type]


def test_a_bad_demo_lists_every_spelling_okx_demo_takes() -> None:
    for value in (2, "2"):
        with pytest.raises(InvalidInputError) as info:
            ClientOptions.build(demo=value)  # type: ignore[arg-type]
        for spelling in ("1/0", "true/false", "yes/no", "on/off"):
            assert spelling in str(info.value), (value, str(info.value))


@pytest.mark.parametrize("host", ["127.1", "127.0.1", "2130706433", "0x7f.1", "[::1]"])
def test_plain_http_to_any_loopback_spelling_is_allowed(host: str) -> None:
    options = ClientOptions.build(base_url=f"http://{host}:8080")
    assert options.base_url == f"http://{host}:8080"


@pytest.mark.parametrize("host", ["128.1", "10.1", "0x7e.1", "127.0.0.1.example.com"])
def test_plain_http_to_short_spellings_of_other_hosts_is_refused(host: str) -> None:
    with pytest.raises(InvalidInputError, match="plain http to a non-loopback host"):
        ClientOptions.build(base_url=f"http://{host}:8080")


def test_one_list_of_keywords_the_client_and_the_options_share() -> None:
    # ClientKeywords (what callers pass) and ClientOptions (what is kept) name the same
    # options: a field added to one and not the other fails here.
    fields = {f.name for f in dataclasses.fields(ClientOptions)}
    assert set(ClientKeywords.__annotations__) == fields
    defaults = ClientOptions()
    client = OKXClient(api_key="k", secret_key="s", passphrase="p")
    assert client._options == defaults  # no keyword: the dataclass defaults, validated
    assert ClientOptions(retry=None).retry == RetryPolicy()  # type: ignore[arg-type]


def test_every_keyword_is_documented_with_its_default() -> None:
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(ClientKeywords))
    body = tree.body[0].body  # type: ignore[attr-defined]
    documented: dict[str, str] = {}
    for field, doc in itertools.pairwise(body):
        if isinstance(field, ast.AnnAssign) and isinstance(doc, ast.Expr):
            documented[field.target.id] = doc.value.value  # type: ignore[union-attr, attr-defined]
    assert set(documented) == set(ClientKeywords.__annotations__)
    for name, doc in documented.items():
        assert "default" in doc.lower(), name


def test_the_constructor_and_build_are_one_check() -> None:
    with pytest.raises(InvalidInputError, match="landing_horizon must be a positive number"):
        ClientOptions(landing_horizon=-1.0)
    options = ClientOptions(demo="on", base_url="us")  # type: ignore[arg-type]
    assert options == ClientOptions.build(demo="on", base_url="us")
    assert options.demo is True and options.base_url == "https://us.okx.com"


def test_the_public_signature_is_typed_for_mypy(tmp_path: Path) -> None:
    # Every keyword is checked by a type checker, though the constructor takes them
    # as **options: a wrong type and an unknown keyword are errors, the rest passes.
    api = pytest.importorskip("mypy.api")
    good = tmp_path / "good.py"
    good.write_text(
        "from okx_async import OKXClient, RetryPolicy\n"
        "OKXClient(api_key='k', secret_key='s', passphrase='p', demo='yes',\n"
        "          request_timeout=2.5, retry=RetryPolicy(), local_addr=('::1', 0))\n"
    )
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from okx_async import OKXClient\n"
        "OKXClient(api_key='k', secret_key='s', passphrase='p', request_timeout='2')\n"
        "OKXClient(api_key='k', secret_key='s', passphrase='p', request_timout=2.0)\n"
    )
    cache = ["--cache-dir", str(tmp_path / "cache"), "--strict", "--no-incremental"]
    out, _, status = api.run([*cache, str(good)])
    assert status == 0, out
    out, _, status = api.run([*cache, str(bad)])
    assert status == 1
    assert 'bad.py:2: error: Argument "request_timeout"' in out
    assert 'bad.py:3: error: Unexpected keyword argument "request_timout"' in out
