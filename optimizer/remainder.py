"""A car's last piece of energy, smaller than one slot at its minimum rate, placed after all.

Why. A slot's power is constant, so a car at its minimum rate takes `min_power_w * slot` Wh in a
slot or nothing. A tapering car whose bound has fallen to its minimum (a 6 A three-phase car:
4 140 W, 1 035 Wh a 15-min slot) can then take whole slots only, and what the LP plans past its
last whole slot sits below the minimum: the projection pauses it and the top-up cannot give it
back (one more slot at the minimum is more than the car's request). Yet a lawful plan often
delivers the whole request: that slot at the minimum, and the difference taken off a slot
where the car runs above its minimum (its taper's first slots). Every plan rounds this way,
the baselines too, each losing other remainders; on the demo day the portfolio guard then
returned a baseline whose remainders happened to be smaller than ours, pausing running cars
that our plan kept (benchmarks/README.md, "s37-pause").

What. `complete_requests`: for each car short of its request by less than one slot at its
minimum, the slot nearest its run (earliest on a tie) where it is at 0, may run at its minimum
and every node limit (power and phase currents) has room for that minimum; the excess over its
request comes off its own entries above its minimum (after the kept slots first, latest first),
never below the minimum. So the car gets exactly its
request, no other car loses anything, and the power taken off is room that the caller's top-up
can hand to others. Only adds weighted energy; every limit and the minimum-rate rule hold.
"""

from __future__ import annotations

import numpy as np

from optimizer.check import node_loads
from optimizer.objective import quantised_weight
from optimizer.problem import Problem
from optimizer.stable import kept_slots

ZERO_W = 1e-6
# the shave is this much (relative) larger than the excess, so float sums never put the car
# above its request (check(tol=0)); a billionth of a Wh at most is given up
MARGIN = 1e-12


def complete_requests(problem: Problem, power_w: np.ndarray) -> tuple[np.ndarray, int]:
    """(power_w with remainders placed, how many cars got theirs); power_w must be lawful."""
    minimum = problem.min_power_w
    wh = problem.wh_per_w
    power_w = np.asarray(power_w, dtype=float)
    short_wh = problem.energy_wh - power_w @ wh
    slot_wh = minimum[:, None] * wh[None, :]                 # (N, T) one slot at the minimum
    largest = slot_wh.max(axis=1) if problem.n_slots else np.zeros(problem.n_connectors)
    above = np.maximum(power_w - minimum[:, None], 0.0) @ wh  # Wh a car could give up
    cars = np.flatnonzero((minimum > 0) & (short_wh > 1e-9 * problem.energy_wh + 1e-6) &
                          (short_wh < largest) & (above > 0.0))
    if cars.size == 0:
        return power_w, 0
    power_w = power_w.copy()
    load_w, load_a = node_loads(problem, power_w)            # (M, T), (M, 3, T)
    limit_w, limit_a = problem.node_limit_w, problem.node_limit_a
    amps = problem.amps_per_w
    upper = problem.upper_w
    # the heavier cars first, then the ones that leave first
    weight = quantised_weight(problem.weight)
    order = cars[np.lexsort((problem.departure_slot[cars], -weight[cars]))]
    kept = kept_slots(problem)
    arrival, departure = problem.arrival_slot, problem.departure_slot
    placed = 0
    for i in order.tolist():
        a, d = int(arrival[i]), int(departure[i])    # the car's window: every other slot is 0
        path = problem.node_paths[problem.connector_node[i]]
        x = power_w[i]
        floor_w = float(minimum[i])
        excess_wh = slot_wh[i, a:d] - short_wh[i]     # to shave if that slot is used
        room = (x[a:d] <= ZERO_W) & (upper[i, a:d] >= floor_w) & (excess_wh > 0)
        if not room.any():
            continue
        room &= (load_w[path, a:d] + floor_w <= limit_w[path, a:d]).all(axis=0)
        draw_a = amps[i] * floor_w
        room &= (load_a[path, :, a:d] + draw_a[None, :, None] <=
                 limit_a[path, None, a:d]).all(axis=(0, 1))
        spare_wh = np.maximum(x - floor_w, 0.0) * wh
        spare_total = float(spare_wh.sum())
        for s in _nearest_first(np.flatnonzero(room) + a, np.flatnonzero(x > ZERO_W)).tolist():
            shave_wh = float(excess_wh[s - a]) * (1.0 + MARGIN)
            if spare_total < shave_wh:
                continue
            taken = _shave(x, spare_wh, wh, shave_wh, floor_w, kept)
            x[s] = floor_w
            for t, d_w in taken + [(s, -floor_w)]:
                load_w[path, t] -= d_w
                load_a[path, :, t] -= d_w * amps[i][None, :]
            placed += 1
            break
    return power_w, placed


def _nearest_first(slots: np.ndarray, running: np.ndarray) -> np.ndarray:
    """`slots` ordered by their distance to the nearest slot the car runs in, earliest first
    on a tie: the remainder's slot joins the car's run (a slot of its own, hours from the rest,
    would stop and start it again)."""
    if slots.size == 0 or running.size == 0:
        return slots
    distance = np.abs(slots[:, None] - running[None, :]).min(axis=1)
    return slots[np.lexsort((slots, distance))]


def _shave(x: np.ndarray, spare_wh: np.ndarray, wh: np.ndarray, shave_wh: float,
           minimum_w: float, kept: int) -> list[tuple[int, float]]:
    """Take shave_wh off x's entries above minimum_w (x changed in place; an entry taken down
    to the minimum is set to it exactly), the slots after the first `kept` latest first, then
    the kept ones latest first (what the stations carry now moves last); [(slot, W taken)]."""
    above = np.flatnonzero(spare_wh > 0.0)[::-1]
    slots = np.concatenate([above[above >= kept], above[above < kept]]).tolist()
    left, taken = shave_wh, []
    for t in slots:
        if left <= 0.0:
            break
        before, spare = float(x[t]), float(spare_wh[t])
        x[t] = minimum_w if spare <= left else max(before - left / wh[t], minimum_w)
        left -= min(spare, left)
        taken.append((t, before - float(x[t])))
    return taken
