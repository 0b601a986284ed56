"""The `okx-async` command line: set, get, config, apply, simulate, demo.

`main(argv)` parses, runs the command in its own event loop (asyncio.run) and returns
the exit code: 0 ok, 1 a call, row or verification failed, 2 bad input or config,
130 interrupted. Errors are one line on stderr, never a traceback, never a secret.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from okx_async import (
    ACCOUNT_CONFIG_PATH,
    BALANCE_PATH,
    SET_RISK_OFFSET_PATH,
    InvalidInputError,
    LimiterUnavailableError,
    OKXError,
    SqliteLimiterBackend,
)

from ._commands import build_parser
from ._plan import PlanError
from ._profiles import ConfigError, cli_text
from ._progress import Console
from ._report import describe

__all__ = ["main"]

_INTERRUPTED = -1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else 2
    console = Console()
    # The library's warnings (a limiter store going down, say) are held while the command
    # runs: a failure's one error line already says what went wrong, and a warning drawn
    # mid-run would break the progress bar. After a finished command each is told once.
    held = _HeldWarnings()
    library = logging.getLogger("okx_async")
    library.addHandler(held)
    try:
        code, failed = _main(args, console)
    finally:
        library.removeHandler(held)
    if not failed:
        for message in dict.fromkeys(held.messages):
            console.err(f"warning: {message}")
    return code


class _HeldWarnings(logging.Handler):
    """Collects the library's WARNING and above records (their messages, one line each)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(" ".join(record.getMessage().split()))


def _main(args: argparse.Namespace, console: Console) -> tuple[int, bool]:
    """The exit code, and whether it ended in an error line."""
    try:
        code = asyncio.run(_run(args, console))
    except KeyboardInterrupt:  # Ctrl-C outside the command's own handling
        code = _INTERRUPTED
    except (ConfigError, PlanError, InvalidInputError) as exc:
        console.err(f"error: {cli_text(exc)}")
        return 2, True
    except LimiterUnavailableError as exc:  # the store in the configuration: nothing sent
        call, _ = _call(args)
        check = (
            "check the file's path and its permissions"
            if isinstance(getattr(args, "limiter", None), SqliteLimiterBackend)
            else "check that the limiter store runs"
        )
        console.err(
            f"error: {call}: {describe(exc)}; {check} and that "
            "--limiter-url (else OKX_ASYNC_LIMITER_URL, else limiter_url in the config) is right"
        )
        return 2, True
    except OKXError as exc:
        call, path = _call(args)
        note = getattr(args, "note", None)
        console.err(f"error: {call}: {describe(exc, path)}" + (f"; {note}" if note else ""))
        return 1, True
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        console.err(f"error: {exc.strerror or exc}{where}")
        return 1, True
    if code == _INTERRUPTED:
        if args.command == "simulate":
            console.err("simulator stopped")
            return 0, False
        console.err("interrupted")
        return 130, False
    return code, False


# The endpoint each command calls, so an error from an earlier step can say so.
_PATHS = {
    "set": SET_RISK_OFFSET_PATH,
    "get": BALANCE_PATH,
    "config": ACCOUNT_CONFIG_PATH,
}


def _call(args: argparse.Namespace) -> tuple[str, str | None]:
    """The command as the user typed it (arguments shown), and its endpoint."""
    words = [args.command]
    if args.command == "set":
        words += [args.ccy, args.amount]
    elif args.command == "get":
        words += args.ccys
    return "okx-async " + " ".join(words), _PATHS.get(args.command)


async def _run(args: argparse.Namespace, console: Console) -> int:
    """Run the command; Ctrl-C cancels it (so clients close cleanly) on any Python.

    Python 3.10's asyncio.run would raise KeyboardInterrupt wherever the command happens
    to be; 3.11+ cancels the main task instead. This handler does the latter everywhere.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    interrupted = False

    def on_sigint() -> None:
        nonlocal interrupted
        interrupted = True
        if task is not None:
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
        installed = True
    except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
        installed = False
    args.limiter = None  # the run's limiter store, opened with the profiles
    try:
        code: int = await args.func(args, console)
        return code
    except asyncio.CancelledError:
        if interrupted:
            return _INTERRUPTED
        raise
    finally:
        try:
            if args.limiter is not None:
                await args.limiter.aclose()
        finally:
            if installed:
                loop.remove_signal_handler(signal.SIGINT)
