"""A car offered its minimum rate while it takes less gives way to cars that would take more
(`give_way`).

Why. Under its minimum (6 A) a station pauses a car, so a car whose battery accepts less than its
minimum (deep in taper, or a car that limits itself) can only be offered that minimum or
nothing. Offered the minimum, the difference stands unused; where other cars will not get their
need by their departures, they could have drawn it. The plan cannot see this by itself: its row
for such a car is capped at the minimum (the least it can be offered), so every watt offered
counts as energy delivered. The benchmark's truthful runs left 2.4-9.8 kWh a day unused that way
while the site was short (benchmarks/README.md, "s23-quality").

What. The caller says per row and slot what the car will draw at most (`takes_w`: its learned
taper, its closed-loop cap; inf where nothing is known). In the first `slots` slots every entry
at the car's minimum or more whose car takes less than its minimum is set to 0, and the room goes
to the other cars that still want energy over the horizon (the top-up's step and order, each car
at most its remaining need; a paused one at least its minimum). Kept only when the cars then
draw more energy over the horizon, counted at what each takes (weighted, each capped at its
need), than with the plan given: where every other car gets its need anyway the paused car would
only lose, and the plan stays as it was. Only lowers the given entries to 0 and adds where
`baselines.serve_more` finds room: lawful when the plan given is.
"""

from __future__ import annotations

import numpy as np

from optimizer import baselines
from optimizer.check import feasible
from optimizer.problem import Problem

ZERO_W = 1e-6
MIN_GAIN_WH = 1.0     # less gain than this (a register's resolution) pauses nobody


def give_way(problem: Problem, power_w: np.ndarray, takes_w: np.ndarray,
             slots: int = 1) -> np.ndarray:
    """(N, T) power_w with the entries of cars that take less than their minimum in the first
    `slots` slots handed to cars that take more, when that delivers more (module docstring)."""
    power = np.asarray(power_w, dtype=float)
    n, t_all = power.shape
    slots = min(slots, t_all)
    if n == 0 or slots < 1:
        return power
    minimum = problem.min_power_w[:, None]
    head, takes = power[:, :slots], takes_w[:, :slots]
    paused = (head > ZERO_W) & (head >= minimum - ZERO_W) & (takes < minimum - ZERO_W) \
        & (takes < head)
    if not paused.any():
        return power
    trial = power.copy()
    trial[:, :slots][paused] = 0.0
    wh = problem.wh_per_w
    order = baselines._priority_order(problem, baselines._deadline_key(problem))
    tree = baselines._tree(problem)
    remaining = np.maximum(problem.energy_wh - trial @ wh, 0.0)
    for t in range(slots):
        can_take = np.where(paused[:, t], 0.0, remaining / wh[t] * (1.0 - 1e-12))
        extra = baselines.serve_more(problem, t, trial[:, t], can_take, order, tree)
        if extra is None:
            continue
        trial[:, t] += extra
        remaining = np.maximum(remaining - extra * wh[t], 0.0)
    if drawn_wh(problem, trial, takes_w) < drawn_wh(problem, power, takes_w) + MIN_GAIN_WH:
        return power
    return trial if feasible(problem, trial) else power


def drawn_wh(problem: Problem, power_w: np.ndarray, takes_w: np.ndarray) -> float:
    """Weighted energy the cars draw over the horizon: each entry at most what the car takes,
    each car at most its need."""
    drawn = np.minimum(power_w, takes_w) @ problem.wh_per_w
    return float(np.dot(problem.weight, np.minimum(drawn, problem.energy_wh)))
