"""Running a simulator on a local port."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType

from aiohttp import web

from ._app import Simulator
from ._state import SimulatorConfig

# Long enough for in-flight latency sleeps; stalls are woken at shutdown, not waited for.
SHUTDOWN_TIMEOUT = 2.0


class SimulatorServer:
    """Serves a Simulator over HTTP. Port 0 picks a free port; see `base_url`."""

    __slots__ = ("_runner", "host", "port", "simulator")

    def __init__(self, simulator: Simulator, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = simulator
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        """The URL to give a client, "http://<host>:<port>", once started."""
        if self._runner is None:
            raise RuntimeError("the simulator server is not running")
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the simulator server is already running")
        # No access log: benchmarks and the CLI would drown in it.
        runner = web.AppRunner(
            self.simulator.app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> SimulatorServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def __repr__(self) -> str:
        state = "running" if self._runner is not None else "stopped"
        return f"SimulatorServer({self.host}:{self.port}, {state})"


async def serve(
    config: SimulatorConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    on_ready: Callable[[SimulatorServer], None] | None = None,
) -> None:
    """Run a simulator until cancelled. `on_ready` gets the started server (its
    `base_url`, its `simulator`), e.g. to print where it listens."""
    async with SimulatorServer(Simulator(config), host=host, port=port) as server:
        if on_ready is not None:
            on_ready(server)
        await asyncio.Event().wait()
