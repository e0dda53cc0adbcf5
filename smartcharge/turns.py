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

A count is not a time: 32 frames let in plus 32 answers plus the site's share made turns of
30-50 ms CPU at 2 000 stations under load (s30-loop). With `cpu_s`, a caller of `admit` is let
in only while the whole turn has spent less than that of the loop thread's CPU
(`turn_clock.py`: whatever spent it - other budgets, the site's work, a collection), checked
when it is about to run (at once, or when woken: one woken into a turn already spent waits
again, first in line); the first `min_per_turn` of a turn go in whatever the turn spent, so
the stations' own calls keep a floor of progress per turn when the site's work fills them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Any

from smartcharge.turn_clock import TurnClock, turn_clock

# a future to complete, with its result or (not None) its error
Outcome = tuple[asyncio.Future, Any, BaseException | None]

PER_TURN = 32    # ~50-100 us each after issue 10's cuts: a few ms per turn
# the turn's CPU past which `admit` lets no more in (but the first MIN_PER_TURN): half the
# 20 ms goal, the other half for the store's answers, the site's share and a young collection
TURN_CPU_S = 0.010
MIN_PER_TURN = 8


class TurnBudget:
    def __init__(self, per_turn: int = PER_TURN, *, cpu_s: float | None = None,
                 min_per_turn: int = MIN_PER_TURN, clock: TurnClock | None = None) -> None:
        self.per_turn = per_turn
        self.cpu_s = cpu_s               # None: counts only
        self.min_per_turn = min_per_turn
        self._clock = clock              # None: the running loop's (`turn_clock()`)
        self._clock_turn = -1            # the clock's turn the callers below ran in
        self._ran_in_clock_turn = 0
        self._sent_back = 0              # woken callers sent back to the front since `_next_turn`
        self._used = 0                 # let in since the turn began
        self._next_turn_due = False    # `_next_turn` is scheduled (runs in the next turn)
        self._waiting: deque[Outcome] = deque()
        # counters (tests, benchmarks): let in at once, made to wait, the most let in one turn
        self.admitted = 0
        self.deferred = 0
        self.most_in_turn = 0
        self.held = 0    # callers kept out of a turn by its CPU (`cpu_s`)

    async def admit(self) -> None:
        """Returns in this turn if the budget allows, else in a later one (FIFO)."""
        self.admitted += 1
        if not self._waiting and self._used < self.per_turn and self._may_run():
            self._take()
            return
        self.deferred += 1
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((future, None, None))
        self._schedule()
        await future
        await self.resumed()

    async def resumed(self) -> None:
        """For a caller this budget let in (`admit`, or `settle`'s outcome: the store's
        answers), about to run: with `cpu_s`, returns in this turn if it has room
        (`_may_run`), else waits for a later turn, first in line (behind those of this turn
        sent back before it: in order)."""
        while not self._may_run():
            self.deferred += 1
            future = asyncio.get_running_loop().create_future()
            self._waiting.insert(self._sent_back, (future, None, None))
            self._sent_back += 1
            self._schedule()
            await future

    def _may_run(self) -> bool:
        """With `cpu_s`: this turn of the loop has room for one more caller - it has spent
        less than `cpu_s`, or fewer than `min_per_turn` callers of this budget ran in it."""
        if self.cpu_s is None:
            return True
        clock = self._clock or turn_clock()
        spent_s = clock.spent_s()
        if clock.turn != self._clock_turn:
            self._clock_turn, self._ran_in_clock_turn = clock.turn, 0
        if self._ran_in_clock_turn < self.min_per_turn or spent_s < self.cpu_s:
            self._ran_in_clock_turn += 1
            return True
        self.held += 1
        return False

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
        self._sent_back = 0
        if self.cpu_s is not None and self._waiting:
            # keeps the clock counting from the start of the turn the woken callers run in
            (self._clock or turn_clock()).spent_s()
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
