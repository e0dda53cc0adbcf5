"""The event loop `smartcharge serve` runs on: asyncio's selector loop, with a bound on how much
socket work one turn of the loop takes on.

Why (issue 10, s33-stall): a turn of asyncio's loop runs a callback for every socket the poll
found ready, and the listening socket's callback accepts up to the listen backlog (4 096 in the
benchmarks) connections at once. In a boot storm of 5 000 stations one poll found 1 100-1 850
sockets with a handshake to read and one callback accepted 700 connections: turns of 40-62 ms
of the loop thread's CPU (reads, accepts, the handlers they start), every other station's
answer waiting behind them. The stations' own budgets (`turns.py`) bound what runs after a
frame is read, not the reads.

How: at most `events_per_turn` ready sockets are taken into one turn; the poll is level
triggered (epoll, poll, select: asyncio's selectors), so a socket left out is reported again by
the next poll, which the loop makes at once (its ready queue is not empty). While turns are cut,
the sockets left out longest go first, so a socket that stays readable (a station flooding us)
cannot keep the others out: each ready one is taken within (ready / events_per_turn) turns. The listening socket's callback accepts at most
`accepts_per_turn` connections; the rest wait in the kernel's backlog for the next turn, as
they do in asyncio whenever the backlog outgrows one callback. Nothing is dropped or reordered
within a socket; a burst only takes more turns.

At the start of each turn, the young generation is collected once it has not been for a while
(`young_collections.py`, s34-stall): the collector's own threshold counts net allocations and let
it grow to tens of thousands of objects, collected in the middle of a turn.

Uses three methods of asyncio's selector loop that are not public (`_run_once`, `_process_events`,
`_accept_connection`, Python 3.11-3.13); `serving_loop_factory` falls back to asyncio's own loop
when they are missing (tests/test_serving_loop.py checks they are there).
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Callable

from smartcharge.young_collections import YOUNG_EVERY_S, YoungAtTurnEdge

# ready sockets per turn: ~20-40 us each (read, parse): 5-10 ms. As thousands of stations
# leave at once each ends a connection (~170 us with its handler's last step): 40-46 ms turns;
# 64 made them 20 ms, but the boot storm settled later in the same minutes (s34-stall): kept
EVENTS_PER_TURN = 256
ACCEPTS_PER_TURN = 64   # connections accepted per turn (a transport, a protocol, a task each)


class ServingLoop(asyncio.SelectorEventLoop):
    def __init__(self, selector: selectors.BaseSelector | None = None, *,
                 events_per_turn: int = EVENTS_PER_TURN,
                 accepts_per_turn: int = ACCEPTS_PER_TURN,
                 young_every_s: float | None = YOUNG_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(selector)
        # the young generation collected at a turn's edge (young_collections.py); None: never
        self.young_collections = (None if young_every_s is None
                                  else YoungAtTurnEdge(young_every_s, clock))
        self.events_per_turn = events_per_turn
        self.accepts_per_turn = accepts_per_turn
        # socket -> the cut turn it was last taken in, while turns are being cut
        self._taken_at: dict[int, int] = {}
        # counters (tests, benchmarks)
        self.events_left = 0     # ready sockets left to a later poll
        self.turns_cut = 0

    def _run_once(self) -> None:
        if self.young_collections is not None:
            self.young_collections.at_turn_edge()
        super()._run_once()

    def _process_events(self, event_list: list) -> None:
        if len(event_list) > self.events_per_turn:
            # the longest left out first (never taken: first of all), in the poll's order
            # otherwise: every ready socket is taken within len / events_per_turn cut turns
            self.turns_cut += 1
            taken_at = self._taken_at
            event_list = sorted(event_list, key=lambda event: taken_at.get(event[0].fd, 0))
            self.events_left += len(event_list) - self.events_per_turn
            event_list = event_list[:self.events_per_turn]
            for key, _ in event_list:
                taken_at[key.fd] = self.turns_cut
        elif self._taken_at:
            self._taken_at = {}   # the burst is over: every socket is served each turn
        super()._process_events(event_list)

    def _accept_connection(self, protocol_factory, sock, sslcontext=None, server=None,
                           backlog=100, *args, **kwargs):
        return super()._accept_connection(protocol_factory, sock, sslcontext, server,
                                          min(backlog, self.accepts_per_turn), *args, **kwargs)


def serving_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """ServingLoop where asyncio's selector loop has the three methods it changes, else asyncio's
    own loop (a later Python: unbounded turns, as before, rather than a broken server)."""
    base = asyncio.SelectorEventLoop
    if all(callable(getattr(base, name, None))
           for name in ("_run_once", "_process_events", "_accept_connection")):
        return ServingLoop
    return asyncio.new_event_loop


__all__ = ["ServingLoop", "serving_loop_factory"]
