"""Exact min-cost network flow backend, for problems whose limits form a flow network.

With power limits on a tree, the allocation model (optimizer/objective.py) is a min-cost flow of
energy over (tree node, slot) pairs:

    source --K segment arcs, capacity segment_wh[i], cost -segment_value[i, k]--> session i
    session i --capacity upper_w[i, t] * wh_per_w[t], cost -u[i, t] (urgency)--> (node of i, t)
    (node, t) --capacity node_limit_w[node, t] * wh_per_w[t]--> (parent, t) ... (root, t)
    (root, t) --capacity root limit, cost slot_cost[t]--> sink
    source --bypass, cost 0--> sink                (energy not delivered)

The source supplies every requested Wh; what the bypass carries is the shortfall, so the solver
chooses how much to deliver. Maximising the objective is minimising this flow's cost.

Exact integers. Costs are small integers with the same optimal flows as the objective's
coefficients times 2 K (`flow_costs`: slot costs replaced by their ranks, A by the smallest A'
that keeps the priority order; cost scaling runs fewer phases: 0.95 s -> 0.56 s at N = 10 000). Flow is counted in a unit of 10^-j Wh, the finest (j <= 9) for which the total cost
still fits in int64 with room to spare (1 mWh for the largest sites, far finer for small ones),
and every capacity is rounded *down* to a whole unit, so the result never exceeds a limit; it may
deliver up to one unit per arc less than the real optimum. No arc can carry more than the whole
supply (every requested Wh), so capacities are capped at it before they become integers: a huge
finite maximum or limit (1e11 W, 1e300 W) is then exact instead of overflowing int64; requests
too large for whole Wh raise SolverFailed (never a silent 0).

Per-phase current limits are a flow only where they reduce to a power limit on the same node:
when every connector under the node puts the same current per watt on each phase (e.g. all
3-phase at one voltage, or all single-phase on one phase at one voltage), or when the limit can
never bind (even every connector at its maximum stays under it). `applicable(problem)` says so.

Graph size. A (node, slot) layer exists only where the node's limit can bind in that slot (its
subtree's maxima add up to more than the limit) and at the root; a connector feeds the nearest
ancestor layer that exists, so unlimited stations and idle feeders cost nothing.
"""

from __future__ import annotations

import time

import numpy as np
from ortools.graph.python import min_cost_flow

from optimizer.objective import (Objective, evaluate, power_equivalent_limit_w,
                                 quantised_weight)
from optimizer.problem import Problem
from optimizer.schedule import SolverFailed

FINEST_UNITS_PER_WH = 10**9
COST_BUDGET = 2**60  # |total cost| stays below this (int64 holds 2^63)
SOURCE, SINK, FIRST_SESSION = 0, 1, 2


def applicable(problem: Problem) -> bool:
    """True when the min-cost flow is exact for this problem (see the module docstring)."""
    return power_equivalent_limit_w(problem, problem.upper_w) is not None


def _depth(node_parent: np.ndarray) -> np.ndarray:
    depth = np.zeros(node_parent.shape[0], dtype=np.int64)
    current = np.arange(node_parent.shape[0])
    while True:
        up = node_parent[current] >= 0
        if not up.any():
            return depth
        depth += up
        current = np.where(up, node_parent[current], current)


def _layers(problem: Problem, limit_w: np.ndarray, upper_w: np.ndarray):
    """Which (node, slot) layers exist, and the nearest existing layer at or above every node.

    Returns (kept (M, T) bool, nearest (M, T) node index)."""
    subtree_max_w = problem.node_connector @ upper_w  # (M, T)
    kept = np.isfinite(limit_w) & (subtree_max_w > limit_w)
    kept[0] = True
    m = problem.n_nodes
    parent = problem.node_parent
    nearest = np.where(kept, np.arange(m)[:, None], 0)
    depth = _depth(parent)
    for level in range(1, int(depth.max()) + 1 if m > 1 else 1):
        nodes = np.flatnonzero(depth == level)
        nearest[nodes] = np.where(kept[nodes], nodes[:, None], nearest[parent[nodes]])
    return kept, nearest


def units_per_wh(total_wh: float, max_abs_cost: float) -> int:
    """The finest power-of-ten flow unit per Wh with total_wh * units * max_abs_cost in budget."""
    room = COST_BUDGET / max(total_wh * max_abs_cost, 1.0)
    if room < 1.0:
        raise SolverFailed(f"flow: {total_wh:.3g} Wh at costs up to {max_abs_cost:.3g} overflow "
                           "int64 even in whole Wh")
    return int(min(10 ** int(np.floor(np.log10(room))), FINEST_UNITS_PER_WH))


def _floor_units(wh: np.ndarray, units: int, most: int | None = None) -> np.ndarray:
    """wh in whole flow units, rounded down; capped at `most` units when given.

    No arc can carry more than the whole supply, so a capacity above it is the same as the
    supply: capping (in floating point, before the cast) keeps a huge finite limit or maximum
    (1e11 W, a root limit of 4e10 W) from overflowing int64 into a negative capacity, and the
    flow stays exact."""
    with np.errstate(over="ignore"):  # 1e300 W * units is inf, then capped at `most`
        scaled = np.asarray(wh, dtype=float) * units
    # A slack of a few ulps keeps exact values (2750.0 Wh * 1000) from flooring one unit low.
    scaled = np.floor(scaled + np.abs(scaled) * 1e-15)
    if most is not None:
        scaled = np.minimum(scaled, float(most))
    if not (np.abs(scaled) < 2.0**62).all():  # unreachable with `most`; never a silent wrap
        raise SolverFailed("flow: a capacity overflows int64")
    return scaled.astype(np.int64)


def flow_costs(problem: Problem, objective: Objective) -> tuple[np.ndarray, np.ndarray]:
    """Integer arc costs with the same optimal flows as the objective's, but far smaller.

    Returns (segment arc costs (N, K), root arc costs (T,)), both int64, in units of
    1 / (2 K Q) VU (Q = objective.urgency_scale, 1 when the urgency tie-break is off).
    Cost scaling takes a number of phases that grows with log(largest |cost|), and with prices
    the objective's coefficients reach ~3e6 (slot_cost up to 1000 * T, A above twice that).

    Every simple cycle of the residual network costs one of (v = segment value, c = slot cost)
        -v[i,k] + c[b]      (deliver more: source, session i, slot b, sink, back by the bypass)
        +v[j,l] - c[a]      (deliver less), or
        -v[i,k] + v[j,l] + c[b] - c[a],   -v[i,k] + v[j,l],   c[b] - c[a]   (exchanges),
    since a simple cycle passes the source and the sink at most once, and tree arcs cost 0.
    A flow is optimal iff no residual cycle costs < 0, so any costs that give every cycle the
    same sign give the same optimal flows. Replacing c by its rank among the distinct slot costs
    (c'[t] in 0..R-1) keeps the sign of every c[b] - c[a], and the fairness terms f_k are kept,
    so with v' = A' w + f the signs agree when
        A' * w_min > R             (delivering more still always pays: -v' + c' < 0), and
        A' * gain  > R             (a weight difference still outweighs any cost difference
                                    plus fairness, gain = smallest non-zero weight difference),
    exactly what objective.py ensures for A with the real costs (rate 1: a flow has only power
    limits). Weights are whole hundredths (quantised_weight), so A' is taken a multiple of 100
    and every cost is an exact integer. Without prices R = T and A' is a few hundred.
    """
    k = objective.n_segments
    scale = 2 * k
    distinct, rank = np.unique(objective.slot_cost, return_inverse=True)
    spread = int(distinct.size)  # R: c' in 0..R-1, so |c'[b] - c'[a]| + 1 <= R
    hundredths = np.rint(quantised_weight(problem.weight) * 100.0).astype(np.int64)  # w * 100
    levels = np.unique(hundredths)
    gain = int(np.diff(levels).min()) if levels.size > 1 else None
    w_min = int(levels[0]) if levels.size else 100  # no sessions: any A' will do
    need = spread * 100 // w_min + 1  # A' * w_min > R, with w_min = levels[0] / 100
    if gain is not None:
        need = max(need, spread * 100 // gain + 1)  # A' * gain / 100 > R
    a_hundredths = need // 100 + 1  # A' = 100 * a_hundredths > need
    # v' * 2K = A' * w * 2K + f_k * 2K = a_hundredths * hundredths * 2K + (K - 1 - k).
    fair = (k - 1 - np.arange(k)).astype(np.int64)
    seg_cost = -(a_hundredths * hundredths[:, None] * scale + fair[None, :])
    root_cost = rank.astype(np.int64).ravel() * scale
    # The urgency tie-break (optimizer/urgency.py) sits below all of these: every cost above is
    # multiplied by Q, and the connector arcs carry -u[i, t] in 0..U with U * S < Q.
    q = int(objective.urgency_scale)
    return seg_cost * q, root_cost * q


def build_graph(problem: Problem, objective: Objective, upper_w: np.ndarray):
    """The flow network as arrays: (tails, heads, capacities, costs, supply, connector_arcs, units).

    connector_arcs is (first arc index, connector index, slot index) of the session->layer arcs
    (with a previous allocation, a (connector, slot) may have two: `stable_level`); capacities
    and supply are in flow units, `units` of them per Wh."""
    limit_w = power_equivalent_limit_w(problem, upper_w)
    if limit_w is None:
        raise SolverFailed("flow: a per-phase current limit couples 1- and 3-phase loads; "
                           "it is not a network flow (use the LP)")
    n, t, k = problem.n_connectors, problem.n_slots, objective.n_segments
    wh_per_w = problem.wh_per_w

    # Layer node ids.
    kept_layers, nearest = _layers(problem, limit_w, upper_w)
    layer_id = np.full((problem.n_nodes, t), -1, dtype=np.int64)
    n_layers = int(kept_layers.sum())
    layer_id[kept_layers] = FIRST_SESSION + n + np.arange(n_layers)
    slots = np.arange(t)

    # Segment arcs: source -> session; root arcs carry the slot costs (see `flow_costs`).
    seg_cost, root_cost = flow_costs(problem, objective)
    seg_cost = seg_cost.ravel()
    max_abs_cost = float(max(np.abs(seg_cost).max(initial=0), np.abs(root_cost).max(initial=0),
                             np.abs(objective.urgency).max(initial=0)))
    # Only what a session's connector arcs can carry ever flows through a cost arc.
    reachable_wh = np.minimum(problem.energy_wh, (upper_w * wh_per_w[None, :]).sum(axis=1))
    # The stable step (see `stable_level`) multiplies every cost by `level`; where the larger
    # costs would not fit int64 the step is dropped (a plan less stable, never a failure).
    level = stable_level(problem, upper_w, layer_id, nearest)
    try:
        units = units_per_wh(float(reachable_wh.sum()), max_abs_cost * level)
    except SolverFailed:
        if level == 1:
            raise
        level = 1
        units = units_per_wh(float(reachable_wh.sum()), max_abs_cost)
    # A segment larger than what its session can ever receive is as good as capped there (and
    # in units that fit int64).
    seg_cap = np.repeat(_floor_units(np.minimum(objective.segment_wh, reachable_wh), units), k)
    total = int(seg_cap.sum())
    big = max(total, 1)
    seg_tail = np.zeros(n * k, dtype=np.int64)
    seg_head = np.repeat(FIRST_SESSION + np.arange(n), k)

    # Connector arcs: session -> nearest layer at or above its node.
    conn_cap_all = _floor_units(upper_w * wh_per_w[None, :], units, big)
    ci, ct = np.nonzero(conn_cap_all > 0)
    conn_tail = FIRST_SESSION + ci
    conn_head = layer_id[nearest[problem.connector_node[ci], ct], ct]
    conn_cap = conn_cap_all[ci, ct]
    conn_cost = -objective.urgency[ci, ct].astype(np.int64)  # the urgency reward

    # The stable step: every cost times `level`, and the part of a connector arc up to its
    # previous allocation on a parallel arc one unit cheaper.
    if level > 1:
        seg_cost, root_cost, conn_cost = seg_cost * level, root_cost * level, conn_cost * level
        kept = np.minimum(_previous_units(problem, ci, ct, units, big), conn_cap)
        held = np.flatnonzero(kept > 0)
        conn_cap = conn_cap - kept
        conn_tail = np.concatenate([conn_tail, conn_tail[held]])
        conn_head = np.concatenate([conn_head, conn_head[held]])
        conn_cap = np.concatenate([conn_cap, kept[held]])
        conn_cost = np.concatenate([conn_cost, conn_cost[held] - 1])
        ci, ct = np.concatenate([ci, ci[held]]), np.concatenate([ct, ct[held]])

    # Tree arcs: each kept non-root layer -> nearest kept layer above it.
    km, kt = np.nonzero(kept_layers)
    not_root = km != 0
    km, kt = km[not_root], kt[not_root]
    tree_tail = layer_id[km, kt]
    tree_head = layer_id[nearest[problem.node_parent[km], kt], kt]
    tree_cap = _floor_units(limit_w[km, kt] * wh_per_w[kt], units, big)

    # Root arcs: (root, t) -> sink, carrying the slot cost.
    root_limit = limit_w[0] * wh_per_w
    finite_root = np.isfinite(root_limit)
    root_cap = np.where(finite_root,
                        _floor_units(np.where(finite_root, root_limit, 0.0), units, big), big)

    tails = np.concatenate([seg_tail, conn_tail, tree_tail, layer_id[0, slots], [SOURCE]])
    heads = np.concatenate([seg_head, conn_head, tree_head, np.full(t, SINK), [SINK]])
    caps = np.concatenate([seg_cap, conn_cap, tree_cap, root_cap, [big]])
    costs = np.concatenate([seg_cost, conn_cost, np.zeros(tree_tail.size, dtype=np.int64),
                            root_cost, [0]])
    return tails, heads, caps, costs, total, (n * k, ci, ct), units


def stable_level(problem: Problem, upper_w: np.ndarray, layer_id: np.ndarray,
                 nearest: np.ndarray) -> int:
    """The factor every arc cost is multiplied by for the stable step; 1 (no step) without a
    previous allocation > 0.

    The flow's stable step, the counterpart of the LP's stable pass (optimizer/stable.py, which
    needs duals the min-cost flow does not give): among flows equal on every level of the
    objective, the one that keeps the most of `Problem.previous_w` (the sum of min(x,
    previous) over the entries it names). Cost scaling returns an arbitrary optimum that moves
    with tiny changes of the problem, so without it a re-plan reshuffled which cars run
    (benchmarks/README.md, "Stable allocations, third round").

    Why every level above stays exact. With every cost times `level` and a parallel arc one
    unit cheaper up to the previous allocation (a bonus arc), a residual cycle costs
    level * c + b, c its cost before (an integer) and b its bonus part: -1 for each bonus arc it
    passes forward (session -> layer), +1 for each it passes backward. A simple cycle enters and
    leaves each session and each (node, slot) layer at most once, so it passes at most
    min(sessions, layers) bonus arcs forward and as many backward (counted over the sessions and
    layers that have a bonus arc): |b| < level. An optimal flow has no negative residual cycle;
    one with c <= -1 would cost at most -level + |b| < 0, so the stable optimum is optimal for
    the costs before, on every level, and among those optima it keeps the most of the previous
    allocation. The price: costs grow by `level` (min(N, 2 x the layers of the kept slots),
    ~540 at 5 000 sessions), so the flow unit is coarser (`units_per_wh`: 1 mWh instead of 1 uWh
    at 5 000 sessions; every capacity is floored to it) and cost scaling runs a few more phases
    (benchmarks/README.md, "Stable allocations, third round")."""
    if problem.previous_w is None:
        return 1
    ci, ct = np.nonzero((problem.previous_w > 0) & (upper_w > 0))  # NaN > 0 is False
    if ci.size == 0:
        return 1
    sessions = np.unique(ci).size
    layers = np.unique(layer_id[nearest[problem.connector_node[ci], ct], ct]).size
    return min(sessions, layers) + 1


def _previous_units(problem: Problem, ci: np.ndarray, ct: np.ndarray, units: int,
                    most: int) -> np.ndarray:
    """(arcs,) the previous allocation of each connector arc in flow units (0 where unknown),
    capped at `most` like every capacity (a huge finite previous_w must not overflow)."""
    previous = problem.previous_w[ci, ct]
    previous = np.where(np.isfinite(previous), previous, 0.0)
    return _floor_units(previous * problem.wh_per_w[ct], units, most)


def solve_flow(problem: Problem, objective: Objective, upper_w: np.ndarray,
               time_limit_s: float | None = None) -> tuple[np.ndarray, dict]:
    """Exact optimum of the model by min-cost flow; power_w (N, T) and an info dict.

    The network-flow solver cannot be interrupted: time_limit_s is not enforced, and a result
    that arrives after it is still returned (info["over_time_limit"]), since a late exact answer
    beats a fallback. Raises SolverFailed when the model is not a flow or the solver fails."""
    started = time.perf_counter()
    upper_w = np.asarray(upper_w, dtype=float)
    if upper_w.shape != (problem.n_connectors, problem.n_slots):
        raise ValueError(f"upper_w: shape {upper_w.shape}, expected "
                         f"{(problem.n_connectors, problem.n_slots)}")
    graph = build_graph(problem, objective, upper_w)
    tails, heads, caps, costs, total, (first_conn, ci, ct), units = graph
    solver = min_cost_flow.SimpleMinCostFlow()
    solver.add_arcs_with_capacity_and_unit_cost(tails.astype(np.int32), heads.astype(np.int32),
                                                caps, costs)
    solver.set_nodes_supplies(np.array([SOURCE, SINK], dtype=np.int32),
                              np.array([total, -total], dtype=np.int64))
    built = time.perf_counter()
    status = solver.solve()
    solved = time.perf_counter()
    if status != solver.OPTIMAL:
        raise SolverFailed(f"flow: min-cost flow solver returned {status.name}")

    arc_flow = solver.flows(np.arange(first_conn, first_conn + ci.size))
    # the stable step's parallel arcs repeat a (connector, slot): add them up in whole units,
    # so a connector's power is one division as without them (a float sum of two parts could
    # pass a limit by an ulp and leave the projection work to do)
    flow_units = np.zeros((problem.n_connectors, problem.n_slots), dtype=np.int64)
    np.add.at(flow_units, (ci, ct), arc_flow)
    power_w = flow_units / units / problem.wh_per_w[None, :]
    solve_s = solved - built
    info = {
        "build_s": built - started,
        "solve_s": solve_s,
        "objective": evaluate(problem, objective, power_w),
        "status": "optimal",
        "n_arcs": int(tails.size),
        "n_nodes": int(solver.num_nodes()),
        "units_per_wh": units,
        "over_time_limit": time_limit_s is not None and (solved - started) > time_limit_s,
    }
    return power_w, info
