"""The Redis link's outage state: since when, why, who to tell, and the probe that ends it.

An outage begins when one call fails or times out (`failed`). Listeners hear of it at
once (so callers queued behind the failed one fail, or move to the fallback, without
each waiting out its own timeout). A probe pings Redis at once, then every
`probe_interval`; the first answer ends the outage (`answered`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ["RedisOutage"]

logger = logging.getLogger("okx_async.redis")


class RedisOutage:
    """Outage state of one link. `url`: masked, for the log; `mode`: what callers get
    meanwhile (for the warning); `scrub(text)`: the text without the URL's secrets;
    `ping()`: one bounded ping (raises on failure); `probe_interval` (s, > 0)."""

    __slots__ = (
        "_listeners",
        "_mode",
        "_ping",
        "_probe",
        "_probe_interval",
        "_scrub",
        "_stopped",
        "_url",
        "cause",
        "since",
    )

    def __init__(
        self,
        *,
        url: str,
        mode: str,
        probe_interval: float,
        scrub: Callable[[str], str],
        ping: Callable[[], Awaitable[object]],
    ) -> None:
        self._url = url
        self._mode = mode
        self._probe_interval = probe_interval
        self._scrub = scrub
        self._ping = ping
        self.since: float | None = None  # loop time the outage began; None: no outage
        self.cause: BaseException | None = None  # the failure that began it
        self._probe: asyncio.Task[None] | None = None
        self._stopped = False  # the link is closing: no more probes
        self._listeners: list[Callable[[bool], None]] = []

    def __repr__(self) -> str:
        state = "ok" if self.since is None else f"down since {self.since:.3f}"
        return f"<RedisOutage {self._url} {state} probe_every={self._probe_interval:g}s>"

    @property
    def active(self) -> bool:
        return self.since is not None

    def on_change(self, listener: Callable[[bool], None]) -> None:
        """Call `listener(True)` when an outage begins and `listener(False)` when it ends."""
        self._listeners.append(listener)

    def failed(self, exc: BaseException) -> None:
        """A call failed with `exc`: begin an outage (once), start the probe, tell everyone."""
        if self.since is not None:
            return
        self.since = asyncio.get_running_loop().time()
        self.cause = exc
        logger.warning(
            "Redis limiter %s unreachable (%s); %s until it answers again",
            self._url,
            self._scrub(f"{type(exc).__name__}: {exc}"),
            self._mode,
        )
        if not self._stopped and (self._probe is None or self._probe.done()):
            self._probe = asyncio.ensure_future(self._probe_loop())
        for listener in list(self._listeners):
            listener(True)

    def answered(self) -> None:
        """Redis answered: end the outage (if any) and tell everyone."""
        if self.since is None:
            return
        down_for = asyncio.get_running_loop().time() - self.since
        self.since = None
        self.cause = None
        logger.info("Redis limiter %s answers again after %.1fs", self._url, down_for)
        for listener in list(self._listeners):
            listener(False)

    async def _probe_loop(self) -> None:
        # The first ping goes at once: after a one-off failure (a connection reset, a
        # client-library hiccup) the outage ends within a round trip; a stalled or
        # stopped Redis keeps failing it, and then it is tried every probe_interval.
        first = True
        while self.since is not None and not self._stopped:
            if not first:
                await asyncio.sleep(self._probe_interval)
            first = False
            try:
                await self._ping()
            except Exception:  # any failure of the ping means no answer (see RedisLink.eval)
                continue
            self.answered()

    def stop_probe(self) -> None:
        """No probe from now on (the link is closing); cancel the one running."""
        self._stopped = True
        if self._probe is not None:
            self._probe.cancel()

    async def wait_probe(self) -> None:
        """Until a stopped probe has ended."""
        if self._probe is not None:
            await asyncio.gather(self._probe, return_exceptions=True)
            self._probe = None
