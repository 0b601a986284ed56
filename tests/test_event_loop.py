"""The suite runs on the event loop OKX_ASYNC_TEST_LOOP selects (see conftest.py): a
uvloop run that silently fell back to asyncio's loop would test nothing new."""

from __future__ import annotations

import asyncio

from conftest import TEST_LOOP


async def test_async_tests_run_on_the_selected_loop() -> None:
    loop = asyncio.get_running_loop()
    if TEST_LOOP == "uvloop":
        import uvloop

        assert isinstance(loop, uvloop.Loop)
    else:
        assert type(loop).__module__.startswith("asyncio.")
