"""Safety projection: turn a nearly feasible allocation into one `check(tol=0)` accepts.

Solvers work to tolerances (HiGHS: 1e-7 on its scaled rows), so a row can come back over its
limit by a rounding error. Every limit here is an upper bound on a non-negative sum, so lowering
power never breaks another limit; the projection only ever lowers power:

1. clip to [0, upper_w];
2. energy and node overloads are removed first from the power *above each connector's minimum*
   (in proportion to it), so a connector sitting exactly at its minimum is not pushed below it
   and paused over a rounding error;
3. what that cannot absorb is removed by scaling the subtree down proportionally;
4. the minimum-rate rule is re-applied (below minimum -> 0);
repeated until `check(tol=0)` is empty; a last resort zeroes any subtree still over its limit.
"""

from __future__ import annotations

import numpy as np

from optimizer.check import check, delivered_wh, feasible, node_loads
from optimizer.lp import path_min
from optimizer.problem import N_PHASES, Problem

MAX_ROUNDS = 8
OVERSHOOT = 1.0 + 1e-6  # remove a hair more than the excess, so the re-summed load is under
# ... and at least this much more: an excess of a few ulps (a float sum 1.5e-11 W over the
# site's limit) times OVERSHOOT is still below the floats' resolution, so the load stayed over
# and the subtree was scaled down by (1 - 1e-12), which paused every car at exactly its
# minimum under it (20-54 pauses a day on the seeded days; benchmarks/README.md, fifth round)
MARGIN_W = 1e-6
MARGIN_A = 1e-9
MARGIN_WH = 1e-9
MIN_SNAP_W = 1e-6   # a value this close under its minimum is the minimum (solver noise)


def _path_max(problem: Problem, node_values: np.ndarray) -> np.ndarray:
    return -path_min(problem, -node_values)


def _enforce_min_rate(problem: Problem, power_w: np.ndarray,
                      bound_w: np.ndarray | None = None) -> np.ndarray:
    """Below minimum -> 0; but a hair under it (MIN_SNAP_W, a solver's 4139.999999999999 W for a
    4 140 W minimum) is the minimum, where the bound allows it: pausing a car for an ulp was a
    pause a re-plan made for nothing (demo day). Raising by that hair may put a limit over by
    as much; the rounds after this remove it from the power above the minimums."""
    minimum = problem.min_power_w[:, None]
    bound = problem.upper_w if bound_w is None else bound_w
    snap = (power_w < minimum) & (power_w >= minimum - MIN_SNAP_W) & (minimum > 0) & \
        (bound >= minimum)
    if snap.any():
        raised = np.where(snap, np.broadcast_to(minimum, power_w.shape), power_w)
        # not where the hair puts a node over whose cars all sit at their minimums (there the
        # subtree would be scaled, pausing them all): the entry goes to 0, as before
        load_w, load_a = node_loads(problem, raised)
        over = (load_w > problem.node_limit_w) | \
            (load_a > problem.node_limit_a[:, None, :]).any(axis=1)
        if over.any():
            snap &= np.asarray(problem.node_connector.T @ over.astype(float)) == 0
        power_w = np.where(snap, np.broadcast_to(minimum, power_w.shape), power_w)
    return np.where(power_w < minimum, 0.0, power_w)


def _reduce_energy(problem: Problem, power_w: np.ndarray) -> np.ndarray:
    excess = delivered_wh(problem, power_w) - problem.energy_wh
    over = excess > 0
    if not over.any():
        return power_w
    slack = np.maximum(power_w - problem.min_power_w[:, None], 0.0)
    slack_wh = delivered_wh(problem, slack)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        share = np.where(over & (slack_wh > 0),
                         np.minimum((excess * OVERSHOOT + MARGIN_WH) / slack_wh, 1.0), 0.0)
    power_w = power_w - share[:, None] * slack
    # Rows the slack above minimum could not fix (every entry at its minimum) give way at
    # their latest entries: scaled as a whole, every entry fell below the minimum and the car
    # was paused for the whole horizon over 4.5e-13 Wh (demo day, a car near full)
    excess = delivered_wh(problem, power_w) - problem.energy_wh
    for i in np.flatnonzero(excess > 0):
        power_w[i] = _take_latest_wh(power_w[i], problem.wh_per_w, problem.min_power_w[i],
                                     excess[i] * OVERSHOOT + MARGIN_WH)
    return power_w


def _take_latest_wh(row: np.ndarray, wh_per_w: np.ndarray, minimum: float,
                    take_wh: float) -> np.ndarray:
    """row less take_wh from its latest entries: each lowered while it stays at its minimum or
    more, else set to 0 (then the next one back gives the rest, if any is left)."""
    row = row.copy()
    for t in np.flatnonzero(row > 0)[::-1]:
        if take_wh <= 0.0:
            break
        cut_w = take_wh / wh_per_w[t]
        if row[t] - cut_w >= minimum and row[t] - cut_w > 0.0:
            row[t] -= cut_w
            break
        take_wh -= row[t] * wh_per_w[t]
        row[t] = 0.0
    return row


def _reduce_nodes(problem: Problem, power_w: np.ndarray) -> np.ndarray:
    load_w, load_a = node_loads(problem, power_w)
    over_w = load_w > problem.node_limit_w
    over_a = load_a > problem.node_limit_a[:, None, :]
    if not over_w.any() and not over_a.any():
        return power_w
    # Every step below is slot by slot (a node's load, need and factor in slot t read only
    # slot t; the loads' sparse product sums each slot's column alone, in the same order),
    # and in a slot with no node over it changes nothing (share 0: p - 0.0 * slack is p;
    # factor 1: p * 1.0 is p). So only the slots with a node over are computed, to the same
    # bits: after a solve, HiGHS's rounding errors put a node over in a few of the 97 slots
    # (s35-replan).
    slots = np.flatnonzero(over_w.any(axis=0) | over_a.any(axis=(0, 1)))
    if slots.size == power_w.shape[1]:
        return _reduce_nodes_in(problem, power_w, slice(None), load_w, load_a, over_w, over_a)
    out = np.array(power_w, dtype=float)
    out[:, slots] = _reduce_nodes_in(problem, power_w[:, slots], slots, load_w[:, slots],
                                     load_a[:, :, slots], over_w[:, slots], over_a[:, :, slots])
    return out


def _reduce_nodes_in(problem: Problem, power_w: np.ndarray, slots, load_w: np.ndarray,
                     load_a: np.ndarray, over_w: np.ndarray, over_a: np.ndarray) -> np.ndarray:
    """_reduce_nodes on the columns `slots` of the plan (power_w: those columns; the loads and
    overs: theirs)."""
    limit_w, limit_a = problem.node_limit_w[:, slots], problem.node_limit_a[:, slots]
    slack = np.maximum(power_w - problem.min_power_w[:, None], 0.0)
    slack_w, slack_a = node_loads(problem, slack)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        need = np.where(over_w, ((load_w - limit_w) * OVERSHOOT + MARGIN_W) / slack_w, 0.0)
        for ph in range(N_PHASES):
            need_a = np.where(over_a[:, ph],
                              ((load_a[:, ph] - limit_a) * OVERSHOOT + MARGIN_A)
                              / slack_a[:, ph],
                              0.0)
            need = np.maximum(need, need_a)
    need = np.nan_to_num(np.minimum(need, 1.0), nan=1.0, posinf=1.0)
    share = _path_max(problem, need)[problem.connector_node]
    power_w = power_w - share * slack
    # Whatever the slack above minimum could not absorb: scale the subtree down.
    load_w, load_a = node_loads(problem, power_w)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        factor = np.where(load_w > limit_w, limit_w / load_w, 1.0)
        for ph in range(N_PHASES):
            factor = np.minimum(factor, np.where(load_a[:, ph] > limit_a,
                                                 limit_a / load_a[:, ph], 1.0))
    if (factor < 1.0).any():
        factor = np.where(factor < 1.0, factor * (1.0 - 1e-12), 1.0)
        power_w = power_w * path_min(problem, factor)[problem.connector_node]
    return power_w


def _zero_offenders(problem: Problem, power_w: np.ndarray) -> np.ndarray:
    """Last resort: pause every connector under a node/slot still over its limit."""
    power_w = power_w.copy()
    for v in check(problem, power_w, tol=0.0):
        if v.kind in ("node_power", "node_current"):
            members = problem.node_connector[v.index].indices
            power_w[members, v.slot] = 0.0
        elif v.kind == "energy_over_request":
            power_w[v.index] = 0.0
        else:
            power_w[v.index, v.slot] = 0.0
    return power_w


def project(problem: Problem, power_w: np.ndarray, upper_w: np.ndarray | None = None) -> np.ndarray:
    """The largest-effort feasible version of power_w: check(problem, result, tol=0) == []."""
    return project_checked(problem, power_w, upper_w)[0]


def project_checked(problem: Problem, power_w: np.ndarray,
                    upper_w: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """(project(...), whether it passed `feasible`, i.e. check(tol=0) == []): saves a re-check."""
    bound = problem.upper_w if upper_w is None else np.minimum(upper_w, problem.upper_w)
    power_w = np.clip(np.asarray(power_w, dtype=float), 0.0, bound)
    power_w = _enforce_min_rate(problem, power_w, bound)
    for _ in range(MAX_ROUNDS):
        if feasible(problem, power_w):
            return power_w, True
        power_w = _reduce_energy(problem, power_w)
        power_w = _reduce_nodes(problem, power_w)
        power_w = _enforce_min_rate(problem, np.maximum(power_w, 0.0), bound)
    for _ in range(MAX_ROUNDS):
        if feasible(problem, power_w):
            return power_w, True
        power_w = _zero_offenders(problem, power_w)
    return power_w, feasible(problem, power_w)
