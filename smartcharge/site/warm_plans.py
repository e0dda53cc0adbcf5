"""The optimizer's warm start (optimizer/warm.py) kept by one site controller from one re-plan to
the next.

Why. A re-plan after one car arrives changes the last plan's LP by a few columns and rows; the
kept HiGHS model, changed into the new LP, starts one car away from the optimum instead of from
scratch (benchmarks/README.md, "Warm re-plans in the controller"). The optimum is the same LP's:
`WarmStart` sets every cost, bound and row of the new problem, and builds from scratch whenever
the kept model cannot be changed into it (`WarmStart.last` says which it was).

Who owns what. The controller owns one `WarmPlans` and hands it to the planner with the picture;
the planner uses it in its worker thread. A HiGHS model must never be used by two solves at once,
so `use` takes a lock without waiting: a second plan made while one is under way (a test or a
benchmark calling `replan` beside the controller's loop) solves from scratch, which is exact too.

Connector and slot ids. `WarmStart` keys its columns and rows by one integer per connector of the
problem and one per slot; here that is one per session - (station, connector, transaction id) -
so a car keeps its columns from one plan to the next and another car on the same connector gets
new ones, and one per slot end, so a slot keeps its columns while the plan's start moves through
it (it only gets shorter), a new edge (a departure, a limit's change) adds one and passing a slot
boundary drops one, instead of every later slot moving by one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from optimizer.warm import SLOT_SPAN, WarmStart

# Below this many sessions a plan is solved from scratch: at 100 phase-aware connectors the kept
# model took more simplex iterations than a cold solve (1 281-1 630 vs 999-1 420) and 5-14 ms more
# CPU; at 300 it saved 25-40 ms (19-26 %), at 1 000 10-37 % (benchmarks/README.md, "Warm re-plans
# in the controller")
MIN_SESSIONS = 200


class WarmPlans:
    """One `WarmStart` and the session ids it is keyed by, used by one solve at a time."""

    def __init__(self) -> None:
        self.start = WarmStart()
        self._lock = threading.Lock()
        # ref -> (the WarmStart's id, the transaction id it was given for): two dicts of
        # numbers, not a (ref, transaction id) key per session made anew by every plan - objects
        # every young collection after a re-plan traversed (issue 10)
        self._ids: dict = {}
        self._txs: dict = {}
        self._next_id = 0
        self._slot_ids: dict = {}          # slot end -> the WarmStart's slot id
        self._next_slot = 0
        # how the last plan was solved: "warm" / "cold" (WarmStart.last), "busy" (another
        # solve held the model: solved without it), "small" (fewer than min_sessions), None
        # (not by HiGHS, or no plan yet)
        self.last: str | None = None
        self.min_sessions = MIN_SESSIONS

    def ids(self, sessions: Sequence) -> np.ndarray:
        """One integer per session (in the problem's row order), the same for a session from
        one plan to the next. Sessions no longer planned are forgotten (a session that comes
        back gets new columns, as if it were another car: exact either way)."""
        ids, txs, next_id = {}, {}, self._next_id
        old_ids, old_txs = self._ids, self._txs
        for s in sessions:
            number = old_ids.get(s.ref)
            if number is None or old_txs[s.ref] != s.transaction_id:
                number, next_id = next_id, next_id + 1   # a new car: new columns
            ids[s.ref], txs[s.ref] = number, s.transaction_id
        self._ids, self._txs, self._next_id = ids, txs, next_id
        return np.fromiter((ids[s.ref] for s in sessions), dtype=np.int64, count=len(sessions))

    def slot_ids(self, ends: Sequence) -> np.ndarray:
        """One integer per slot, by its end: the same for a slot from one plan to the next."""
        if self._next_slot + len(ends) >= SLOT_SPAN:    # after years of plans: start afresh
            self.start, self._ids, self._txs = WarmStart(), {}, {}
            self._slot_ids, self._next_slot = {}, 0
        self._slot_ids, self._next_slot = _renumbered(ends, self._slot_ids, self._next_slot)
        return np.fromiter((self._slot_ids[end] for end in ends), dtype=np.int64,
                           count=len(ends))

    @contextmanager
    def use(self, sessions: Sequence, slot_ends: Sequence | None = None
            ) -> Iterator[WarmStart | None]:
        """The WarmStart with its ids set for these sessions (and slots, by their ends), or None
        while another solve holds it (never waits: the caller then solves from scratch)."""
        if len(sessions) < self.min_sessions:
            self.last = "small"
            yield None
            return
        if not self._lock.acquire(blocking=False):
            self.last = "busy"
            yield None
            return
        try:
            self.start.slot_ids = None if slot_ends is None else self.slot_ids(slot_ends)
            self.start.ids = self.ids(sessions)
            self.start.last = None
            try:
                yield self.start
            except BaseException:
                # the model may be half changed: the next plan builds one from scratch
                self.start, self._ids, self._txs, self._slot_ids = WarmStart(), {}, {}, {}
                raise
            self.last = self.start.last
        finally:
            self._lock.release()


def _renumbered(keys: Sequence, numbers: dict, next_number: int) -> tuple[dict, int]:
    """(key -> number for these keys only, the next free number): a key seen before keeps its
    number, a new one takes the next; keys not among these are forgotten."""
    known = {}
    for key in keys:
        number = numbers.get(key)
        if number is None:
            number, next_number = next_number, next_number + 1
        known[key] = number
    return known, next_number
