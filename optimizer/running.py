"""A running car keeps its minimum in the kept slots: the urgency tie-break gives way to it.

Why. With a previous allocation the stable pass (optimizer/stable.py) keeps the previous plan
among the optima of all four levels of the objective. The fourth, urgency, ranks every car by
deadline and rewards charging early, so it is rarely tied: when a car with an earlier deadline
arrives, or the meters move a little, the new optimum gives the first slot's room to the more
urgent car and pauses one that was charging, whose energy simply comes a slot later. On the
seeded days that was the largest cause of the pauses a re-plan made (demo day, truthful: 89 of
166, 16 of the 27 pauses of the cars paused more than once an hour; benchmarks/README.md,
"Stable allocations, fifth round").

What. Before the stable pass, each car the previous plan ran at its minimum or more in a kept
slot, that the LP's plan now leaves below its minimum there, gets its minimum as a lower bound
in that slot (`running_minimums`: only as many of its kept slots as its own planned energy pays
for, and only as many cars as every node limit, power and phase currents, can carry at their
minimums together), and the objective is solved again (warm). The held plan is kept only when
the three levels above urgency are unchanged (`keeps_levels`: weighted energy, price, fairness
within the solver's tolerance) and, rounded to the minimum rates, it delivers no less weighted
energy than the free optimum over the horizon or in the kept slots (`solve._hold_running`);
otherwise the bounds go and the optimum is solved again. So
energy, price and fairness stay exact; only the urgency tie-break is traded, in the kept slots
(30 minutes, planned again before they end), for a car not paused now. Sites planned by the
min-cost flow (above STABLE_FLOW_CONNECTORS sessions) do not have it.
"""

from __future__ import annotations

import numpy as np

from optimizer.check import delivered_wh
from optimizer.lp import energy_tolerance
from optimizer.objective import levels  # noqa: F401 (solve's levels; one copy: objective)
from optimizer.problem import Problem
from optimizer.stable import ZERO_W, kept_slots

LEVEL_RTOL = 1e-7  # price and fairness: the solver's tolerance, far below one Wh moved


def running_minimums(problem: Problem, power_w: np.ndarray, column_upper_w: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(connector, slot) of the entries to hold at their connector's minimum: the previous plan
    ran the car at its minimum or more there (a kept slot); none unless `power_w` leaves one
    of them below its minimum. Per car
    the first such slots whose minimum its planned energy covers (the hold moves its energy,
    never adds to it); per slot the cars, earliest deadline first, whose minimums fit under
    every node limit (power and phase currents) together. `column_upper_w` (N, T): the LP
    columns' upper bounds (a node limit may hold a column below the connector's maximum)."""
    previous = problem.previous_w
    empty = np.zeros(0, dtype=np.int64)
    if previous is None:
        return empty, empty
    k = kept_slots(problem)
    if k == 0:
        return empty, empty
    minimum = problem.min_power_w
    prev = np.nan_to_num(previous[:, :k], nan=0.0)
    x = np.asarray(power_w, dtype=float)[:, :k]
    floor = minimum[:, None]
    want = (floor > 0) & (prev > ZERO_W) & (prev >= floor - ZERO_W) & \
        (np.asarray(column_upper_w)[:, :k] >= floor) & (problem.upper_w[:, :k] >= floor)
    if not (want & (x < floor - ZERO_W)).any():
        return empty, empty
    # every such entry is held, also those the LP has at their minimum or more: the re-solve
    # would otherwise move the room from one running entry to another
    # the car's own energy pays: its delivered total must not grow
    budget = delivered_wh(problem, power_w)
    for i in np.flatnonzero(want.any(axis=1)):
        left = budget[i]
        for t in range(k):
            if not want[i, t]:
                continue
            cost = minimum[i] * problem.wh_per_w[t]
            if cost > left * (1.0 - 1e-9):
                want[i, t:] = False
                break
            left -= cost
    # the minimums held in one slot must fit under every limit by themselves (the others
    # can go to 0), or the LP with them has no solution. Not `baselines.serve_in_order`,
    # though it also serves cars in order under the limits: it cuts node depth by node depth
    # (a car a higher node pauses keeps the room it took below, which the cars after it there
    # miss) and keeps a margin under every limit (a minimum that exactly fills a limit would
    # not be held); here each car is checked on its whole path at once, up to the limit.
    # (each connector's path: the nodes above it, read once - a sparse column per car and
    # slot cost ~50 us)
    # On Python floats, car by car (numpy calls on 3-node paths cost 8 us a car: 16 ms of a
    # 1 000-car re-plan, benchmarks/README.md, s33-warm): the same sums and comparisons.
    node_conn = problem.node_connector.tocsc()
    paths = [node_conn.indices[node_conn.indptr[i]:node_conn.indptr[i + 1]].tolist()
             for i in range(problem.n_connectors)]
    amps = problem.amps_per_w.tolist()
    minimums = minimum.tolist()
    order = np.argsort(problem.departure_slot, kind="stable")
    for t in range(k):
        cars = order[want[order, t]].tolist()
        if not cars:
            continue
        limit_w = problem.node_limit_w[:, t].tolist()
        limit_a = problem.node_limit_a[:, t].tolist()
        load_w = [0.0] * problem.n_nodes
        load_a = [[0.0, 0.0, 0.0] for _ in range(problem.n_nodes)]
        for i in cars:
            nodes, floor_w = paths[i], minimums[i]
            draw_a = [a * floor_w for a in amps[i]]
            w = [load_w[m] + floor_w for m in nodes]
            a = [[load_a[m][p] + draw_a[p] for p in range(3)] for m in nodes]
            if any(w_m > limit_w[m] + ZERO_W for w_m, m in zip(w, nodes)) or \
                    any(a_mp > limit_a[m] + 1e-9 for a_m, m in zip(a, nodes) for a_mp in a_m):
                want[i, t] = False
                continue
            for m, w_m, a_m in zip(nodes, w, a):
                load_w[m], load_a[m] = w_m, a_m
    connector, slot = np.nonzero(want)
    return connector.astype(np.int64), slot.astype(np.int64)


def keeps_levels(before: tuple[float, float, float], after: tuple[float, float, float]) -> bool:
    """Whether `after` is as good as `before` on weighted energy, price and fairness (up to the
    solver's tolerance; the held-energy row itself may sit `energy_tolerance` below)."""
    wb, cb, fb = before
    wa, ca, fa = after
    return (wa >= wb - 2.0 * energy_tolerance(wb)
            and ca <= cb + LEVEL_RTOL * max(abs(cb), abs(wb)) + 1e-6
            and fa >= fb - LEVEL_RTOL * abs(fb) - 1e-6)
