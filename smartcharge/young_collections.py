"""A young collection at the edge of a turn of the event loop, once the last one is a while old.

Why (issue 10, s34-stall): CPython counts a young collection's threshold in *net* allocations -
an object that dies takes one off the count, whichever generation it was in. In a serving
process nearly everything long-lived is frozen (`gc_serving.py`), and the steady state replaces
long-lived objects all the time (a station's sample, its heartbeat's timer, a profile): each
new one joins the young generation while the old one it replaces takes one off the count. So the
count sits under its threshold for seconds while the young generation grows, and the collection
that finally comes traverses all of it at once. At 5 000 stations (`ocpp_load`, 90 s window):
gaps of up to 8 s between two collections, young collections of 13 000-55 000 objects holding
the loop 6-22 ms of CPU (~0.4 us an object), in whichever callback allocated last - on top of
that turn's own work.

How: at the start of each turn (before its poll and its callbacks: the last turn's transient
objects are freed by then), the young generation is collected if neither we nor the collector
itself collected for `every_s` of `clock`. Its size is then bounded by what the process keeps
in `every_s`, not by the net count. The collector's own threshold stays as the backstop for a
burst inside one turn. Measured in benchmarks/README.md (s34-stall).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

YOUNG_EVERY_S = 0.1   # the longest a young generation grows between two collections


def _collections_so_far() -> int:
    return sum(generation["collections"] for generation in gc.get_stats())


class YoungAtTurnEdge:
    def __init__(self, every_s: float = YOUNG_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self.clock = clock
        self._last_s = clock()
        self._seen = _collections_so_far()
        self.collected = 0   # collections made here (tests, benchmarks)

    def at_turn_edge(self) -> None:
        """Called by the loop at the start of each turn: cheap unless `every_s` has passed."""
        now_s = self.clock()
        if now_s - self._last_s < self.every_s:
            return
        seen = _collections_so_far()
        if seen == self._seen and gc.isenabled():   # none by the collector since ours
            gc.collect(0)
            self.collected += 1
            seen = _collections_so_far()
        self._seen, self._last_s = seen, now_s


__all__ = ["YOUNG_EVERY_S", "YoungAtTurnEdge"]
