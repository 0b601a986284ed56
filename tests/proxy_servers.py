"""Real proxy servers for tests: tinyproxy (HTTP, from Debian's packages) and pproxy
(SOCKS5, from PyPI), each started on a free loopback port with its own config and log,
and stopped by the test that needs it.

Without tinyproxy the tests skip, unless OKX_ASYNC_REQUIRE_TINYPROXY=1 (set by .ci/run)
makes that a failure."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NoReturn, Protocol, TypeVar

import pytest

__all__ = ["SocksProxy", "TinyProxy", "require_tinyproxy"]


def _missing(reason: str) -> NoReturn:
    if os.environ.get("OKX_ASYNC_REQUIRE_TINYPROXY") == "1":
        pytest.fail(f"{reason}, and OKX_ASYNC_REQUIRE_TINYPROXY=1 requires the proxy tests")
    pytest.skip(f"{reason} (apt-get install tinyproxy); set OKX_ASYNC_REQUIRE_TINYPROXY=1 to fail")


def require_tinyproxy() -> str:
    found = shutil.which("tinyproxy") or (
        "/usr/bin/tinyproxy" if os.access("/usr/bin/tinyproxy", os.X_OK) else None
    )
    if found is None:
        _missing("tinyproxy is not installed")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on port {port} in time")


def stop_processes(processes: Iterable[subprocess.Popen[bytes]]) -> None:
    """End server processes: SIGTERM to every one still running first (they shut down
    together), then wait for each, killing one that takes over 5 s."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        process.terminate()
    for process in running:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class _Startable(Protocol):
    def start(self) -> None: ...
    def cleanup(self) -> None: ...


_S = TypeVar("_S", bound=_Startable)


@contextlib.contextmanager
def running(server: _S) -> Iterator[_S]:
    """`server` started, then stopped and its files removed (`cleanup`), however the
    block ends."""
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


class _Server:
    """A server process of the tests' own, in a temporary directory of its own."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="okxproxy"))
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_processes([process] if process is not None else [])

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class TinyProxy(_Server):
    """tinyproxy in the foreground; `log()` is its log so far (one line per request)."""

    def __init__(self, executable: str, *, user: str | None = None, password: str = "") -> None:
        super().__init__()
        self.executable = executable
        self.user = user
        self.password = password
        self.log_path = self.dir / "tinyproxy.log"

    @property
    def url(self) -> str:
        auth = f"{self.user}:{self.password}@" if self.user else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    def start(self) -> None:
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 30",
            f'LogFile "{self.log_path}"',
            "LogLevel Connect",
            "MaxClients 200",
        ]
        if self.user:
            lines.append(f"BasicAuth {self.user} {self.password}")
        config = self.dir / "tinyproxy.conf"
        config.write_text("\n".join(lines) + "\n")
        self.process = subprocess.Popen(
            [self.executable, "-d", "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_listening(self.port, self.process, "tinyproxy")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


_PPROXY_WITHOUT_UVLOOP = (
    "import runpy, sys; sys.modules['uvloop'] = None; "
    "runpy.run_module('pproxy', run_name='__main__')"
)


class SocksProxy(_Server):
    """pproxy serving SOCKS5, run as `python -m pproxy`; `user`/`password` require them."""

    def __init__(self, *, user: str | None = None, password: str = "") -> None:
        super().__init__()
        self.user = user
        self.password = password

    @property
    def url(self) -> str:
        auth = f"{self.user}:{self.password}@" if self.user else ""
        return f"socks5://{auth}127.0.0.1:{self.port}"

    def start(self) -> None:
        listen = f"socks5://127.0.0.1:{self.port}"
        if self.user:
            listen += f"#{self.user}:{self.password}"
        with open(self.dir / "pproxy.log", "wb") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                # Without uvloop, even where it is installed (the suite's uvloop run):
                # pproxy installs it, then asks for a current loop, which uvloop's policy
                # does not make, and exits.
                [sys.executable, "-c", _PPROXY_WITHOUT_UVLOOP, "-l", listen, "-v"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _wait_listening(self.port, self.process, "pproxy")

    def log(self) -> str:
        return (self.dir / "pproxy.log").read_text(errors="replace")
