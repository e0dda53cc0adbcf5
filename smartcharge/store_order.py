"""One order for the store's two writers: work is committed in the order it was handed in.

With a writer process (store_writer.py) a `StoreOp` goes to the process and a closure to the
writer thread: two queues, each first in, first out, but not with each other. Every caller was
written against one queue - a `flush` that takes what is queued and hands it to the store, then
a read that must see it; a record written and then overwritten by later work - and a closure
handed in after an op could commit before it (found by tests/test_unseen_car.py: the audit's
rows in the process's queue, the test's read on the thread before them).

So the work of one writer runs in a *phase*: handed straight to its queue while that writer's
phase lasts; work for the other writer waits until every piece of the phase is answered, and
everything handed in after it waits behind it (first come, first served). The hot path (the
stations' messages, all `StoreOp`s) never waits while no closure is in flight; a closure (rare:
an OpenADR status, retention's prune, the API's few writes) costs the ops behind it one round
trip of the writer in front of them.

A caller that gives up (cancelled) while its work is in a writer counts as answered: the work
still commits, and work of the other writer may then commit before it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Hashable


class WriterOrder:
    """The phases of one loop's work on two writers; `kind` names the writer."""

    def __init__(self) -> None:
        self._kind: Hashable | None = None   # the writer of the phase
        self._in_flight = 0                   # its work handed in and not answered yet
        self._waiting: deque[tuple[Hashable, asyncio.Future]] = deque()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def turn(self, kind: Hashable) -> asyncio.Future | None:
        """None: `kind`'s work may be handed to its writer now (counted in flight until
        `done`); else a future to `wait` on first."""
        if not self._waiting and (self._kind == kind or self._in_flight == 0):
            self._kind = kind
            self._in_flight += 1
            return None
        gate = asyncio.get_running_loop().create_future()
        self._waiting.append((kind, gate))
        return gate

    async def wait(self, gate: asyncio.Future) -> None:
        try:
            await gate
        except asyncio.CancelledError:
            if gate.done() and not gate.cancelled():
                self.done()   # let through, but never handed in
            else:
                gate.cancel()   # skipped at its turn
            raise

    def done(self) -> None:
        """A piece of work handed in is answered (or will not be handed in)."""
        self._in_flight -= 1
        if self._in_flight == 0:
            self._release()

    def _release(self) -> None:
        # the first waiting opens the next phase, with every one of its writer right behind it
        while self._waiting:
            kind, gate = self._waiting[0]
            if gate.cancelled():
                self._waiting.popleft()
                continue
            if self._in_flight and kind != self._kind:
                return
            self._waiting.popleft()
            self._kind = kind
            self._in_flight += 1
            gate.set_result(None)
