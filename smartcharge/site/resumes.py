"""Which sessions the plans run, and when a plan last paused each: a car the plan before ran
and this one gives nothing now.

A tapering car whose battery takes less than its minimum is worth less per W than a car that
takes every W (`planner.taper_worth`): the plan pauses it while the site is short and resumes it
when there is room to spare. On a day whose room came and went that was a pause at every short
spell (the tight day, truthful: one car paused by its worth at 07:40 and at 09:15, beside the
portfolio guard's pauses: more than once an hour, benchmarks/README.md "s38-gap"). A car a plan
paused and a later plan runs again is therefore planned at its full worth until an hour after the
pause (`held`): its worth pauses it at most once in that while. Held from its resume alone, it
was paused again all the same: the plan that resumed it had already planned the next pause at
its worth, and the plans after, finding the two choices equal at full worth, kept the plan
before (so the planner also prefers it running: `planner.keep_running`;
tests/test_site_taper_worth_hold.py). Held from the pause while still paused, it lost its worth
while it waited, the worth's gain (the workplace day, truthful: 3 kWh, s39-gap).

Pure: each plan carries the record (`Plan.extra["runs"]`) and the next one reads it from the
plan before; no clock, no state of its own. A restart starts with none (no hold).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

RUNS_KEY = "runs"   # Plan.extra's key


@dataclass(frozen=True, slots=True)
class Run:
    transaction_id: int
    on: bool                          # the plan gave it power in its first slot
    paused_at: datetime | None        # the last plan that gave it none after one that ran it


def runs_after(previous: Mapping, refs: Sequence, transaction_ids: Sequence[int],
               on_now: Sequence[bool], now: datetime) -> dict:
    """The record after a plan made at `now` that gives the sessions (`refs`, in its row order)
    power in its first slot where `on_now`; `previous` is the plan before's record."""
    out = {}
    for ref, transaction_id, on in zip(refs, transaction_ids, on_now):
        before = previous.get(ref)
        if before is None or before.transaction_id != transaction_id:
            out[ref] = Run(transaction_id, on, None)
        elif before.on == on:
            out[ref] = before        # unchanged: the same object (5 000 sessions a re-plan)
        else:
            out[ref] = Run(transaction_id, on, before.paused_at if on else now)
    return out


def held(run: Run | None, transaction_id: int, now: datetime, hold_s: float) -> bool:
    """Running (in the plan before) and paused by a plan less than `hold_s` ago: resumed since.
    A car still paused is not held - at its worth it waits while the site is short, which is
    the worth's gain (held from any pause, the workplace day's truthful run lost 3 kWh)."""
    return (run is not None and run.transaction_id == transaction_id and run.on
            and run.paused_at is not None
            and (now - run.paused_at).total_seconds() < hold_s)
