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

Connector ids. `WarmStart` keys its columns and rows by one integer per connector of the problem;
here that is one per session - (station, connector, transaction id) - so a car keeps its columns
from one plan to the next and another car on the same connector gets new ones.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from optimizer.warm import WarmStart


class WarmPlans:
    """One `WarmStart` and the session ids it is keyed by, used by one solve at a time."""

    def __init__(self) -> None:
        self.start = WarmStart()
        self._lock = threading.Lock()
        self._ids: dict[tuple, int] = {}   # (ref, transaction id) -> the WarmStart's id
        self._next_id = 0
        # how the last plan was solved: "warm" / "cold" (WarmStart.last), "busy" (another
        # solve held the model: solved without it), None (not by HiGHS, or no plan yet)
        self.last: str | None = None

    def ids(self, sessions: Sequence) -> np.ndarray:
        """One integer per session (in the problem's row order), the same for a session from
        one plan to the next. Sessions no longer planned are forgotten (a session that comes
        back gets new columns, as if it were another car: exact either way)."""
        keys = [(s.ref, s.transaction_id) for s in sessions]
        known = {}
        for key in keys:
            number = self._ids.get(key)
            if number is None:
                number, self._next_id = self._next_id, self._next_id + 1
            known[key] = number
        self._ids = known
        return np.fromiter((known[key] for key in keys), dtype=np.int64, count=len(keys))

    @contextmanager
    def use(self, sessions: Sequence) -> Iterator[WarmStart | None]:
        """The WarmStart with its ids set for these sessions, or None while another solve
        holds it (never waits: the caller then solves from scratch)."""
        if not self._lock.acquire(blocking=False):
            self.last = "busy"
            yield None
            return
        try:
            self.start.ids = self.ids(sessions)
            self.start.last = None
            try:
                yield self.start
            except BaseException:
                # the model may be half changed: the next plan builds one from scratch
                self.start, self._ids = WarmStart(), {}
                raise
            self.last = self.start.last
        finally:
            self._lock.release()
