"""Submitter: a set call's value through its currency's lane, to one request per value.

Values of one currency go out one at a time in submission order (the event loop's
lanes, `_ordering`), and with a shared store (sqlite, Redis: `_lane_store`) in the
store's order across processes too. The submitter puts each call's value on its lane,
waits for its result within the caller's deadline, and turns the value the lane sends
into one request of the attempt loop (`send_value`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from ._attempts import first_row, last_words
from ._defaults import SET_RISK_OFFSET_PATH
from ._errors import DeadlineExceededError, OKXError
from ._identity import mode
from ._lane_store import SupersededElsewhereError
from ._models import RiskOffsetResult, parse_decimal
from ._ordering import Lane, SupersededError, Update
from ._shared import lanes_for_running_loop

if TYPE_CHECKING:
    from ._events import Reporter
    from ._lane_store import LaneStoreBase
    from ._options import ClientOptions

__all__ = ["Submitter"]

logger = logging.getLogger("okx_async")

# The attempt loop's `_request(method, path, *, body=, deadline=, lane=)`: OKX's `data`.
Request = Callable[..., Awaitable[list[Any]]]


class Submitter:
    """Puts set calls on the lanes of (mode, User ID, currency) and waits for them."""

    __slots__ = (
        "_bind_loop",
        "_coalesce",
        "_error_since",
        "_horizon",
        "_mode",
        "_report",
        "_request",
        "outstanding",
        "send",
        "store",
    )

    def __init__(
        self,
        options: ClientOptions,
        *,
        store: LaneStoreBase | None,
        report: Reporter,
        request: Request,
        error_since: Callable[[float], OKXError | None],
        bind_loop: Callable[[asyncio.AbstractEventLoop], object],
    ) -> None:
        self._mode = mode(options.demo)  # lanes are per user and mode, as budgets are
        self._coalesce = options.coalesce
        self._horizon = options.landing_horizon  # seconds an unknown outcome may land
        self.store = store
        self._report = report
        self._request = request
        self._error_since = error_since
        # The attempt loop's check that the running loop may use the client (see
        # `AttemptLoop._bind_loop`): before the shared store, whose locks are per loop.
        self._bind_loop = bind_loop
        # What a lane calls to send a value: straight to a request without a shared store.
        self.send = self._send_value if store is None else self._send_claimed
        self.outstanding: set[Update] = set()  # callers' updates not yet resolved

    def __repr__(self) -> str:
        store = "" if self.store is None else ", shared order"
        return f"Submitter({self._mode}, outstanding={len(self.outstanding)}{store})"

    async def submit(
        self,
        uid: str,
        ccy: str,
        text: str,
        amount: Decimal,
        *,
        deadline: float | None,
        timeout: float | None,
    ) -> RiskOffsetResult:
        """The result of setting `ccy` to `amount` (`text` as sent). DeadlineExceededError
        when `deadline` (loop time, `timeout` seconds after the call began) passes first."""
        loop = asyncio.get_running_loop()
        lane = lanes_for_running_loop().lane((self._mode, uid, ccy))
        future: asyncio.Future[RiskOffsetResult] = loop.create_future()
        update = Update(
            ccy=ccy, text=text, amount=amount, deadline=deadline, send=self.send, future=future
        )
        self.outstanding.add(update)  # from here on, in flight on this loop
        try:
            if self.store is not None:  # the value's place in the store's order
                # The store's locks are the loop's: refuse a second loop first.
                self._bind_loop(loop)
                update.seq = await self.store.submitted(_lane_name(lane), text)
                if future.done():  # failed by close() meanwhile
                    return future.result()
            if lane.claim(update):
                await lane.run_inline(update)
            else:
                lane.submit(update, coalesce=self._coalesce)
            if future.done():  # sent inline; wait_for would add a timer and a loop turn
                result = future.result()
            elif deadline is None:
                result = await future
            else:
                result = await asyncio.wait_for(future, deadline - loop.time())
        except asyncio.TimeoutError:
            if future.done() and not future.cancelled():
                raise  # the update itself failed with a timeout of its own
            cause = self._cause(deadline, timeout)
            raise DeadlineExceededError(
                f"setting {ccy} to {text} did not finish within {timeout:g} s{last_words(cause)}"
            ) from cause
        finally:
            self.outstanding.discard(update)
        if result.superseded:
            self._report.superseded()
        return result

    def _cause(self, deadline: float | None, timeout: float | None) -> OKXError | None:
        """The last attempt's error since the call began: what used up its time."""
        if deadline is None or timeout is None:
            return None
        return self._error_since(deadline - timeout)

    async def drain(self, timeout: float) -> None:
        """Let the outstanding calls finish for up to `timeout` seconds."""
        pending = [u.future for u in self.outstanding if not u.future.done()]
        if pending and timeout > 0:
            await asyncio.wait(pending, timeout=timeout)

    def stop(self, error: Exception) -> None:
        """Fail the calls still outstanding with `error`, and drop the re-asserts this
        client would send (its client closes)."""
        for update in list(self.outstanding):
            update.fail(error)
        dropped = lanes_for_running_loop().stop_settling(self.send)
        if dropped:
            logger.debug("closed with %d re-asserts still due", dropped)

    async def _send_claimed(self, update: Update, lane: Lane) -> Decimal:
        """With a shared store: never two requests of one currency in flight across the
        processes sharing it."""
        store = self.store
        assert store is not None
        name = _lane_name(lane)
        try:
            claim = await store.claim(
                name,
                seq=update.seq,
                value=update.text,
                deadline=update.deadline,
                horizon=self._horizon,
            )
        except SupersededElsewhereError as exc:
            raise SupersededError(Decimal(exc.value)) from None
        if claim.uncertain:
            lane.import_uncertain(claim.uncertain)
        lane.newer_elsewhere = partial(store.newer_elsewhere, name, update.seq)
        try:
            return await self._send_value(update, lane)
        finally:
            lane.newer_elsewhere = None
            await store.release(claim, lane.uncertain_entries())

    async def _send_value(self, update: Update, lane: Lane) -> Decimal:
        if update.reassert:
            self._report.reasserted()
        body = orjson.dumps({"ccy": update.ccy, "clSpotInUseAmt": update.text})
        data = await self._request(
            "POST", SET_RISK_OFFSET_PATH, body=body, deadline=update.deadline, lane=lane
        )
        echoed = first_row(data, SET_RISK_OFFSET_PATH).get("clSpotInUseAmt")
        if echoed == update.text:
            return update.amount  # the usual answer: what we sent, already a Decimal
        applied = parse_decimal(echoed)
        # OKX echoes what it stored; an answer without it still means success (code 0).
        return update.amount if applied is None else applied


def _lane_name(lane: Lane) -> str:
    """The lane's key in a shared store: "mode:uid:ccy"."""
    return ":".join(map(str, lane.key))  # type: ignore[call-overload]
