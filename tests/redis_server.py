"""A throwaway `redis-server` for tests: no persistence, its own temp dir, a unix socket
(or an ephemeral TCP port), started and stopped by the test that needs it. And a
throwaway local Redis Cluster of a few masters (`RedisClusterServers`)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["RedisClusterServers", "RedisServer", "find_redis_cli", "find_redis_server"]

_CANDIDATES = ("/usr/bin/redis-server", "/usr/local/bin/redis-server")


def find_redis_server() -> str | None:
    """The redis-server executable (OKX_ASYNC_REDIS_SERVER if set, e.g. a valkey-server),
    or None."""
    chosen = os.environ.get("OKX_ASYNC_REDIS_SERVER")
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    found = shutil.which("redis-server")
    if found:
        return found
    return next((c for c in _CANDIDATES if os.access(c, os.X_OK)), None)


def find_redis_cli(server: str) -> str | None:
    """The redis-cli (or valkey-cli) next to `server`, else on PATH, or None."""
    folder = Path(server).parent
    for name in ("redis-cli", "valkey-cli"):
        candidate = folder / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("redis-cli") or shutil.which("valkey-cli")


def _free_port() -> int:
    return _free_ports(1)[0]


def _free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (held together while chosen)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


class RedisServer:
    """`start()` launches the server and waits until it answers PING; `stop()` ends it.
    `start()` may be called again after `stop()`: same socket/port, empty data."""

    def __init__(
        self,
        executable: str,
        *,
        tcp: bool = False,
        password: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.executable = executable
        # Short path: unix socket paths are limited to ~100 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="okxr"))
        self.socket_path = str(self.dir / "redis.sock")
        self.port = _free_port() if tcp else 0
        self.password = password
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port:
            auth = f":{self.password}@" if self.password else ""
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        query = f"?password={self.password}" if self.password else ""
        return f"unix://{self.socket_path}{query}"

    def start(self, timeout: float = 10.0) -> None:
        args = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--unixsocket", self.socket_path,
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--logfile", str(self.dir / "redis.log"),
            "--enable-debug-command", "local",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        args += list(self.extra_args)
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.process.returncode}:\n{log}")
            if self._ping():
                return
            time.sleep(0.01)
        self.stop()
        raise RuntimeError("redis-server did not answer PING in time")

    def _ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                s.connect(self.socket_path)
                if self.password:
                    s.sendall(f"AUTH {self.password}\r\n".encode())
                    if not s.recv(64).startswith(b"+OK"):
                        return False
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # The socket file may stay behind after a kill; a restart recreates it.
        Path(self.socket_path).unlink(missing_ok=True)

    def kill(self) -> None:
        """End the server with SIGKILL (no shutdown, nothing saved); `start()` again gives
        an empty server on the same socket/port."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.stop()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections but answers nothing."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause()`."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def cleanup(self) -> None:
        self.resume()
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisClusterServers:
    """`start()` launches `masters` cluster-enabled redis-servers on 127.0.0.1 (no
    replicas, no persistence, explicit bus ports), joins them with `redis-cli --cluster
    create` and waits until every node reports `cluster_state:ok`. `stop()` ends them all
    (also after a failed start)."""

    def __init__(self, executable: str, cli: str, *, masters: int = 3) -> None:
        self.executable = executable
        self.cli = cli
        self.dir = Path(tempfile.mkdtemp(prefix="okxc"))
        ports = _free_ports(2 * masters)
        self.ports = ports[:masters]
        self.bus_ports = ports[masters:]
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """A `redis+cluster://` URL naming the first node (the others are discovered)."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]}/0"

    def start(self, timeout: float = 15.0) -> None:
        end = time.monotonic() + timeout
        try:
            for n, (port, bus) in enumerate(zip(self.ports, self.bus_ports, strict=True)):
                args = [
                    self.executable,
                    "--port", str(port),
                    "--cluster-port", str(bus),
                    "--bind", "127.0.0.1",
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(self.dir / f"nodes-{n}.conf"),
                    "--cluster-node-timeout", "2000",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(self.dir),
                    "--daemonize", "no",
                    "--logfile", str(self.dir / f"redis-{n}.log"),
                ]  # fmt: skip
                self.processes.append(
                    subprocess.Popen(
                        args,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            for n, port in enumerate(self.ports):
                self._wait(end, port, lambda p: self.cli_call(p, "PING") == "PONG", n)
            nodes = [f"127.0.0.1:{p}" for p in self.ports]
            created = subprocess.run(
                [
                    self.cli,
                    "--cluster",
                    "create",
                    *nodes,
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=max(1.0, end - time.monotonic()),
                check=False,
            )
            if created.returncode != 0:
                out = (created.stdout + created.stderr).decode(errors="replace")[-2000:]
                raise RuntimeError(f"redis-cli --cluster create failed:\n{out}")
            for n, port in enumerate(self.ports):
                self._wait(
                    end,
                    port,
                    lambda p: "cluster_state:ok" in self.cli_call(p, "CLUSTER", "INFO"),
                    n,
                )
        except BaseException:
            self.stop()
            raise

    def _wait(self, end: float, port: int, ready: Callable[[int], bool], n: int) -> None:
        while time.monotonic() < end:
            process = self.processes[n]
            if process.poll() is not None:
                log = (self.dir / f"redis-{n}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {process.returncode}:\n{log}")
            if ready(port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"cluster node {self.ports[n]} not ready in time")

    def cli_call(self, port: int, *command: str) -> str:
        """One command through redis-cli against one node ("" if it fails)."""
        try:
            done = subprocess.run(
                [self.cli, "-h", "127.0.0.1", "-p", str(port), *command],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=5,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return ""
        return done.stdout.decode(errors="replace").strip() if done.returncode == 0 else ""

    def stop(self) -> None:
        processes, self.processes = self.processes, []
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
