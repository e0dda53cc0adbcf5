"""At most so many pieces of work in one turn of the event loop; the rest in later turns.

Stations' messages come in bursts: a simulator, or a fleet of real stations with synchronised
clocks, samples on whole seconds, so 5 000 stations at one MeterValues a minute send ~83
frames in the same millisecond, and anything that held the loop for a while (a collection, a
re-plan's step) leaves hundreds of frames read at once. Each one's work (parse, schema check,
ledger, answer) ran in the turn its data arrived: 700 of them held the loop for 100 ms and more
(issue 10), and every other task - the probe, the guard, dispatch - waited behind them.
asyncio's ready queue is FIFO and a turn runs every callback that was ready when it began, so
what bounds a turn is how many pieces of work are let into it: `TurnBudget.admit()` returns at
once for the first `per_turn` callers of a turn, and the later ones wait, in order, to be let
in a batch per turn. The total work is the same; the loop polls its sockets and runs its other
tasks between two batches. The server's budget (`ocpp/server.py`) takes every inbound frame and
every station's handshake (a boot storm accepted thousands in one turn).

The store's answers go the same way (`settle`): a group commit answers up to 256 callers at
once, and every caller resumed in one turn held the loop for ~100 ms under a burst of
MeterValues (issue 10). The store keeps a budget of its own per callers' loop (`store.py`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Any

# a future to complete, with its result or (not None) its error
Outcome = tuple[asyncio.Future, Any, BaseException | None]

PER_TURN = 32    # ~50-100 us each after issue 10's cuts: a few ms per turn


class TurnBudget:
    def __init__(self, per_turn: int = PER_TURN) -> None:
        self.per_turn = per_turn
        self._used = 0                 # let in since the turn began
        self._next_turn_due = False    # `_next_turn` is scheduled (runs in the next turn)
        self._waiting: deque[Outcome] = deque()
        # counters (tests, benchmarks): let in at once, made to wait, the most let in one turn
        self.admitted = 0
        self.deferred = 0
        self.most_in_turn = 0

    async def admit(self) -> None:
        """Returns in this turn if the budget allows, else in a later one (FIFO)."""
        self.admitted += 1
        if not self._waiting and self._used < self.per_turn:
            self._take()
            return
        self.deferred += 1
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((future, None, None))
        self._schedule()
        await future

    def settle(self, outcomes: Iterable[Outcome]) -> None:
        """Complete these futures, in order behind every caller waiting: in this turn as far
        as the budget allows, the rest in later turns. On the loop the futures belong to."""
        self._waiting.extend(outcomes)
        self._let_in()
        if self._waiting:
            self._schedule()

    def _take(self) -> None:
        self._used += 1
        if self._used > self.most_in_turn:
            self.most_in_turn = self._used
        self._schedule()

    def _schedule(self) -> None:
        if not self._next_turn_due:
            self._next_turn_due = True
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        """A new turn: let the next batch of waiting callers in (they run in the turn after
        this one, with nothing else of this budget's: a caller arriving meanwhile queues)."""
        self._next_turn_due = False
        self._used = 0
        self._let_in()
        if self._waiting:
            self._schedule()

    def _let_in(self) -> None:
        while self._waiting and self._used < self.per_turn:
            future, result, error = self._waiting.popleft()
            if future.done():          # a caller that gave up (cancelled) takes no slot
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
            self._take()
