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

A count is not a time (s36-stall): with `cpu_s` (the server's inbound budget), `admit` also
lets a caller run only while the whole turn of the loop has spent under it (`turn_cpu.py`: the
serving loop's turn, whatever spent it), checked when the caller is about to run - at once, or
when woken: one woken into a turn already spent waits again, first in line; the first
`min_per_turn` of a turn go in whatever it spent. The store's answers (`settle`) are counted
only: they are the last step of a call already handled; so is a caller admitted with `bounded`
False (s37-stall: the stations' answers to the server's own calls, `ocpp/central.py`).

The store's answers go the same way (`settle`): a group commit answers up to 256 callers at
once, and every caller resumed in one turn held the loop for ~100 ms under a burst of
MeterValues (issue 10). The store keeps a budget of its own per callers' loop (`store.py`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Any

from smartcharge.turn_cpu import turn_number, turn_spent_s

# a future to complete, with its result or (not None) its error
Outcome = tuple[asyncio.Future, Any, BaseException | None]

PER_TURN = 32    # ~50-100 us each after issue 10's cuts: a few ms per turn
MIN_PER_TURN = 8   # let in by `admit` whatever the turn spent (with `cpu_s`): a floor of progress


class TurnBudget:
    def __init__(self, per_turn: int = PER_TURN, *, cpu_s: float | None = None,
                 min_per_turn: int = MIN_PER_TURN) -> None:
        self.per_turn = per_turn
        # s36-stall: `admit` lets a caller run only while the turn of the loop has spent under
        # `cpu_s` (turn_cpu.py, the serving loop only), or it is one of the turn's first
        # `min_per_turn`; None: counts only
        self.cpu_s = cpu_s
        self.min_per_turn = min_per_turn
        self._cpu_turn: int | None = None   # the loop's turn `_ran_in_cpu_turn` counts
        self._ran_in_cpu_turn = 0
        self._sent_back = 0   # woken callers sent back to the front since `_next_turn`
        self._used = 0                 # let in since the turn began
        self._next_turn_due = False    # `_next_turn` is scheduled (runs in the next turn)
        self._waiting: deque[Outcome] = deque()
        # counters (tests, benchmarks): let in at once, made to wait, the most let in one turn
        self.admitted = 0
        self.deferred = 0
        self.most_in_turn = 0
        self.held = 0   # callers kept out of a turn the loop had spent (`cpu_s`)
        # callers held at least once by `cpu_s`, by their `kind`: [how many, the seconds from
        # each one's first hold to its going in, summed]
        self.held_by_kind: dict[str, list] = {}

    async def admit(self, bounded: bool = True, kind: str = "") -> None:
        """Returns in this turn if the budget allows, else in a later one (FIFO). `bounded`
        False: let in past the turn's `cpu_s` (still one of `per_turn`, still in order);
        `kind` names the caller in `held_by_kind`."""
        self.admitted += 1
        held_since: float | None = None   # the loop's time when `cpu_s` first held it
        if not self._waiting and self._used < self.per_turn:
            if not bounded or self._may_run():
                self._take()
                return
            held_since = asyncio.get_running_loop().time()
        self.deferred += 1
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((future, None, None))
        self._schedule()
        while True:
            await future
            if not bounded or self._may_run():
                if held_since is not None:
                    count = self.held_by_kind.setdefault(kind, [0, 0.0])
                    count[0] += 1
                    count[1] += asyncio.get_running_loop().time() - held_since
                return
            if held_since is None:
                held_since = asyncio.get_running_loop().time()
            # woken into a turn already spent: first in line for a later one (behind those
            # of this turn sent back before it: in order)
            future = asyncio.get_running_loop().create_future()
            self._waiting.insert(self._sent_back, (future, None, None))
            self._sent_back += 1
            self._schedule()

    def _may_run(self) -> bool:
        """With `cpu_s`, on the serving loop: this turn has room for one more caller - it has
        spent under `cpu_s`, or fewer than `min_per_turn` callers ran in it."""
        if self.cpu_s is None:
            return True
        spent_s = turn_spent_s()
        if spent_s is None:
            return True
        turn = turn_number()
        if turn != self._cpu_turn:
            self._cpu_turn, self._ran_in_cpu_turn = turn, 0
        if self._ran_in_cpu_turn < self.min_per_turn or spent_s < self.cpu_s:
            self._ran_in_cpu_turn += 1
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

    def _take(self, schedule: bool = True) -> None:
        self._used += 1
        if self._used > self.most_in_turn:
            self.most_in_turn = self._used
        if schedule:
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
        self._let_in()
        if self._waiting:
            self._schedule()

    def _let_in(self) -> None:
        took = False
        while self._waiting and self._used < self.per_turn:
            future, result, error = self._waiting.popleft()
            if future.done():          # a caller that gave up (cancelled) takes no slot
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
            self._take(schedule=False)
            took = True
        if took:
            # the next turn's `_next_turn` after every caller let in here (s36-stall): they run
            # before it, so one sent back by `cpu_s` is back in line before the next batch
            self._schedule()
