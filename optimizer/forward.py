"""Room that rounding leaves now goes to cars whose energy is planned later (`pull_forward`).

Why. Minimum-rate rounding pauses an LP entry below its car's minimum (a 22 kW bay whose
phases are not known yet has a 12.4 kW minimum) and the top-up hands the freed room to cars
that still want energy. But when the site is short now and not later, every car's need is
already planned, only in later slots: the top-up finds nobody who wants more, and the room
stays unused now while cars wait for their turn. On the demo day with truthful drivers the
rounded plans offered 25 kWh less in their first slot than the LP over the minutes the limit
bound, the guard's kept windows 7 kWh more (benchmarks/README.md, "s19-pauses").

What. In each of the first `slots` slots, in order, cars take what the limits leave there,
paid for by their own energy planned in later slots that are no cheaper (`slot_cost`, the
objective's price level: energy never moves into a dearer slot), taken from the latest slots
first. A car running in the slot may take any amount more; a paused one at least its minimum
(running cars first, then earliest deadline within weight: the top-up's order). A later
entry keeps its minimum or goes to 0; where only whole entries are left to take, the excess
taken goes back by the top-up. So each car's energy, the weighted energy, price and fairness
are those of the plan given (the caller checks the weighted energy); only when energy arrives
changes - earlier, as the objective's urgency level prefers - and the closed loop, which plans
again within minutes, gets the power now rather than a promise.
"""

from __future__ import annotations

import numpy as np

from optimizer import baselines
from optimizer.problem import Problem

ZERO_W = 1e-6
_REL = 1e-12   # a hair under what the later slots hold: never move more than is there
# a later entry left with less than this share of itself (the limits' and _REL's margins) is
# taken whole: the car loses a few millionths of a Wh rather than keeping a remainder below its
# minimum (or the slot's energy would grow over its request)
_DUST = 1e-6


def pull_forward(problem: Problem, power_w: np.ndarray, slot_cost: np.ndarray,
                 slots: int = 1) -> np.ndarray:
    """(N, T) power_w with the first `slots` slots filled from each car's later energy (see the
    module docstring). Lawful when power_w is: only adds where `baselines.serve_more`
    finds room and only lowers later entries (to their minimum or to 0)."""
    power = np.array(power_w, dtype=float)
    n_slots = problem.n_slots
    if problem.n_connectors == 0 or n_slots < 2:
        return power
    wh = problem.wh_per_w
    minimum = problem.min_power_w
    over_taken = False
    for t in range(min(slots, n_slots - 1)):
        source = slot_cost[t + 1:] >= slot_cost[t]     # no cheaper than the slot it fills
        if not source.any():
            continue
        later_wh = power[:, t + 1:][:, source] @ wh[t + 1:][source]
        current = power[:, t]
        extra = baselines.serve_more(problem, t, current, later_wh / wh[t] * (1.0 - _REL),
                                     running_first_order(problem, current), zero_w=ZERO_W)
        if extra is None:
            continue
        for i in np.flatnonzero(extra > ZERO_W):
            power[i, t] += extra[i]
            over_taken |= _take_latest(power[i], wh, t, extra[i] * wh[t], minimum[i], source)
    if over_taken:
        power = baselines.top_up(problem, power)
    return power


def running_first_order(problem: Problem, current: np.ndarray) -> np.ndarray:
    """The top-up's priority order (weight, then deadline, the previous plan's cars first on a
    tie) with the cars running in this slot ahead of the paused ones within a weight."""
    key = baselines._deadline_key(problem) + np.where(current > ZERO_W, 0.0,
                                                      problem.n_slots + 1.0)
    return baselines._priority_order(problem, key)


def _take_latest(row: np.ndarray, wh: np.ndarray, t: int, take_wh: float, minimum: float,
                 source: np.ndarray) -> bool:
    """Remove take_wh from row's source slots after t, latest first, leaving each entry at its
    minimum or more, or 0. True when whole entries had to go beyond take_wh (the caller tops
    up: that energy is lost otherwise)."""
    slots = (t + 1 + np.flatnonzero(source))[::-1]
    left = take_wh
    for s in slots:                      # first pass: down to the minimum, never below
        if left <= 0.0:
            return False
        x = row[s]
        if x <= ZERO_W:
            continue
        cut = min(x, left / wh[s])
        if x - cut <= _DUST * x:         # what the margins left of a whole entry: take it all
            cut = x
        elif x - cut < minimum - ZERO_W:
            cut = x - minimum
            if cut <= 0.0:
                continue
        row[s] = x - cut if cut < x else 0.0
        left -= cut * wh[s]
    if left <= 1e-9 * max(take_wh, 1.0):
        return False
    for s in slots:                      # entries at their minimum: whole ones go
        x = row[s]
        if x <= ZERO_W:
            continue
        row[s] = 0.0
        left -= x * wh[s]
        if left <= 0.0:
            break
    return True
