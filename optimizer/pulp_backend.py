"""The allocation model written the way most people write it today: PuLP, solved by CBC.

One variable per (connector, slot) the car is present, one per fairness segment, and an
`lpSum` constraint per (node, slot) and per (node, slot, phase). It is deliberately the obvious
build — Python loops over connectors and slots — so the benchmark measures what the vectorised
backends save, and the tests use it to cross-check them on the same objective
(optimizer/objective.py):

    maximise   sum_{i,k} segment_value[i,k] s[i,k]
               - sum_{i,t} (slot_cost[t] - urgency_value[i,t]) wh_per_w[t] x[i,t]
    subject to sum_t wh_per_w[t] x[i,t] = sum_k s[i,k]                  (energy of session i)
               0 <= s[i,k] <= segment_wh[i],  0 <= x[i,t] <= upper_w[i,t]
               sum_{i under m} x[i,t] <= node_limit_w[m,t]
               sum_{i under m} amps_per_w[i,p] x[i,t] <= node_limit_a[m,t]   (each phase p)
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pulp

from optimizer.objective import Objective, energy_first_by_construction, evaluate
from optimizer.problem import N_PHASES, Problem
from optimizer.schedule import SolverFailed


def build_model(problem: Problem, objective: Objective, upper_w: np.ndarray):
    """The PuLP model and its power variables {(i, t): LpVariable}."""
    model, x, _ = _build(problem, objective, upper_w)
    return model, x


def _build(problem: Problem, objective: Objective, upper_w: np.ndarray):
    """(model, power variables, weighted energy sum_i w_i sum_k s[i, k] as an expression)."""
    model = pulp.LpProblem("smartcharge", pulp.LpMaximize)
    wh_per_w = problem.wh_per_w
    x = {}
    for i in range(problem.n_connectors):
        for t in range(problem.n_slots):
            if upper_w[i, t] > 0:
                x[i, t] = model.add_variable(f"x_{i}_{t}", lowBound=0,
                                             upBound=float(upper_w[i, t]))
    terms, energy_terms = [], []
    for i in range(problem.n_connectors):
        segments = [model.add_variable(f"s_{i}_{k}", lowBound=0,
                                        upBound=float(objective.segment_wh[i]))
                    for k in range(objective.n_segments)]
        energy = [wh_per_w[t] * x[i, t] for t in range(problem.n_slots) if (i, t) in x]
        model += pulp.lpSum(energy) == pulp.lpSum(segments), f"energy_{i}"
        terms += [float(objective.segment_value[i, k]) * s for k, s in enumerate(segments)]
        energy_terms += [float(objective.weight[i]) * s for s in segments]
        terms += [-float((objective.slot_cost[t] - objective.urgency_value[i, t]) * wh_per_w[t])
                  * x[i, t]
                  for t in range(problem.n_slots) if (i, t) in x]
    model += pulp.lpSum(terms)

    node_connector = problem.node_connector
    for m in range(problem.n_nodes):
        members = node_connector.indices[node_connector.indptr[m]:node_connector.indptr[m + 1]]
        for t in range(problem.n_slots):
            present = [i for i in members if (i, t) in x]
            if not present:
                continue
            if np.isfinite(problem.node_limit_w[m, t]):
                model += (pulp.lpSum(x[i, t] for i in present) <= problem.node_limit_w[m, t],
                          f"power_{m}_{t}")
            if np.isfinite(problem.node_limit_a[m, t]):
                for p in range(N_PHASES):
                    loads = [(i, problem.amps_per_w[i, p]) for i in present
                             if problem.amps_per_w[i, p] > 0]
                    if loads:
                        model += (pulp.lpSum(a * x[i, t] for i, a in loads)
                                  <= problem.node_limit_a[m, t], f"current_{m}_{t}_{p}")
    return model, x, pulp.lpSum(energy_terms)


def _run_cbc(model: pulp.LpProblem, time_limit_s: float | None, since: float) -> None:
    """Solve with CBC; raise SolverFailed unless optimal within time_limit_s of `since`."""
    left = None
    if time_limit_s is not None:
        left = time_limit_s - (time.perf_counter() - since)
        if left <= 0:
            raise SolverFailed(f"pulp: over the {time_limit_s} s limit")
    with warnings.catch_warnings():
        # PuLP 3 marks its bundled CBC deprecated; it is still the CBC every PuLP user gets.
        warnings.simplefilter("ignore", DeprecationWarning)
        solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=left)
    try:
        model.solve(solver)
    except pulp.PulpSolverError as exc:
        raise SolverFailed(f"pulp: CBC failed: {exc}") from exc
    status = pulp.LpStatus[model.status]
    if status != "Optimal":
        raise SolverFailed(f"pulp: CBC returned {status}")
    if time_limit_s is not None and time.perf_counter() - since > time_limit_s:
        raise SolverFailed(f"pulp: CBC took {time.perf_counter() - since:.3f} s, "
                           f"over the {time_limit_s} s limit")


def solve_pulp(problem: Problem, objective: Objective, upper_w: np.ndarray,
               time_limit_s: float | None = None) -> tuple[np.ndarray, dict]:
    """Optimum of the LP by CBC through PuLP; power_w (N, T) and an info dict.

    Raises SolverFailed when CBC does not report an optimum or runs past time_limit_s."""
    started = time.perf_counter()
    upper_w = np.asarray(upper_w, dtype=float)
    model, x, energy = _build(problem, objective, upper_w)
    built = time.perf_counter()
    if not energy_first_by_construction(problem):
        # Lexicographic (optimizer/objective.py): the weighted energy alone, then the objective
        # with that energy held. CBC's values come back rounded (a few decimals), so the held
        # energy gets a wider margin than HiGHS's.
        objective_expr = model.objective
        model.setObjective(energy)
        _run_cbc(model, time_limit_s, built)
        best_wh = float(pulp.value(energy))
        model += energy >= best_wh - 1e-7 * abs(best_wh) - 1e-3, "hold_energy"
        model.setObjective(objective_expr)
    _run_cbc(model, time_limit_s, built)
    solved = time.perf_counter()

    power_w = np.zeros((problem.n_connectors, problem.n_slots))
    for (i, t), var in x.items():
        power_w[i, t] = var.varValue or 0.0
    # CBC may overshoot a bound by its tolerance; the variable bounds themselves are exact.
    power_w = np.clip(power_w, 0.0, upper_w)
    return power_w, {
        "build_s": built - started,
        "solve_s": solved - built,
        "objective": evaluate(problem, objective, power_w),
        "status": "optimal",
    }
