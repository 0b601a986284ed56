"""One OS process of tests/test_lane_processes.py: one OKXClient setting values on
command from the test, sharing a limiter store (argv spec "limiter_url") with others.

Protocol: argv[1] is a JSON spec; after warming up (clock sync, store opened) the worker
prints "ready". Then per stdin line:
    set CCY VALUE   start set_risk_offset_amount(CCY, VALUE) (not awaited) and print
                    "submitted" once the call has taken its place in the store's order
    results         wait for every started call; print one JSON list of outcomes
    close           close the client and exit
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from okx_async import OKXClient, RiskOffsetResult


class Numbered:
    """The client's lane store, telling `numbered` each sequence number it hands out."""

    def __init__(self, store: Any, numbered: asyncio.Queue[int]) -> None:
        self._store = store
        self._numbered = numbered

    async def submitted(self, key: str, value: str) -> int:
        seq: int = await self._store.submitted(key, value)
        self._numbered.put_nowait(seq)
        return seq

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def outcome(result: RiskOffsetResult | BaseException) -> dict[str, Any]:
    if isinstance(result, BaseException):
        return {"error": repr(result)}
    return {
        "ccy": result.ccy,
        "requested": str(result.requested),
        "amount": str(result.amount),
        "superseded": result.superseded,
        "attempts": result.attempts,
    }


async def main(spec: dict[str, Any]) -> None:
    key, secret, passphrase = spec["key"]
    client = OKXClient(
        api_key=key,
        secret_key=secret,
        passphrase=passphrase,
        base_url=spec["base_url"],
        user_id=spec["uid"],
        limiter_url=spec["limiter_url"],
        landing_horizon=spec["landing_horizon"],
        request_timeout=spec.get("request_timeout", 10.0),
    )
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[RiskOffsetResult]] = []
    # With a shared store, "submitted" is printed once the value has its sequence number
    # (the store's order); the test's order of commands is then the store's order.
    numbered: asyncio.Queue[int] = asyncio.Queue()
    store = client._submitter.store
    if store is not None:
        client._submitter.store = Numbered(store, numbered)  # type: ignore[assignment]
    try:
        await client.get_risk_offset_amounts(["USDT"])  # warm up off the lanes
        print("ready", flush=True)
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
            if not line or line[0] == "close":
                return
            if line[0] == "set":
                tasks.append(
                    loop.create_task(client.set_risk_offset_amount(line[1], line[2], timeout=30))
                )
                if store is not None:
                    await asyncio.wait_for(numbered.get(), 10)
                else:  # the call runs up to its first real wait: it is in its lane
                    for _ in range(3):
                        await asyncio.sleep(0)
                print("submitted", flush=True)
            elif line[0] == "results":
                done = await asyncio.gather(*tasks, return_exceptions=True)
                print(json.dumps([outcome(r) for r in done]), flush=True)
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
