"""The import rules of docs/architecture.md, read from the source with `ast`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import okx_async

ROOT = Path(okx_async.__file__).parent

# No I/O, no event loop: every other layer may use them, they use only each other.
FOUNDATIONS = {
    "_defaults",
    "_errors",
    "_models",
    "_validation",
    "_auth",
    "_limits",
    "_retry",
    "_stats",
    "_urls",
    "_options",
    "_limiter._rules",
}
STORES = {"_limiter._memory", "_limiter._sqlite", "_limiter._queue", "_limiter._urls"}
STORES |= {"_limiter._sqlite_file", "_limiter._sqlite_key", "_limiter._sqlite_rows"}
STORES |= {"_limiter._sqlite_layout"}
STORES |= {"_ratelimit", "_redis_limiter", "_redis_link", "_redis_scripts"}
STORES |= {"_lane_store", "_redis_lanes"}
STORES |= {"_redis_budget", "_redis_fallback", "_redis_key", "_redis_ledger", "_redis_outage"}
NETWORK = {"_transport", "_pool"}
MECHANISMS = {"_identity", "_ordering", "_clock", "_telemetry"}
SHARED = {"_shared"}  # the per-loop object: lanes, clocks, the in-process store, pools
CLIENT = {"_attempts", "_budgets", "_client", "_events", "_submit"}

# Bottom up: (layer, its modules, the layers whose modules it may import). The
# mechanisms are independent of each other: each one is only given what it needs.
LAYERS = [
    ("foundations", FOUNDATIONS, ("foundations",)),
    ("stores", STORES, ("foundations", "stores")),
    ("network", NETWORK, ("foundations", "network")),
    ("mechanisms", MECHANISMS, ("foundations",)),
    ("shared", SHARED, ("foundations", "stores", "network", "mechanisms")),
    ("client", CLIENT, ("foundations", "stores", "network", "mechanisms", "shared", "client")),
]


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _imports(path: Path, *, runtime_only: bool = False) -> set[str]:
    """Modules `path` imports: the package's as "_x", "cli._y" (the package itself as
    "okx_async"), others ("aiohttp", "asyncio") by full name. With `runtime_only`,
    imports under `if TYPE_CHECKING:` are left out."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    if runtime_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    package = ["okx_async", *_module(path).split(".")[:-1]]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            if node.level:
                base = package[: len(package) - node.level + 1]
                found.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                found.add(node.module)
    return {n.removeprefix("okx_async.") for n in found}


def _internal(names: set[str]) -> set[str]:
    return {n for n in names if n == "okx_async" or n.startswith(("_", "cli", "simulator"))}


def _modules() -> dict[str, Path]:
    return {
        _module(p): p for p in ROOT.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")
    }


def test_the_rule_reader_sees_imports() -> None:
    # The reader itself must be able to fail: a known import is seen, a TYPE_CHECKING
    # one is left out when asked.
    client = _imports(ROOT / "_client.py")
    assert {"_transport", "_options", "aiohttp"} <= client
    options_runtime = _imports(ROOT / "_options.py", runtime_only=True)
    assert "aiohttp" in _imports(ROOT / "_options.py")
    assert "aiohttp" not in options_runtime


@pytest.mark.parametrize("app", ["cli", "simulator"])
def test_cli_and_simulator_import_only_the_public_package(app: str) -> None:
    for name, path in _modules().items():
        if not name.startswith(app + "."):
            continue
        for imported in _internal(_imports(path)):
            allowed = imported in ("okx_async", "simulator") or imported.startswith(app + ".")
            assert allowed, f"{name} imports {imported}: use okx_async's public names"


def test_foundations_import_only_foundations() -> None:
    for name in FOUNDATIONS:
        path = ROOT / (name.replace(".", "/") + ".py")
        inner = _internal(_imports(path, runtime_only=True))
        assert inner <= FOUNDATIONS, f"{name} imports {sorted(inner - FOUNDATIONS)}"


def _library() -> dict[str, Path]:
    return {n: p for n, p in _modules().items() if not n.startswith(("cli.", "simulator."))}


def test_every_library_module_has_one_layer() -> None:
    # A new module must be placed in a layer (here and in docs/architecture.md) before
    # the rules below can check it.
    placed = [name for _, modules, _ in LAYERS for name in modules]
    assert len(placed) == len(set(placed)), "a module in two layers"
    assert set(_library()) == set(placed)


@pytest.mark.parametrize(("layer", "modules", "may_import"), LAYERS, ids=[r[0] for r in LAYERS])
def test_each_layer_imports_only_the_layers_it_may(
    layer: str, modules: set[str], may_import: tuple[str, ...]
) -> None:
    # All imports, TYPE_CHECKING ones too: a type from above is a dependency on it all
    # the same. The transport, for one, is given its pools; it never looks them up.
    allowed = {n for name, ms, _ in LAYERS if name in may_import for n in ms}
    paths = _library()
    for name in modules:
        inner = _internal(_imports(paths[name])) - {name}
        assert inner <= allowed, f"{layer} module {name} imports {sorted(inner - allowed)}"


def test_one_per_loop_registry() -> None:
    """State kept per event loop lives in `_shared` alone (one caching rule): no other
    module keeps a module-level dictionary keyed by loops, weak or not."""
    registries = []
    for name, path in _library().items():
        for node in ast.parse(path.read_text()).body:
            # Objects made at import time (a call, a dict), not type aliases.
            if not isinstance(node, (ast.Assign, ast.AnnAssign)):
                continue
            if not isinstance(node.value, (ast.Call, ast.Dict, ast.DictComp)):
                continue
            text = ast.unparse(node)
            if "AbstractEventLoop" in text or "WeakKeyDictionary" in text:
                registries.append((name, text))
    by_loop = [(n, t) for n, t in registries if "AbstractEventLoop" in t]
    assert [n for n, _ in by_loop] == ["_shared"], by_loop
    # The other weak registry is keyed by meter provider, not by loop.
    assert sorted(n for n, _ in registries) == ["_shared", "_telemetry"], registries


def test_network_knows_no_limiter_and_stores_no_network() -> None:
    for name in NETWORK:
        imported = _imports(ROOT / f"{name}.py")
        assert not imported & (STORES | {"_limits", "_client", "_ordering"}), name
    for name in STORES:
        imported = _imports(ROOT / (name.replace(".", "/") + ".py"))
        assert not imported & (NETWORK | {"_client", "_ordering", "aiohttp"}), name


def test_only_the_network_layer_and_the_client_import_aiohttp() -> None:
    for name, path in _modules().items():
        if "aiohttp" in _imports(path, runtime_only=True):
            assert name in NETWORK | {"_client"} or name.startswith("simulator."), name


def test_the_library_never_imports_its_applications() -> None:
    for name, path in _modules().items():
        if name.startswith(("cli.", "simulator.")):
            continue
        imported = _imports(path)
        assert not any(i.startswith(("cli", "simulator")) for i in imported), name


def test_one_loopback_rule() -> None:
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        defined = [
            n.name
            for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef) and "loopback" in n.name.lower()
        ]
        if name == "_urls":
            assert defined == ["is_loopback"]
        else:
            assert not defined, f"{name} defines {defined}: use _urls.is_loopback"
