"""One CPU budget per turn of the event loop for the background work: how much of this turn the
site's own work (dispatch rounds, set-ups of connecting stations, re-plans, the guard) may still
spend, so that the answers to stations' own calls never queue behind more than a bounded slice
of it.

Why (issue 10, s24-tail): a MeterValues goes through 4-6 turns of the loop between its read and
its answer, and every turn ran everything that was ready; each source bounded only itself (32
frames, 32 store callers, 100-200 dispatch steps, a guard step, a re-plan step, set-ups), so a
turn was their sum - 10-27 ms of CPU at 5 000 stations. Here the background sources share one
budget in three lanes, each with its own share of the loop thread's CPU per turn, woken in this
order: SAFETY (`safety_s`: the guard's passes, never held by the rest), URGENT (`urgent_s`: a
re-plan for a limit, an overload, a station lost or refusing, and that plan's dispatch round -
what brings the site under a lowered limit), BACKGROUND (`share_s`: every other round, set-ups,
probes, re-plans, readings, snapshots).

How: a background coroutine runs through `TurnShare.run(coro)`, which asks before each of its
steps (each resumption until it next suspends) and charges the step's CPU (`clock`, the loop
thread's CPU time) to the turn. A step that finds the turn's share spent waits, in order, for a
later turn; at each turn the oldest waiters are woken, as many as the share is expected to
hold (by the mean cost of a step); one that finds the turn's share spent by those before it
waits again, first in line - except the first of its lane in a turn, so nothing starves. A step is
never cut: a source with long steps yields between pieces when `should_yield()` says the share
is spent (the guard's and the plan inputs' generators, the dispatch round's comparisons).
Cancellations pass at once. A coroutine run inside another's step is charged with it, once.

What a "turn" is: from one run of the share's own callback (scheduled with `call_soon` while
anything is spent or waits) to the next - one poll of the sockets in between, like
`turns.TurnBudget`.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

BACKGROUND, SAFETY, URGENT = 0, 1, 2
SHARE_S = 0.004     # background CPU per turn: a MeterValues waits through ~5 turns
SAFETY_S = 0.004    # the guard's own, beside it (it waits first, and is never held by it)
# a re-plan for a limit, an overload, a station lost or refusing, and its dispatch round: what
# brings the site under a lowered limit is not queued behind set-ups and raises (a DR event at
# 1 000 connectors waited 2x longer behind them in one lane, s25-budget)
URGENT_S = 0.004
MIN_STEP_S = 1e-4   # the least a step is expected to cost (how many waiters one turn wakes)
MAX_LET_IN = 64     # waiters woken per turn at most (one woken in vain waits again: a few us)
LONG_STEP_S = 0.010   # a step this long is counted by where it ended (`long_steps`)


class TurnShare:
    def __init__(self, share_s: float = SHARE_S, safety_s: float = SAFETY_S,
                 clock: Callable[[], float] = time.thread_time,
                 urgent_s: float = URGENT_S) -> None:
        self.limit_s = (share_s, safety_s, urgent_s)
        self.clock = clock
        self._spent = [0.0, 0.0, 0.0]     # this turn's CPU, per lane
        self._ran = [0, 0, 0]             # steps begun this turn, per lane
        self._step_s = [5e-4, 5e-4, 5e-4]   # a step's mean cost, per lane
        self._waiting: tuple[deque[asyncio.Future], ...] = (deque(), deque(), deque())
        self._turn_due = False
        self._inside: int | None = None   # the lane of the step running now
        self._step_began = 0.0
        # counters (tests, benchmarks)
        self.steps = 0
        self.deferred = 0
        self.turns = 0
        self.most_in_turn_s = [0.0, 0.0, 0.0]
        self.long_steps: dict[str, list] = {}   # where a step over LONG_STEP_S ended: [n, max s]

    # --- what sources call ------------------------------------------------------------------
    def run(self, coro: Coroutine[Any, Any, T], *, safety: bool = False,
            lane: int | Callable[[], int] | None = None) -> Coroutine[Any, Any, T]:
        """`coro`, each of its steps asking this budget first and charged to it (a coroutine:
        await it, or make it a task). `lane`: BACKGROUND (default), SAFETY (`safety=True`),
        URGENT, or a function saying which before each step (the controller's task: urgent
        while an urgent re-plan waits or runs)."""
        return _Metered(self, coro, lane if lane is not None
                        else SAFETY if safety else BACKGROUND)

    def should_yield(self) -> bool:
        """Inside a step run through `run`: this turn's share of its lane is spent, counting
        the step so far - give the loop back before the next piece. Outside one: True."""
        lane = self._inside
        if lane is None:
            return True
        spent = self._spent[lane] + self.clock() - self._step_began
        return spent >= self.limit_s[lane]

    # --- admission ----------------------------------------------------------------------------
    def _admit(self, lane: int):
        """(a generator) Returns once this turn has room for the caller's step: at once when
        nobody of its lane waits and the turn's share is not spent, else in a later turn, in
        order. A waiter woken runs if its turn's share is still not spent when it gets there,
        or if it is the first of its lane to run in that turn (nothing starves); else it waits
        again, first in line."""
        if not self._waiting[lane] and self._spent[lane] < self.limit_s[lane]:
            self._ran[lane] += 1
            self._schedule()
            return
        self.deferred += 1
        future = asyncio.get_running_loop().create_future()
        waiting = self._waiting[lane]
        waiting.append(future)
        self._schedule()
        while True:
            try:
                yield from future
            except BaseException:
                if not future.done() or future.cancelled():
                    try:
                        waiting.remove(future)
                    except ValueError:
                        pass
                raise
            if self._ran[lane] == 0 or self._spent[lane] < self.limit_s[lane]:
                self._ran[lane] += 1
                return
            # woken for this turn, but the ones before it spent it: first in line again
            future = asyncio.get_running_loop().create_future()
            waiting.appendleft(future)
            self._schedule()

    def _charge(self, lane: int, cost_s: float) -> None:
        self.steps += 1
        self._spent[lane] += cost_s
        if self._spent[lane] > self.most_in_turn_s[lane]:
            self.most_in_turn_s[lane] = self._spent[lane]
        self._step_s[lane] = 0.9 * self._step_s[lane] + 0.1 * cost_s
        self._schedule()

    def _long_step(self, coro: Coroutine, cost_s: float, collected: bool) -> None:
        """Count a step over LONG_STEP_S by where it ended (the two innermost awaits it stopped
        at: the work before them is what to cut into pieces), and whether the collector ran
        in it - for the benchmarks."""
        chain = []
        while coro is not None:
            if isinstance(coro, _Metered):
                coro = coro.coro
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is None:
                break
            if frame.f_code is _Metered._drive.__code__:   # a share run inside: what it runs
                coro = frame.f_locals.get("coro")
                continue
            if "asyncio" not in frame.f_code.co_filename:   # ours, not asyncio.sleep's
                chain.append(f"{frame.f_code.co_qualname}:{frame.f_lineno}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        where = " > ".join(chain[-2:]) or "done"
        if collected:
            where += " (a collection in it)"
        entry = self.long_steps.setdefault(where, [0, 0.0])
        entry[0] += 1
        entry[1] = max(entry[1], cost_s)

    def _schedule(self) -> None:
        if not self._turn_due:
            self._turn_due = True
            asyncio.get_running_loop().call_soon(self._turn)

    def _turn(self) -> None:
        """A new turn: its spending starts at nothing; the oldest waiters are woken (safety
        first), as many per lane as its share is expected to hold by the mean cost of a step,
        at least one - they run in the next turn, which begins (the next call of this) before
        them."""
        self._turn_due = False
        self.turns += 1
        self._spent = [0.0, 0.0, 0.0]
        self._ran = [0, 0, 0]
        if any(self._waiting):
            self._schedule()   # before the wake-ups: the next turn begins first
        for lane in (SAFETY, URGENT, BACKGROUND):
            waiting = self._waiting[lane]
            n = min(MAX_LET_IN, max(1, int(self.limit_s[lane]
                                           / max(self._step_s[lane], MIN_STEP_S))))
            while waiting and n > 0:
                future = waiting.popleft()
                if future.done():   # gave up (cancelled)
                    continue
                future.set_result(None)
                n -= 1


class _Metered(Coroutine):
    """A coroutine that drives `coro` step by step (as a task would), each step admitted and
    charged by the share."""

    def __init__(self, share: TurnShare, coro: Coroutine, lane: int) -> None:
        self.share, self.coro, self.lane = share, coro, lane
        self._driver = self._drive()
        self._started = False

    def __await__(self):
        self._started = True
        return self._driver

    def send(self, value):
        self._started = True
        return self._driver.send(value)

    def throw(self, *error):
        if not self._started:
            # cancelled before its first step (a task cancelled at once): `coro` never ran,
            # closed here so it is not reported as never awaited
            self.coro.close()
        return self._driver.throw(*error)

    def close(self) -> None:
        self._driver.close()
        self.coro.close()

    def _drive(self):
        share, coro = self.share, self.coro
        lanes = self.lane if callable(self.lane) else None
        lane = self.lane if lanes is None else BACKGROUND
        value: Any = None
        error: BaseException | None = None
        while True:
            if lanes is not None:
                lane = lanes()
            nested = share._inside is not None
            if not nested and error is None:
                try:
                    yield from share._admit(lane)
                except BaseException as exc:   # cancelled while waiting: passed on at once
                    error = exc
            if nested:
                # run inside another's step (awaited in it): charged with it, once
                try:
                    yielded = coro.send(value) if error is None else coro.throw(error)
                except StopIteration as done:
                    return done.value
            else:
                share._inside, share._step_began = lane, share.clock()
                young = gc.get_count()[0]
                try:
                    yielded = coro.send(value) if error is None else coro.throw(error)
                except StopIteration as done:
                    return done.value
                finally:
                    share._inside = None
                    cost = share.clock() - share._step_began
                    share._charge(lane, cost)
                    if cost > LONG_STEP_S:
                        share._long_step(coro, cost, gc.get_count()[0] < young)
            try:
                value, error = (yield yielded), None
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                value, error = None, exc


__all__ = ["BACKGROUND", "SAFETY", "TurnShare", "URGENT"]
