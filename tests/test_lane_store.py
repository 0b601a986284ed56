"""The lane stores' rules (claim, fencing, sequence, lapse): sqlite's transactions run
on a real file with an explicit clock value `now` (wall seconds); Redis's script on a
real redis-server, its clock moved by editing the stored expiry."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import redis_fixture

from okx_async._lane_store import (
    LANE_SCHEMA,
    LaneClaim,
    SupersededElsewhereError,
    claim_txn,
    newer_txn,
    release_txn,
    renew_txn,
    submit_txn,
)
from okx_async._limiter._sqlite import SqliteLimiterBackend

redis_server = redis_fixture.redis_server  # a fixture: a fresh redis-server per test

KEY = "live:42:BTC"
TTL, HORIZON = 2.0, 30.0


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(tmp_path / "lanes.db", isolation_level=None)
    db.executescript(LANE_SCHEMA)
    yield db
    db.close()  # Python 3.13 warns (ResourceWarning) about a connection left to the GC


def claim(conn: sqlite3.Connection, now: float, seq: int, owner: str, value: str) -> object:
    return claim_txn(
        conn,
        now,
        KEY,
        seq=seq,
        owner=owner,
        holder=f"{owner}:{seq}",
        sending=value,
        ttl=TTL,
        horizon=HORIZON,
    )


def test_sequence_is_the_stores_order_and_newer_elsewhere_is_per_process(
    conn: sqlite3.Connection,
) -> None:
    assert [submit_txn(conn, 0.0, KEY, o, v) for o, v in [("A", "1"), ("B", "2"), ("A", "3")]] == [
        1,
        2,
        3,
    ]
    assert submit_txn(conn, 0.0, "live:42:ETH", "A", "9") == 1  # per key
    assert newer_txn(conn, 0.0, KEY, 2, "B")  # A's 3 came after B's 2
    assert not newer_txn(conn, 0.0, KEY, 1, "A")  # the newest is A's own: its lane orders it
    assert not newer_txn(conn, 0.0, KEY, 3, "B")


def test_an_older_value_of_another_process_is_superseded_never_granted(
    conn: sqlite3.Connection,
) -> None:
    submit_txn(conn, 0.0, KEY, "A", "1")
    submit_txn(conn, 0.0, KEY, "B", "2")
    answer = claim(conn, 1.0, 1, "A", "1")
    assert (answer.kind, answer.value) == ("superseded", "2")
    assert claim(conn, 1.0, 2, "B", "2").kind == "granted"


def test_one_holder_at_a_time_until_release_or_lapse(conn: sqlite3.Connection) -> None:
    submit_txn(conn, 0.0, KEY, "A", "1")
    first = claim(conn, 10.0, 1, "A", "1")
    assert (first.kind, first.fence) == ("granted", 1)
    submit_txn(conn, 10.0, KEY, "A", "2")  # the same process: waits, not superseded
    assert claim(conn, 10.5, 2, "A", "2") == ("wait", 0, "", 12.0, ())
    # Renewed with its fencing token: the lease runs from the renewal.
    assert renew_txn(conn, 11.0, KEY, first.fence, TTL)
    assert claim(conn, 12.5, 2, "A", "2").until == 13.0
    release_txn(conn, 12.6, KEY, first.fence, "A", [])
    second = claim(conn, 12.7, 2, "A", "2")
    assert (second.kind, second.fence, second.uncertain) == ("granted", 2, ())
    # The old token can neither renew nor release the new holder's claim.
    assert not renew_txn(conn, 12.8, KEY, first.fence, TTL)
    release_txn(conn, 12.8, KEY, first.fence, "A", [])
    assert claim(conn, 12.9, 3, "A", "3").kind == "wait"


def test_a_lapsed_claim_is_taken_over_and_its_request_stays_uncertain(
    conn: sqlite3.Connection,
) -> None:
    submit_txn(conn, 0.0, KEY, "A", "1")
    assert claim(conn, 0.0, 1, "A", "1").kind == "granted"  # A crashes mid-send
    submit_txn(conn, 0.5, KEY, "B", "2")
    assert claim(conn, 1.99, 2, "B", "2").kind == "wait"
    taken = claim(conn, 2.0, 2, "B", "2")
    assert (taken.kind, taken.fence) == ("granted", 2)
    # A's request may land until the lapse plus the horizon: B's lane waits it out.
    assert taken.uncertain == (("1", 2.0 + HORIZON),)


def test_uncertain_outcomes_are_shared_until_their_landing_time(
    conn: sqlite3.Connection,
) -> None:
    submit_txn(conn, 0.0, KEY, "A", "1")
    held = claim(conn, 0.0, 1, "A", "1")
    release_txn(conn, 1.0, KEY, held.fence, "A", [("1", 5.0), ("0.5", 0.5)])  # one past
    submit_txn(conn, 1.0, KEY, "B", "2")
    assert claim(conn, 1.0, 2, "B", "2").uncertain == (("1", 5.0),)
    release_txn(conn, 1.1, KEY, 2, "B", [])
    submit_txn(conn, 6.0, KEY, "B", "3")
    assert claim(conn, 6.0, 3, "B", "3").uncertain == ()  # landed by now: forgotten


async def test_a_waiter_sleeps_until_the_lease_expires_and_a_deadline_bounds_it(
    tmp_path: Path,
) -> None:
    """The store's async side on a real file: the second claim of another holder waits
    for the first's release-by-lapse, never longer than its deadline."""
    wall = [1000.0]
    backend = SqliteLimiterBackend(tmp_path / "x.db", clock=lambda: wall[0])
    store = backend.lane_store()
    loop = asyncio.get_running_loop()
    try:
        seq = await store.submitted(KEY, "1")
        first = await store.claim(KEY, seq=seq, value="1", deadline=None, horizon=HORIZON)
        with pytest.raises(Exception, match="past the deadline"):
            await store.claim(KEY, seq=seq, value="1", deadline=loop.time() + 0.05, horizon=1)
        await store.release(first, [(Decimal("1"), loop.time() + 3.0)])
        with pytest.raises(SupersededElsewhereError):
            # Another process's newer value: simulated by a foreign owner's row.
            await backend._run(lambda c, now: submit_txn(c, now, KEY, "other", "7"))
            await store.claim(KEY, seq=seq, value="1", deadline=None, horizon=HORIZON)
    finally:
        await backend.aclose()


async def test_the_redis_script_keeps_the_same_rules(
    redis_server: redis_fixture.RedisServer,
) -> None:
    """The same rules in Redis's Lua script, against a real redis-server. Another
    process is played by calling the script with a foreign owner; a lapse by moving the
    claim's expiry into the past (Redis `TIME` is the store's only clock)."""
    import redis.asyncio as aioredis

    from okx_async import RedisLimiterBackend

    backend = RedisLimiterBackend(redis_server.url)
    store = backend.lane_store()
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        assert [await store.submitted(KEY, v) for v in ("1", "2")] == [1, 2]
        await store._call(KEY, ["submit", "other", "7"])  # another process's newer value
        answer, _ = await store._claim_once(KEY, 2, "me:1", "2", HORIZON)
        assert (answer.kind, answer.value) == ("superseded", "7")

        eth = "live:42:ETH"
        seq = await store.submitted(eth, "5")
        first, now = await store._claim_once(eth, seq, "me:1", "5", HORIZON)
        assert (first.kind, first.fence, first.uncertain) == ("granted", 1, ())
        waiting, now2 = await store._claim_once(eth, seq, "me:2", "5", HORIZON)
        assert waiting.kind == "wait" and now < waiting.until <= now2 + 2.0
        claim = LaneClaim(key=eth, fence=first.fence, uncertain=[])
        assert await store._renew_once(claim)
        await store._release_once(claim, [("5", 5.0), ("4", 0.0)])  # one already landed
        other = await store._call(eth, ["claim", "other", "other:1", seq, "5", "2.0", "30"])
        assert [x.decode() if isinstance(x, bytes) else x for x in other[:3]] == [
            "granted",
            2,
            "5",
        ]
        assert float(other[3]) == pytest.approx(float(other[-1]) + 5.0, abs=0.5)
        # "other" crashes mid-send: its claim's expiry passes; ours takes over.
        seconds, micros = await raw.time()
        await raw.hset(f"okx_async:lane:{{{eth}}}", "expires", str(seconds + micros / 1e6 - 1))
        taken, now3 = await store._claim_once(eth, seq, "me:3", "5", HORIZON)
        assert (taken.kind, taken.fence) == ("granted", 3)
        assert [(v, round(t - now3)) for v, t in taken.uncertain] == [("5", 29)]
        assert not await store._renew_once(claim)  # fence 1 is long gone
    finally:
        await raw.aclose()
        await backend.aclose()
