"""Wake many waiting tasks a batch per turn of the event loop, not all in one turn.

A dispatch round has a task per station that has something to send; with the grid cap binding
they all wait for the same thing (every decrease under the grid acknowledged, then the settle
time) and woke in one turn of the loop: 5 000 resumed tasks held it for ~110 ms at 5 000
stations, and every station's MeterValues arriving meanwhile waited behind them (issue 10).
asyncio's ready queue is FIFO, so a message read during such a turn is handled only after the
whole burst: what shortens the turn is waking fewer tasks in it. A `Pacer` runs small jobs -
mostly completing one waiting task's future - at most `batch` per turn, and lets the loop poll
its sockets between two batches.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

PACE_BATCH = 100   # jobs (tasks woken) per turn of the loop


def _set(future: asyncio.Future, result) -> None:
    if not future.done():   # a waiter may have given up (cancelled) meanwhile
        future.set_result(result)


class Pacer:
    def __init__(self, batch: int | None = None, share=None, lane: int | None = None) -> None:
        self.batch = batch
        self.share = share   # turn_share.TurnShare: the background work's CPU per turn
        self.lane = lane
        self._jobs: deque[Callable[[], None]] = deque()
        self._task: asyncio.Task | None = None
        self._closed = False

    def call(self, job: Callable[[], None]) -> None:
        """Run `job()` in a later turn of the loop, in order, at most `batch` per turn."""
        if self._closed:
            return
        self._jobs.append(job)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(
                self._run() if self.share is None
                else self.share.run(self._run(), lane=self.lane))

    def wake(self, future: asyncio.Future, result) -> None:
        """Complete `future` with `result` (unless it is done by then) in a later batch."""
        self.call(lambda: _set(future, result))

    async def _run(self) -> None:
        batch = self.batch or PACE_BATCH   # read at run time: tests make it small
        while self._jobs:
            for _ in range(min(batch, len(self._jobs))):
                job = self._jobs.popleft()
                try:
                    job()
                except Exception:  # one waiter's trouble never stops the others
                    log.exception("paced job failed")
                if self.share is not None and self.share.should_yield():
                    break
            await asyncio.sleep(0)   # the loop's I/O (stations' messages) gets its turn

    def close(self) -> None:
        """Drop what is left (the owner is done or cancelled). The task is let go of too: a
        task cancelled mid-run keeps its CancelledError, whose traceback holds `_run`'s frame,
        which holds this pacer (and the job it ran last: a dispatch round's gates) - a garbage
        cycle, frozen for good in a serving process (gc_serving.freeze_survivors, s23-gc)."""
        self._closed = True
        self._jobs.clear()
        if self._task is not None:
            self._task.cancel()
            self._task = None
