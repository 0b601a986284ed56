"""One OS process of tests/test_redis_multiprocess.py: two OKXClients (two API keys of
one user) sharing the user's budget through Redis with the other processes.

Protocol: argv[1] is a JSON spec; after warming up (clock sync, Redis scripts loaded) the
worker prints "ready". For each burst (spec "bursts", a list of currency lists, or one
burst of spec "ccys") it reads the common start time (time.time()) from stdin, sends
that burst's set calls at that moment and prints one JSON line with the outcome.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from okx_async import OKXClient


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    clients = [
        OKXClient(
            api_key=key,
            secret_key=secret,
            passphrase=passphrase,
            base_url=spec["base_url"],
            user_id=spec["uid"],
            redis_url=spec["redis_url"],
        )
        for key, secret, passphrase in spec["keys"]
    ]
    bursts: list[list[str]] = spec.get("bursts") or [spec["ccys"]]
    try:
        # Warm up off the measured endpoint: syncs the clock, opens the connections.
        await asyncio.gather(*(c.get_risk_offset_amounts([bursts[0][0]]) for c in clients))
        print("ready", flush=True)
        outcome: dict[str, Any] = {}
        for burst, ccys in enumerate(bursts):
            line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            await asyncio.sleep(max(0.0, float(line) - time.time()))
            results = await asyncio.gather(
                *(
                    clients[i % len(clients)].set_risk_offset_amount(
                        ccy, str(burst * 1000 + i + 1), timeout=25
                    )
                    for i, ccy in enumerate(ccys)
                ),
                return_exceptions=True,
            )
            errors = [repr(r) for r in results if isinstance(r, BaseException)]
            outcome = {"ok": len(results) - len(errors), "errors": errors}
            print(json.dumps(outcome), flush=True)
        return outcome
    finally:
        for c in clients:
            await c.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
