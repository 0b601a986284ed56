"""Terminal output: stdout/stderr with secrets masked, and the progress display.

Progress goes to stderr: a bar redrawn in place on a terminal, plain lines otherwise,
so that stdout can carry JSON (`--json -`) undisturbed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterable
from typing import TextIO

__all__ = ["Console", "Progress"]

_MASK = "***"


class Console:
    """Where the CLI writes. Every text passes through `redact`, which masks each secret
    registered with `hide`: a last line of defence, the CLI never formats secrets."""

    def __init__(self, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        self._secrets: set[str] = set()

    def hide(self, secrets: Iterable[str]) -> None:
        self._secrets.update(s for s in secrets if len(s) >= 6)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _MASK)
        return text

    def out(self, text: str = "") -> None:
        self.stdout.write(self.redact(text) + "\n")
        self.stdout.flush()

    def out_json(self, data: object) -> None:
        """`data` as indented JSON on stdout (Decimals and other values as strings)."""
        self.out(json.dumps(data, indent=2, default=str))

    def err(self, text: str) -> None:
        self.stderr.write(self.redact(text) + "\n")
        self.stderr.flush()

    def err_raw(self, text: str) -> None:
        """Write to stderr without a newline (the progress bar's `\\r` redraws)."""
        self.stderr.write(self.redact(text))
        self.stderr.flush()

    @property
    def err_is_tty(self) -> bool:
        try:
            return self.stderr.isatty()
        except (AttributeError, ValueError):
            return False


_BAR_WIDTH = 24
_MIN_REDRAW = 0.1  # seconds between redraws: about 10 updates a second
_WARM_UP = 1.0  # seconds before a rate and an ETA are shown (default)


class Progress:
    """Counts finished rows out of `total`.

    On a TTY one line is redrawn with `\\r` (at most ~10 times a second). Elsewhere it
    writes plain lines: one per finished row for up to 100 rows, else one per 1% of
    the rows, plus one for every row worth noticing (a failure), so logs stay readable.
    """

    def __init__(
        self,
        total: int,
        write: Callable[[str], None],
        *,
        tty: bool,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
        max_rate: float | None = None,
        warm_up: float = _WARM_UP,
    ) -> None:
        """`max_rate` (rows per second, None: unknown) is the most the rate limits allow
        for long: the ETA never assumes more. No rate is shown for `warm_up` seconds: a
        first burst goes faster than the limits allow for long."""
        self.total = total
        self._max_rate = max_rate
        self._warm_up = warm_up
        self.done = 0
        self._write = write
        self._tty = tty
        self._enabled = enabled and total > 0
        self._every = max(1, total // 100)
        self._clock = clock
        self._started = clock()
        self._drawn_at: float | None = None
        self._width = 0  # length of the last line drawn, to blank leftovers

    def advance(self, what: str = "", *, notable: bool = False) -> None:
        """One more row finished; `what` names it in plain-line mode."""
        self.done += 1
        if not self._enabled:
            return
        now = self._clock()
        if not self._tty:
            if notable or self.done % self._every == 0 or self.done == self.total:
                suffix = f": {what}" if what else ""
                self._write(f"[{self.done}/{self.total}] {self._rate_eta(now)}{suffix}\n")
        elif (
            self._drawn_at is None or now - self._drawn_at >= _MIN_REDRAW or self.done == self.total
        ):
            self._draw(now)

    def refresh(self) -> None:
        """Redraw the bar (rate and ETA move on while calls wait for the rate limit)."""
        if self._enabled and self._tty:
            self._draw(self._clock())

    async def keep_fresh(self) -> None:
        """Refresh ~10 times a second until cancelled; does nothing off a terminal."""
        while self._enabled and self._tty:
            await asyncio.sleep(_MIN_REDRAW)
            self.refresh()

    def close(self) -> None:
        """End the bar's line so later output starts on a fresh one."""
        if self._enabled and self._tty and self._drawn_at is not None:
            self._draw(self._clock())
            self._write("\n")
            self._drawn_at = None

    def _draw(self, now: float) -> None:
        filled = _BAR_WIDTH * self.done // self.total
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        line = f"[{bar}] {self.done}/{self.total} {self._rate_eta(now)}"
        pad = " " * max(0, self._width - len(line))
        self._write(f"\r{line}{pad}")
        self._width = len(line)
        self._drawn_at = now

    def _rate_eta(self, now: float) -> str:
        elapsed = now - self._started
        if self.done == self.total:
            return f"done in {elapsed:.1f} s"
        if elapsed < self._warm_up or not self.done:  # a first burst outpaces the limits
            return f"{elapsed:.1f} s, -- calls/s, ETA --"
        rate = self.done / elapsed
        capped = self._max_rate is not None and rate > self._max_rate
        # Faster than the limits allow for long is a burst, not a pace to report or plan by.
        pace = self._max_rate if capped and self._max_rate is not None else rate
        eta = (self.total - self.done) / pace
        shown = f"{eta:.0f} s" if eta >= 1 else "<1 s"  # rows still due: never "0 s"
        limit = " (the limit)" if capped else ""
        return f"{elapsed:.1f} s, {pace:.1f} calls/s{limit}, ETA {shown}"
