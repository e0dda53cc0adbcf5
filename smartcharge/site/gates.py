"""Which decreases a station's increases wait for, without one wait per pair of stations.

Dispatch sends every station's decreases at once; a station's increases go out only once the
decreases of every station sharing a limited node with it are acknowledged (`dispatch.py`). With
the grid cap binding, that is every station: one `gather` per increasing station over every
decrease is O(stations^2) futures and callbacks, which blocked the event loop for seconds at
2 000 stations (issue 10). Here the decreases are gathered once per limited node, and a station
waits for the few nodes above it: O(stations x depth).

The stations waiting on a node are woken a batch per turn of the event loop (`pacing.py`):
with the grid cap binding every increasing station waits on the grid's node, and waking them
all at once held the loop ~100 ms at 5 000 stations (issue 10).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from smartcharge.site.pacing import Pacer

# (every decrease acknowledged, when the last one finished; None: it had none to send)
Outcome = tuple[bool, datetime | None]
# (the stations whose decreases were not all acknowledged, when the last one finished)
Gate = tuple[list[str], datetime | None]


@dataclass(eq=False)
class _Waiter:
    future: asyncio.Future   # -> Gate, or None: a node's decreases were cancelled (the round)
    nodes: list[int]
    left: int


class DecreaseGates:
    def __init__(self, done: Mapping[str, asyncio.Future], limited: Mapping[str, set[int]],
                 pacer: Pacer | None = None):
        """`done`: station -> the future of its decreases, set to an Outcome. `limited`:
        station -> the limited nodes above it (its own node included). `pacer`: wakes the
        waiters a batch per turn of the loop (the owner's, else one of its own)."""
        self._done = done
        self._limited = limited
        self._own_pacer = pacer is None
        self._pacer = pacer or Pacer()
        self._waiting: dict[int, list[_Waiter]] = {}   # node -> its waiters not yet counted
        self._members: dict[int, list[str]] = {}
        for station_id in done:
            for node in limited[station_id]:
                self._members.setdefault(node, []).append(station_id)
        self._by_node: dict[int, asyncio.Future] = {}
        # (a station's decreases' future, the callback counting it): removed by `cancel`
        self._hooked: list[tuple[asyncio.Future, Callable]] = []
        self._cancelled = False

    def _node(self, node: int) -> asyncio.Future:
        """(failed stations, latest finish) of the decreases under one node, gathered once:
        one callback per station's outcome that counts down (a gather of one shield per
        station created 2 000 futures in one turn of the loop under a root limit)."""
        if node not in self._by_node:
            members = self._members[node]
            result = asyncio.get_running_loop().create_future()
            left = [len(members)]

            def one_done(_: asyncio.Future) -> None:
                left[0] -= 1
                if left[0] == 0 and not result.done():
                    outcomes = [self._done[m] for m in members]
                    if any(o.cancelled() for o in outcomes):
                        result.cancel()
                        return
                    failed = [m for m, o in zip(members, outcomes) if not o.result()[0]]
                    result.set_result((failed, max((o.result()[1] for o in outcomes
                                                    if o.result()[1] is not None),
                                                   default=None)))

            # a callback, not a wait: cancelling this node's future never cancels a station's
            # decreases
            for member in members:
                self._done[member].add_done_callback(one_done)
                self._hooked.append((self._done[member], one_done))
            result.add_done_callback(lambda _: self._node_over(node))
            self._by_node[node] = result
        return self._by_node[node]

    def _node_over(self, node: int) -> None:
        """One node's decreases are over: its waiters are counted down, a batch per turn (one
        job each: the waiters whose last node this was are woken in that job)."""
        for waiter in self._waiting.pop(node, ()):
            self._pacer.call(lambda w=waiter: self._count_down(w))

    def _count_down(self, waiter: _Waiter) -> None:
        waiter.left -= 1
        if waiter.left == 0:
            self._finish(waiter)

    def _finish(self, waiter: _Waiter) -> None:
        if waiter.future.done():
            return   # given up (a newer plan came)
        nodes = [self._by_node.get(n) for n in waiter.nodes]
        if any(n is None or n.cancelled() for n in nodes):   # None: `cancel` came first
            waiter.future.set_result(None)
            return
        results = [n.result() for n in nodes]
        failed = list(dict.fromkeys(m for found, _ in results for m in found))
        latest = max((at for _, at in results if at is not None), default=None)
        waiter.future.set_result((failed, latest))

    def waiter(self, station_id: str) -> asyncio.Future:
        """A future of every decrease `station_id` depends on: (the stations whose decreases
        were not all acknowledged, in order; when the last of them finished, None if none), or
        None if they were cancelled. Done at once when there is nothing to wait for; else
        completed in a batch of the pacer's. Cancelling it leaves the decreases and the other
        waiters alone."""
        future = asyncio.get_running_loop().create_future()
        if self._cancelled:   # its maps are gone: nothing it waited for will be known
            future.set_result(None)
            return future
        nodes = [n for n in sorted(self._limited[station_id]) if n in self._members]
        waiter = _Waiter(future, nodes, len(nodes))
        for node in nodes:
            if self._node(node).done():
                waiter.left -= 1
            else:
                self._waiting.setdefault(node, []).append(waiter)
        if waiter.left == 0:
            self._finish(waiter)
        return future

    async def wait(self, station_id: str) -> Gate | None:
        """`waiter`, awaited."""
        return await self.waiter(station_id)

    def cancel(self) -> None:
        """The round is over: every node's future is cancelled, and the references that made
        the gates a garbage cycle (a pending decrease's future -> its counting callback ->
        the gates -> the futures) are dropped, so the round's futures, sets and waiters are
        freed by their reference counts, not left to the cycle collector: the serving
        process freezes what survives a collection (gc_serving.freeze_survivors), and
        a round's cycle frozen was ~4 000 objects never freed (s23-gc)."""
        self._cancelled = True
        for future in self._by_node.values():
            future.cancel()
        if self._own_pacer:
            self._pacer.close()
        for future, callback in self._hooked:
            future.remove_done_callback(callback)
        self._hooked.clear()
        self._by_node.clear()   # a node's late callback finds nothing: nobody waits now
        self._waiting.clear()
        self._members.clear()
        self._done = {}
