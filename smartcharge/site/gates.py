"""Which decreases a station's increases wait for, without one wait per pair of stations.

Dispatch sends every station's decreases at once; a station's increases go out only once the
decreases of every station sharing a limited node with it are acknowledged (`dispatch.py`). With
the grid cap binding, that is every station: one `gather` per increasing station over every
decrease is O(stations^2) futures and callbacks, which blocked the event loop for seconds at
2 000 stations (issue 10). Here the decreases are gathered once per limited node, and a station
waits for the few nodes above it: O(stations x depth).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime

# (every decrease acknowledged, when the last one finished; None: it had none to send)
Outcome = tuple[bool, datetime | None]


class DecreaseGates:
    def __init__(self, done: Mapping[str, asyncio.Future], limited: Mapping[str, set[int]]):
        """`done`: station -> the future of its decreases, set to an Outcome. `limited`:
        station -> the limited nodes above it (its own node included)."""
        self._done = done
        self._limited = limited
        self._members: dict[int, list[str]] = {}
        for station_id in done:
            for node in limited[station_id]:
                self._members.setdefault(node, []).append(station_id)
        self._by_node: dict[int, asyncio.Future] = {}

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
            self._by_node[node] = result
        return self._by_node[node]

    async def wait(self, station_id: str) -> tuple[list[str], datetime | None]:
        """Wait for every decrease `station_id` depends on: (the stations whose decreases were
        not all acknowledged, in order; when the last of them finished, None if none)."""
        nodes = [n for n in sorted(self._limited[station_id]) if n in self._members]
        # shielded: one station giving up (a newer plan came) leaves the node's wait to the
        # other stations under it
        results = await asyncio.gather(*(asyncio.shield(self._node(n)) for n in nodes))
        failed = list(dict.fromkeys(m for found, _ in results for m in found))
        latest = max((at for _, at in results if at is not None), default=None)
        return failed, latest

    def cancel(self) -> None:
        for future in self._by_node.values():
            future.cancel()
