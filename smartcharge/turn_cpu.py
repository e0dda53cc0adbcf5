"""How much of the loop thread's CPU the current turn of the event loop has spent so far, for the
budgets that let work into a turn (s36-stall, issue 10: "the event loop is never blocked for
more than 20 ms").

Why: the budgets count pieces - 32 inbound frames (`turns.TurnBudget`), 4 ms of CPU per lane of
the site's share (`turn_share.TurnShare`) - and a turn is their sum with the reads, the timers
and a young collection beside them: 22-36 ms at 5 000 stations under load (s35-stall), when
each budget alone was within its bound. A budget that also asks this clock takes no new work
once the whole turn, whatever spent it, has used its bound.

What a turn is: one `_run_once` of the serving loop (`serving_loop.ServingLoop`, which stamps
the loop thread's CPU as it begins: the young collection at its edge, the poll, every callback
since). On any other loop (asyncio's own, uvloop, the tests' loops) there is no such stamp and
`turn_spent_s` returns None: the budgets count pieces only, as before.
"""

from __future__ import annotations

import asyncio

# the turn's CPU past which the site's lanes and the inbound frames take no new work (but their
# floors: the first step of each lane, the first MIN_PER_TURN frames): half the 20 ms goal - the
# other half for the ready sockets read after them in the same turn (up to 256, 20-40 us each),
# the due timers and the step that crosses it
TURN_CPU_S = 0.010


def turn_spent_s() -> float | None:
    """The CPU the running loop's current turn has spent so far, or None (not a serving loop,
    or no loop running)."""
    loop = asyncio._get_running_loop()
    spent = getattr(loop, "turn_spent_s", None)
    return None if spent is None else spent()


def turn_number() -> int | None:
    """Which turn of the running serving loop this is (a new number each turn), or None."""
    return getattr(asyncio._get_running_loop(), "turn_number", None)


__all__ = ["TURN_CPU_S", "turn_number", "turn_spent_s"]
