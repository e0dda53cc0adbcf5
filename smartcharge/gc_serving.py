"""The garbage collector of a process that serves stations (issue 10).

CPython's cyclic collector traverses every object of the generations it collects. A server
holding thousands of stations keeps ~100 long-lived objects per connection (the socket, the
adapter, its tasks and coroutines, the station's control state); after a boot storm they all sit
in the young generations, and the first generation-1 collection that traverses them held the
event loop 0.3-0.8 s (measured at 2 000 and 5 000 stations), every later full one longer still.
`gc.freeze()` moves every object the collector tracks into a permanent generation it never
traverses; objects that die by reference count are freed as before.

The price: garbage *cycles* among frozen objects are never collected while frozen. A station
whose connection was frozen and later closes leaves the part of its objects that form cycles
(measured in-process: ~126 objects, ~24 KB shallow per closed connection, client side
included). So we freeze only when the number of connections grew a lot (a boot storm) and then
settled, not on a timer; and once many frozen connections have ended, one deliberate full
collection reclaims their cycles and freezes the rest again (`FreezeWhenSettled`).

Between storms, whatever survives a collection - a young one included - is frozen as that
collection ends (`freeze_survivors`): no later collection traverses it again, so the middle
generation stays empty and a middle collection costs what a young one does. Freezing only
what survived a middle collection (every MIDDLE_EVERY young ones) left those middle collections
the loop's longest pauses at 5 000 stations: median 25 ms, up to 68 ms CPU, 38 of 65 over 20
ms after the boot storm (s31-p99); each survivor was traversed twice. The cycles our own
long-lived objects leave (a dispatch round's gates) are broken where they are made.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from smartcharge.appkeys import REGISTRY

log = logging.getLogger(__name__)


def tune_gc_for_serving() -> None:
    """For a process that serves (not for tests, which build many apps): the collector's
    defaults (a young collection every 700 net allocations) spent ~9 % of the server's time at
    2 000 stations, with full collections of 0.2-0.3 s each (issue 10). Collect the young
    generation every 2 500 instead, with its survivors frozen after it (`freeze_survivors`:
    the middle generation stays empty), and keep what exists at start (the
    site, the imports) out of every collection. A young collection's pause grows with what it
    traverses: a re-plan at 5 000 stations leaves ~50 000 live objects (its plan), and every
    50 000 allocations one collection traversed them at once, 90-160 ms of the loop's CPU at
    a load average of 6-9; every 10 000, the longest was 49 ms (s19-burst). The count is of
    net allocations, so the young generation grows past it while older objects die (a
    sample replacing the last, a profile replacing the one before): every 10 000, young
    collections of 55 000-95 000 objects held the loop 47-71 ms CPU at 5 000 stations;
    every 2 500, 21-25 ms, for ~0.3 % of a core more collecting in all (benchmarks/README.md,
    s22-msgcost)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_EVERY, MIDDLE_EVERY, 100)
    # measured on CPython's generational collector (3.11-3.13); 3.14's incremental one
    # collects the old generation in increments that this was not measured against
    if sys.version_info < (3, 14) and freeze_survivors not in gc.callbacks:
        gc.callbacks.append(freeze_survivors)


YOUNG_EVERY = 2_500    # net allocations between two young collections
# young collections between two of the middle generation. With every collection's survivors
# frozen (`freeze_survivors`) the middle generation is empty and a middle collection is a young
# one; kept as the bound it was (s23-gc, 5 000 stations: every 4, the longest 27-57 ms CPU
# when a middle collection traversed what the last 4 young ones left)
MIDDLE_EVERY = 4


def freeze_survivors(phase: str, info: dict) -> None:
    """A `gc.callbacks` entry: what survived a collection (young, middle or full) is frozen
    as soon as it ends, so no later collection traverses it again. When a collection ends,
    the generations it collected are empty (their survivors moved on) and the older ones were
    emptied by the freeze after the last, so the freeze takes exactly the survivors.

    Why after a young one too (s31-p99): frozen only after a middle collection, what survived
    the last MIDDLE_EVERY young ones was traversed once more by it - 25 ms median, up to 68 ms
    of the loop's CPU each, every ~6 s at 5 000 stations, the longest pauses left; frozen after
    each young one, no middle generation builds up (before that, s23-gc: a middle collection
    every few minutes traversing everything kept since, 233-362 ms). The price, as with every
    freeze: a garbage cycle among frozen objects is not collected until a compaction
    (`compact`, `FrozenGrowth`), and now that includes a cycle whose objects were alive at a
    young collection (~a second old). Measured at 5 000 stations over a boot storm, its
    set-ups and a 90 s window: no frozen cycle found at shutdown (benchmarks/README.md,
    s31-p99); the cycles our own code leaves behind are broken where they are made (a
    dispatch round's)."""
    if phase == "stop":
        gc.freeze()   # O(1): the lists are merged


FREEZE, COMPACT = "freeze", "compact"


class FreezeWhenSettled:
    """When to freeze: the connections grew by `grown_fraction` of those at the last freeze
    (and by at least `min_grown`) and then did not change for `settle_s` - a boot storm is over
    and the objects its stations keep are long-lived. Fewer connections lower the mark, so a
    reconnect wave after a drop is frozen too.

    When to compact (unfreeze, one full collection, freeze again): `ended_fraction` of the
    connections frozen (at least `min_ended`) have ended since the last freeze - each one
    left its garbage cycles in the permanent generation (measured: ~126 objects, ~24 KB per
    connection, the test client's side included) - and the connections did not change for
    `settle_s`. A full collection then holds the loop once (0.7-1.7 s at 5 000 stations,
    measured), instead of the leak growing
    with every reconnect (and a wave of disconnects is compacted once it has settled, not
    while it goes on). Pure: the caller passes the counts and the time."""

    def __init__(self, *, grown_fraction: float = 0.1, min_grown: int = 100,
                 ended_fraction: float = 0.1, min_ended: int = 100,
                 settle_s: float = 10.0) -> None:
        self.grown_fraction = grown_fraction
        self.min_grown = min_grown
        self.ended_fraction = ended_fraction
        self.min_ended = min_ended
        self.settle_s = settle_s
        self.frozen_at = 0                  # connections at the last freeze (or the low since)
        self._frozen_count = 0              # connections at the last freeze
        self._ended_at_freeze = 0
        self._count = 0
        self._changed_at_s: float | None = None

    def observe(self, connected: int, ended: int, now_s: float) -> str | None:
        """`connected` now, `ended`: connections ended since start. FREEZE, COMPACT or None
        (after FREEZE or COMPACT the marks move to now)."""
        if connected != self._count:   # a storm settles when the count stops moving
            self._changed_at_s = now_s
        self._count = connected
        self.frozen_at = min(self.frozen_at, connected)
        if self._changed_at_s is not None and now_s - self._changed_at_s < self.settle_s:
            return None
        action = None
        # only connections frozen by us leave cycles there: before the first freeze a storm's
        # timeouts and reconnects are no reason for a full collection (1.6 s at 10 000)
        if self._frozen_count > 0 and ended - self._ended_at_freeze >= max(
                self.min_ended, self.ended_fraction * self._frozen_count):
            action = COMPACT
        elif connected - self.frozen_at >= max(self.min_grown,
                                               self.grown_fraction * self.frozen_at):
            action = FREEZE
        if action is not None:
            self.frozen_at = self._frozen_count = connected
            self._ended_at_freeze = ended
        return action


class FrozenGrowth:
    """Whether the frozen objects grew to `factor` x what the last compaction (or the first
    look) left, and by at least `min_objects`. `freeze_survivors` freezes whatever outlives a
    collection, so a garbage cycle of code that kept it that long is never collected
    until a compaction - a leak no one would see object by object. The frozen set grows ~1.5x
    from a boot storm to the steady state at 5 000 stations (s23-gc): twice as many is more
    than a site's state grows, and one full collection then (0.7-1.7 s at 5 000 stations)
    bounds the leak to about the size of the state. Pure: the caller passes the count (the
    server's: the heap's blocks, `heap_blocks`, which grow as the frozen set does)."""

    def __init__(self, *, factor: float = 2.0, min_objects: int = 200_000) -> None:
        self.factor = factor
        self.min_objects = min_objects
        self.base: int | None = None

    def due(self, frozen: int) -> bool:
        if self.base is None:
            self.base = frozen
            return False
        return frozen >= max(self.base * self.factor, self.base + self.min_objects)


def heap_blocks() -> int:
    """What `FrozenGrowth` looks at in a serving process: the memory blocks the interpreter's
    allocator holds (`sys.getallocatedblocks`, a sum over its arenas: ~0.3 ms at 3 million
    blocks). The frozen objects' own count (`gc.get_freeze_count`) walks the frozen list - 20 ms
    of the loop's CPU at 1.2 million frozen objects on a quiet machine, 127 ms in one turn of
    the 5 000-station benchmark under load (s38-stall), every `growth_every_s`. In a serving
    process nearly everything that lives past a young collection is frozen
    (`freeze_survivors`), so the heap grows as the frozen set does; a leak of frozen cycles
    grows both."""
    return sys.getallocatedblocks()


def compact() -> None:
    """Let one full collection see everything frozen (the cycles of connections that ended),
    then freeze what survives."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def freeze_after_storms(app: web.Application, policy: FreezeWhenSettled | None = None, *,
                        poll_s: float = 1.0,
                        freeze: Callable[[], None] = gc.freeze,
                        compact: Callable[[], None] = compact,
                        growth: FrozenGrowth | None = None, growth_every_s: float = 300.0,
                        frozen_count: Callable[[], int] | None = None) -> None:
    """Add a task to `app` that freezes the collector's objects once a growth of the
    connections has settled, and compacts once many frozen connections have ended
    (`FreezeWhenSettled`) or the frozen objects have grown a lot (`FrozenGrowth`, looked at
    every `growth_every_s` through `frozen_count`, by default `heap_blocks`: not the frozen
    list's own count, which walks it). For
    `smartcharge serve`, not `create_app`: tests build many apps in one process."""
    policy = policy or FreezeWhenSettled()
    growth = growth or FrozenGrowth()
    frozen_count = frozen_count or heap_blocks

    async def watch() -> None:
        registry = app[REGISTRY]
        looked_s = time.monotonic()
        while True:
            await asyncio.sleep(poll_s)   # a poll: connections come and go without an event
            connected = registry.online_count
            now_s = time.monotonic()
            action = policy.observe(connected, registry.attached_total - connected, now_s)
            if action is None and now_s - looked_s >= growth_every_s:
                looked_s = now_s
                if growth.due(frozen_count()):
                    action = COMPACT
            if action == FREEZE:
                freeze()   # O(1): moves the generations' lists
                log.info("gc: froze the collector's objects at %d connections", connected)
            elif action == COMPACT:
                started_s = time.perf_counter()
                compact()
                growth.base = frozen_count()
                log.info("gc: a full collection over the frozen objects (connections ended "
                         "or the frozen set grown since the last) at %d connections: %.0f ms",
                         connected, (time.perf_counter() - started_s) * 1000)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(watch(), name="gc-freeze-after-storms")
        yield
        task.cancel()
        await asyncio.wait({task})

    app.cleanup_ctx.append(ctx)
