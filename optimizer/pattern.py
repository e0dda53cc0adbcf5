"""A baseline the portfolio guard returns keeps the running cars: its on/off pattern re-solved.

Why. When a baseline (EDF, LLF) delivers more weighted energy over the horizon than our rounded
plan, the guard returns it (the result always delivers at least every baseline's weighted
energy), and the baselines know nothing of the previous plan: they pause cars it ran. The
guard's kept windows (optimizer/solve.py `_keep_running`) and the four-entry exchange
(`stable.hold_minimums(paused_too=True)`: one donor of the same weight, one car at a time)
left most of those pauses: on the seeded days they were the largest cause of the pauses of the
cars paused more than once an hour by re-plans (tight day: 20 of 22; benchmarks/README.md,
"s20-pauses").

What. `hold_pattern`: the winner's pattern - each (car, slot) it runs, 0 or at least the car's
minimum - plus, in the kept slots, each car the previous plan ran at its minimum or more that
the winner pauses there. Every entry of the pattern gets the car's minimum as a lower bound and
its maximum as the upper bound, every other entry 0, and the objective (energy first) is solved
over that: an LP, so every chain of exchanges between cars and slots is found at once, where
the exchange moved one donor's power. Entries on the pattern keep the minimum-rate rule by
construction (no rounding afterwards). A held car whose request cannot pay for its minimums
gives up its own latest entries of the winner's pattern (its energy comes now instead). The
result is returned only when it delivers at least the winner's weighted energy, so the guard's
guarantee is untouched; otherwise None (infeasible: the minimums held do not fit under a limit
together with the winner's).
"""

from __future__ import annotations

import numpy as np

from optimizer.lp import HighsModel, build_lp
from optimizer.objective import Objective, energy_first_by_construction
from optimizer.problem import Problem
from optimizer.schedule import SolverFailed
from optimizer.stable import ZERO_W, kept_slots


def held_pattern(problem: Problem, winner_w: np.ndarray) -> np.ndarray | None:
    """(N, T) bool: the winner's entries plus the running cars it pauses in the kept slots
    (as many of their kept slots, first first, as their request pays for at the minimum);
    None when the winner pauses none of them."""
    previous = problem.previous_w
    k = kept_slots(problem)
    if previous is None or k == 0:
        return None
    minimum, upper, wh = problem.min_power_w, problem.upper_w, problem.wh_per_w
    on = np.asarray(winner_w) > ZERO_W
    prev = np.nan_to_num(previous[:, :k], nan=0.0)
    add = (prev > ZERO_W) & (prev >= minimum[:, None] - ZERO_W) & ~on[:, :k] & \
        (upper[:, :k] >= minimum[:, None]) & (minimum[:, None] > 0)
    if not add.any():
        return None
    pattern = on.copy()
    for i in np.flatnonzero(add.any(axis=1)):
        budget = problem.energy_wh[i]
        slots = [t for t in range(k) if add[i, t]]
        # its minimums now first: then as many of its winner's entries, earliest first, as
        # its request still pays for at the minimum (the later ones go: its energy comes now)
        kept_now = []
        for t in slots:
            cost = minimum[i] * wh[t]
            if cost > budget * (1.0 - 1e-9):
                break
            kept_now.append(t)
            budget -= cost
        if not kept_now:
            continue
        pattern[i, kept_now] = True
        for t in np.flatnonzero(on[i]):
            cost = minimum[i] * wh[t]
            if cost > budget * (1.0 - 1e-9):
                pattern[i, t] = False
            else:
                budget -= cost
    return pattern if (pattern & ~on).any() else None


def hold_pattern(problem: Problem, objective: Objective, winner_w: np.ndarray,
                 winner_wh: float, weighted_wh, time_limit_s: float | None = None
                 ) -> np.ndarray | None:
    """(N, T) power on `held_pattern(problem, winner_w)`, each entry in [minimum, maximum],
    the objective's optimum there, when it delivers at least `winner_wh` weighted energy
    (`weighted_wh(problem, power_w)`); None otherwise. Not projected: the caller projects and
    checks (the solver's output may sit a hair above a limit)."""
    pattern = held_pattern(problem, winner_w)
    if pattern is None:
        return None
    arrays = build_lp(problem, objective, np.where(pattern, problem.upper_w, 0.0))
    if arrays.c.shape[0] == 0:
        return None
    model = HighsModel(arrays, energy_first=not energy_first_by_construction(problem))
    connector, slot = np.nonzero(pattern & (problem.min_power_w[:, None] > 0))
    model.raise_lower(connector, slot, problem.min_power_w[connector])
    try:
        power_w, _ = model.solve(time_limit_s)
    except SolverFailed:   # the minimums held do not fit together, or out of time
        return None
    power_w = np.where(pattern, np.clip(power_w, 0.0, None), 0.0)
    if weighted_wh(problem, power_w) < winner_wh * (1.0 - 1e-9):
        return None
    return power_w
