"""The timing tie-break: the objective's fourth and last level (optimizer/objective.py).

Offline, every plan that delivers the most energy at the least price, fairest, is as good as
another, but online it is not: a plan that defers an urgent car's energy behind a patient car's
lets it collide with cars that have not arrived yet (replayed online, `solve` delivered up to
6.7 kWh less than least-laxity-first on seeded days; tests/test_optimizer_urgency.py). So, among
plans tied on every other level, the objective prefers the one that charges early, and the cars
that leave first earliest.

Rewards. Sessions are ranked by deadline (departure slot, earliest first; equal deadlines by
index) into rho_i in [0, 1] (1 = the earliest). One Wh delivered to session i in slot t earns
the integer reward

    u[i, t] = round(U * (1 + rho_i) / 2 * (1 - start_t / horizon))      in 0..U

in units of 1 / (2 K Q) VU, Q = U * S + 1 (`urgency(problem)[1]`). Earlier is better for every
car (the plain earliness that used to sit in the cost level), and moving a Wh of a car that
leaves later to let one that leaves sooner charge earlier gains (rho_sooner - rho_later) *
(t2 - t1) / T. Plain earliness had to leave the cost level: there it forbade exactly that
exchange whenever it let the fleet's last Wh finish a slot later (seed 14 of the replay test: a
car with 3 h of slack charged at full power while one with 50 min waited).

Deadline, not laxity. Ranked by laxity (window minus the time the request takes at full power)
the replay was a little worse (summed shortfall against least-laxity-first over 48 seeded days
0.77 kWh, by deadline 0.47 kWh, by deadline then index 0.32 kWh), and worse for the cars: an
idle car's laxity falls while a charging one's stays, so two alike cars swap ranks at every
re-plan and the plan pauses one and resumes the other again and again. A deadline does not move,
and ranking equal deadlines by index keeps the solver from picking a different one of alike cars
at each re-plan (tests/test_site_e2e.py's zero-notice cap drop failed 1 run in 3-6 while the
stations switched cars; 12 of 12 passed with the index rank; with deadlines less than 10 min
apart tied instead, 3 of 10 failed). The price: of alike cars the first by index is served
first, so a plan can equal the stations' fail-safe shares and send no TxProfile
(tests/test_dispatch_trust.py waits on the installed limits for that), and under 15 kW two
11 kW cars run at 11 + 0 kW, the 4 kW left being under the second car's minimum (the earlier
objective did the same whenever its portfolio guard returned EDF; sharing that room was tried
and not kept, see benchmarks/README.md).

Why it never trades anything above it (energy, price, fairness). In units of 1 / (2 K) VU every
other coefficient is an integer (objective.py), so a change of plan that changes any of them
changes the objective by at least 1 / (2 K) VU per Wh moved: an elementary change (a simple cycle
or path of the flow network source -> session -> (node, slot) layers -> sink) has a cost that is
an integer combination of them. Its reward part is smaller: a simple cycle visits each session at
most once, each visit adds at most U units (the difference of two rewards in 0..U), and a
session's neighbours in the network are the source and (node, slot) layers only, so a simple
cycle visits at most S = min(N, L + 2) sessions, L the number of (node, slot) pairs that can carry
a limit (the root in every slot, every finite node limit). So the reward part is at most
U * S / (2 K Q) < 1 / (2 K) VU per Wh: it decides only among plans tied on every other level.
Where per-phase limits couple 1- and 3-phase loads the model is not a flow; there the LP backends
hold the weighted energy at its optimum lexicographically anyway (optimizer/lp.py), so energy
stays exact.

Size. Q multiplies the min-cost flow's integer costs (the flow unit grows with the largest cost,
and cost scaling runs more phases), and breaking every tie costs simplex iterations (HiGHS, N =
100: 348 -> 950 on the power family). So Q <= MAX_SCALE, U = (MAX_SCALE - 1) // S, and below
MIN_LEVELS levels (S > 255: sites with hundreds of sessions or limited nodes) the level is off:
the objective is then exactly the earlier three-level one, with plain earliness in the cost
(measured in benchmarks/README.md).
"""

from __future__ import annotations

import numpy as np

from optimizer.problem import Problem

MAX_SCALE = 4096
MIN_LEVELS = 16


def deadline_rank(problem: Problem) -> np.ndarray:
    """(N,) rank of each session's deadline, earliest 0; equal deadlines by index, so the tie is
    not left to the solver (which picked a different one of alike cars at each re-plan)."""
    n = problem.n_connectors
    deadline = np.where(problem.energy_wh > 0, problem.departure_slot.astype(float), np.inf)
    rank = np.empty(n)
    rank[np.lexsort((np.arange(n), deadline))] = np.arange(n)
    return rank


def max_sessions_on_a_cycle(problem: Problem) -> int:
    """S: at most this many sessions lie on a simple cycle of the allocation's flow network."""
    limited = np.isfinite(problem.node_limit_w[1:]) | np.isfinite(problem.node_limit_a[1:])
    layers = problem.n_slots + int(limited.sum())
    return max(1, min(problem.n_connectors, layers + 2))


def urgency(problem: Problem) -> tuple[np.ndarray, int]:
    """((N, T) integer rewards u in 0..U, scale Q): see the module docstring."""
    n, t = problem.n_connectors, problem.n_slots
    levels = (MAX_SCALE - 1) // max_sessions_on_a_cycle(problem)
    if levels < MIN_LEVELS or n == 0:
        return np.zeros((n, t)), 1
    rank = deadline_rank(problem)
    rho = 1.0 - rank / max(float(rank.max()), 1.0)
    start_s = np.cumsum(problem.slot_s) - problem.slot_s
    later = 1.0 - start_s / float(problem.slot_s.sum())
    reward = np.rint(levels * (1.0 + rho[:, None]) / 2.0 * later[None, :])
    return reward, levels * max_sessions_on_a_cycle(problem) + 1
