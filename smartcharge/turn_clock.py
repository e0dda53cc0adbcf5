"""How much of the loop thread's CPU the current turn of the event loop has spent so far.

Why (issue 10, s30-loop): the budgets that bound a turn's work count pieces - 32 inbound frames
(`turns.TurnBudget`), 32 store answers, a few ms per lane of the site's work (`turn_share`) -
and their sum was the turn: 60-100 stations' handler steps in one turn held the loop 30-50 ms
at 2 000 stations (load 15), the handlers' own turns being most of the turns over 20 ms. A
budget that asks this clock lets a caller in only while the whole turn, whatever spent it, is
under its CPU limit.

What a turn is here: from a run of this clock's own `call_soon` callback to the next. It runs
early in a turn (it was scheduled in the turn before), is armed only while someone asks (a
quiet loop is never kept awake by it: after a turn without a question it is not scheduled
again), and when it is not armed the first question of a turn starts the turn's count there.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable


class TurnClock:
    def __init__(self, clock: Callable[[], float] = time.thread_time) -> None:
        self.clock = clock
        self._began = 0.0          # CPU clock at this turn's start
        self._armed = False        # `_tick` is scheduled
        self._asked = False        # asked since the last `_tick`
        self.turn = 0              # which turn `spent_s` counts (a new number each turn)

    def spent_s(self) -> float:
        """The CPU the loop thread has spent in this turn so far (on the loop's thread)."""
        self._asked = True
        if not self._armed:   # nobody asked last turn: this turn's count starts now
            self._began = self.clock()
            self.turn += 1
            self._arm()
            return 0.0
        return self.clock() - self._began

    def _arm(self) -> None:
        self._armed = True
        asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self._began = self.clock()
        self.turn += 1
        self._armed = False
        if self._asked:   # busy: the next turn is counted from its start too
            self._asked = False
            self._arm()


_clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TurnClock] = \
    weakref.WeakKeyDictionary()


def turn_clock() -> TurnClock:
    """The running loop's clock (one per loop: every budget on it reads the same turn)."""
    loop = asyncio.get_running_loop()
    clock = _clocks.get(loop)
    if clock is None:
        clock = _clocks[loop] = TurnClock()
    return clock
