"""Stable plans: among allocations equal on every level of the objective, the one closest to the
allocation installed before (`Problem.previous_w`).

Why. The objective (optimizer/objective.py) leaves many optima: which of several alike cars gets
the cap's watts now, when the others get theirs later, is often a tie on energy, price, fairness
and the urgency tie-break alike (the urgency rewards are rounded to integers, so cars and slots
close in deadline and time share one reward). The simplex returns a vertex - a few connectors at
their maximum, the rest at 0 - and which vertex depends on the order of the columns and on tiny
changes of the problem, so each re-plan paused some running cars and started others
(benchmarks/README.md, "Stable allocations": 443 pauses on the demo day) and resent profiles
that changed nothing that mattered (issue 10: six per station in 3 minutes at 5 000 stations).

How, exactly. An LP's optimal solutions are the feasible solutions that satisfy complementary
slackness with any one optimal dual solution: every column whose reduced cost is not zero stays
at the bound it sits on, every row whose dual is not zero stays at the bound it sits on. Fixing
those (columns to their value, rows to equality) restricts the model to the optimal face - every
level of the objective, energy first included, kept without any tolerance on its value - and a
second warm HiGHS solve then minimises

    sum over (i, t) with a known previous allocation  wh_per_w[t] * |x[i, t] - previous_w[i, t]|

less EARLY = 2 Wh for every Wh delivered in those slots (linearised with two deviation columns
and one row per such entry). The EARLY term first: on the optimal face energy can often move to
later slots for free (the urgency rewards are rounded), and the deviation alone then deferred a
new car's energy out of the kept slots rather than start it (demo day: 96.3 % of the offline
optimum instead of 97.7 %); a Wh more in the kept slots changes the deviation by at most one Wh,
so with EARLY > 1 it always wins, and among plans with as much energy now the one closest to the
previous plan wins. A reduced cost or dual below
ZERO_DUAL counts as zero: the smallest urgency difference the objective can express is about
1e-8 per W (1 / (2 K Q) VU per Wh on a 10 s slot), the numerical noise of a reduced cost about
1e-13. Measured in benchmarks/README.md ("Stable allocations").

The dual must be the objective's: under per-phase limits the last HiGHS run may be the check
of the weighted energy alone (optimizer/lp.py), whose duals describe a larger face; the model
then re-runs the objective first (warm from a basis already optimal for it, 0 iterations).
tests/test_optimizer_stable.py checks random previous plans on random power and phase
instances: the objective and the weighted energy do not move.

The pass's run starts from the face basis with the boxed columns its costs would flip already
at their other bound (`start_dual_feasible`): left to HiGHS, those flips came after a dual
phase 1 that cost the warm start its nonbasic positions (~7 000 iterations instead of ~650 at
1 000 connectors; benchmarks/README.md, "s35-warm").

The pass leaves the model restricted: call it once, after the last solve. Only HiGHS has it
(`solve` picks HiGHS for a problem with a previous allocation up to STABLE_FLOW_CONNECTORS
sessions even where the flow applies; OR-Tools' min-cost flow gives no potentials to fix the
optimal face with). Above that the flow keeps the previous allocation by a cost term of its own,
below every level (optimizer/flow.py `stable_level`: every integer cost times a factor, a unit
cheaper up to the previous allocation). With a previous allocation `solve` makes no min-rate re-solve round: the
round paused what the first vertex left below a minimum (other cars than the previous plan ran)
and the stable pass could not bring them back; the projection and the top-up round the stable
plan instead. EDF and the top-up serve a car the previous plan ran first among cars that leave
in the same slot (optimizer/baselines.py `_deadline_key`: a tie-break only). When the portfolio
guard finds a baseline that beats the rounded stable plan over the horizon, `keep_window` keeps
the previous plan's window (`previous_window`) or ours in the kept slots and lets our solve (or a
baseline) plan the rest, if that delivers as much.
Before this pass, optimizer/running.py holds a running car's minimum in the kept slots where
that trades only urgency (the one level this module's exactness gives up, and only then).
Before the rounding, `hold_minimums` raises a car the previous plan ran that the stable plan
leaves between 0 and its minimum in a kept slot to its minimum, taking the difference from cars
of equal weight above theirs (the L1 pass tends to land a reduction on one car).
"""

from __future__ import annotations

import dataclasses
import time

import highspy
import numpy as np
import scipy.sparse as sp

from optimizer.check import node_loads
from optimizer.lp import col_bounds, row_bounds
from optimizer.objective import quantised_weight
from optimizer.problem import Problem

ZERO_DUAL = 1e-10
ZERO_W = 1e-6  # below this a solver's output is zero, not a rate to round (solve, running)
EARLY = 2.0


def stable_targets(problem: Problem, x_connector: np.ndarray, x_slot: np.ndarray):
    """(variable indices, their previous allocation [W], their weight [Wh per W]) of the power
    variables with a previous allocation to keep; None when there is none."""
    if problem.previous_w is None:
        return None
    previous = problem.previous_w[x_connector, x_slot]
    known = np.flatnonzero(np.isfinite(previous))
    if known.size == 0:
        return None
    return known, previous[known], problem.wh_per_w[x_slot[known]]


def _nearest_bound(value: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """The bound (lower or upper) each value sits on."""
    return np.where(np.abs(value - lower) <= np.abs(value - upper), lower, upper)


def restrict_to_optimal_face(highs: highspy.Highs) -> None:
    """Fix every column with a non-zero reduced cost and every row with a non-zero dual at the
    bound it sits on (complementary slackness with the current dual: the optimal face)."""
    solution = highs.getSolution()
    col_dual = np.asarray(solution.col_dual)
    fixed = np.flatnonzero(np.abs(col_dual) > ZERO_DUAL)
    if fixed.size:
        lower, upper = col_bounds(highs, fixed)
        at = _nearest_bound(np.asarray(solution.col_value)[fixed], lower, upper)
        highs.changeColsBounds(int(fixed.size), fixed.astype(np.int32), at, at)
    row_dual = np.asarray(solution.row_dual)
    tight = np.flatnonzero(np.abs(row_dual) > ZERO_DUAL)
    if tight.size:
        lower, upper = row_bounds(highs, tight)
        at = _nearest_bound(np.asarray(solution.row_value)[tight], lower, upper)
        # an infinite bound is never the one a row with a non-zero dual sits on
        at = np.where(np.isfinite(at), at, np.where(np.isfinite(lower), lower, upper))
        highs.changeRowsBounds(int(tight.size), tight.astype(np.int32), at, at)


def add_deviation(highs: highspy.Highs, variables: np.ndarray, previous_w: np.ndarray,
                  weight: np.ndarray) -> None:
    """Objective: only sum weight * |x[v] - previous_w| over `variables` (two deviation columns
    and one row x - up + down = previous per variable)."""
    n_cols = int(highs.getNumCol())
    k = int(variables.size)
    cost = np.zeros(n_cols)
    # -EARLY per Wh delivered in these slots: more now always wins over closer to the
    # previous plan (a Wh more changes the deviation by at most one Wh)
    cost[variables] = -EARLY * weight
    highs.changeColsCost(n_cols, np.arange(n_cols, dtype=np.int32), cost)
    costs = np.concatenate([weight, weight]).astype(np.float64)
    highs.addCols(2 * k, costs, np.zeros(2 * k), np.full(2 * k, highspy.kHighsInf), 0,
                  np.zeros(2 * k, dtype=np.int32), np.zeros(0, dtype=np.int32),
                  np.zeros(0, dtype=np.float64))
    up = n_cols + np.arange(k)
    down = up + k
    index = np.column_stack([variables, up, down]).ravel().astype(np.int32)
    value = np.tile([1.0, -1.0, 1.0], k)
    starts = (3 * np.arange(k)).astype(np.int32)
    highs.addRows(k, previous_w.astype(np.float64), previous_w.astype(np.float64), 3 * k,
                  starts, index, value)


def start_dual_feasible(highs: highspy.Highs, matrix: sp.csc_matrix, cols: np.ndarray,
                        rows: np.ndarray, values: np.ndarray, tolerance: float = 1e-7) -> int:
    """Move every nonbasic boxed column whose reduced cost under the pass's costs points away
    from the bound it sits on to its other bound, in the basis HiGHS starts from; returns how
    many. Call after `add_deviation`, before the pass's run. matrix: the LP's (rows x columns)
    matrix, its column j in HiGHS column cols[j] and row i in HiGHS row rows[i]; values: the
    last run's solution in HiGHS's column order (the face optimum: the deviation columns, added
    after it, are at 0 with cost weight >= 0 and their rows basic, so never wrong-signed).

    Why. The face basis is optimal for the objective, not for the pass's costs: the EARLY term
    can make boxed power columns of the kept slots want their other bound (236 after a car
    arrived at 1 000 connectors). HiGHS's dual simplex would flip them itself, but in those
    re-plans it first ran a dual phase 1, which re-derives every nonbasic position, and then
    took ~7 000 iterations where the other passes take ~650 (benchmarks/README.md, "s35-warm").
    Handed the flipped basis it starts in phase 2: 922 iterations, the same optimum. When no
    column needs it (the usual case) the basis is not touched."""
    status, basic = highs.getBasicVariables()
    if status != highspy.HighsStatus.kOk:
        return 0
    lp = highs.getLp()
    cost = np.asarray(lp.col_cost_)
    rhs = np.where(basic >= 0, cost[np.maximum(basic, 0)], 0.0)
    status, y = highs.getBasisTransposeSolve(rhs)
    if status != highspy.HighsStatus.kOk:
        return 0
    y = np.asarray(y)
    outside = np.ones(y.size, dtype=bool)
    outside[rows] = False
    if np.any(y[outside] != 0.0):
        # a row the LP lacks prices a column (e.g. the held-energy row): all of HiGHS's matrix
        a = lp.a_matrix_
        whole = sp.csc_matrix((np.asarray(a.value_), np.asarray(a.index_), np.asarray(a.start_)),
                              shape=(lp.num_row_, lp.num_col_))
        reduced = (cost - whole.T @ y)[cols]
    else:
        reduced = cost[cols] - matrix.T @ y[rows]
    lower, upper = np.asarray(lp.col_lower_)[cols], np.asarray(lp.col_upper_)[cols]
    value = np.asarray(values)[cols]
    nonbasic = np.ones(lp.num_col_, dtype=bool)
    nonbasic[basic[basic >= 0]] = False
    nonbasic = nonbasic[cols]
    boxed = np.isfinite(lower) & np.isfinite(upper) & (lower < upper)
    slack = 1e-9 * np.maximum(1.0, np.abs(upper))
    at_lower = nonbasic & boxed & (np.abs(value - lower) <= slack)
    at_upper = nonbasic & boxed & (np.abs(value - upper) <= slack)
    up = cols[at_lower & (reduced < -tolerance)]
    down = cols[at_upper & (reduced > tolerance)]
    if up.size + down.size == 0:
        return 0
    basis = highs.getBasis()
    col_status = list(basis.col_status)
    for j in up.tolist():
        col_status[j] = highspy.HighsBasisStatus.kUpper
    for j in down.tolist():
        col_status[j] = highspy.HighsBasisStatus.kLower
    basis.col_status = col_status
    highs.setBasis(basis)
    return int(up.size + down.size)


def kept_slots(problem: Problem) -> int:
    """How many slots from the start hold a previous allocation to keep (up to the last slot
    with one); 0 without a previous allocation."""
    if problem.previous_w is None:
        return 0
    known = np.flatnonzero(np.isfinite(problem.previous_w).any(axis=0))
    return int(known[-1]) + 1 if known.size else 0


def keep_window(problem: Problem, ours_w: np.ndarray, baseline) -> np.ndarray | None:
    """(N, T) our plan in the kept slots and `baseline` (Problem -> (N, T) power) on what is left
    after them; None without kept slots. For the portfolio guard: a baseline that beats the
    rounded stable plan over the whole horizon usually wins in the later slots (rounding loss
    there), and returning it whole paused cars the previous plan ran now. Not projected: the
    caller projects (limits are per slot, so the two parts only share the energy caps, which
    the residual problem keeps)."""
    k = kept_slots(problem)
    if k == 0:
        return None
    ours_w = np.asarray(ours_w, dtype=float)
    got_wh = ours_w[:, :k] @ problem.wh_per_w[:k]
    upper = np.array(problem.upper_w)
    upper[:, :k] = 0.0
    residual = dataclasses.replace(problem, energy_wh=np.maximum(problem.energy_wh - got_wh, 0.0),
                                   max_power_w=upper, previous_w=None)
    combined = np.array(baseline(residual), dtype=float)
    combined[:, :k] = ours_w[:, :k]
    return combined


def previous_window(problem: Problem) -> np.ndarray | None:
    """(N, T) the previous allocation in the kept slots (0 where it names none, and after them),
    clipped to each connector's maximum; None without kept slots. Not lawful yet: the caller
    projects it (a limit may have dropped, a car may need less now than the window gives it).

    For the portfolio guard: the previous plan was itself rounded (every running car at its
    minimum or more), while the stable LP plan leaves remainders below a minimum in the kept
    slots that the rounding pauses and that nobody else can take (a 22 kW car's 12.4 kW minimum
    against 5 kW of room; benchmarks/README.md, fourth round)."""
    k = kept_slots(problem)
    if k == 0:
        return None
    window = np.zeros(problem.upper_w.shape)
    window[:, :k] = np.minimum(np.nan_to_num(problem.previous_w[:, :k], nan=0.0),
                               problem.upper_w[:, :k])
    return window


class _Loads:
    """Node loads per slot (power and phase currents) with the limits a move may not pass
    (never worse than the loads the plan came with: a solver may sit a hair above a limit)."""

    def __init__(self, problem: Problem, power_w: np.ndarray) -> None:
        self.problem = problem
        self.amps = problem.amps_per_w  # (N, 3)
        # (M, T) and (M, 3, T): check.node_loads, the same sums to the bit as one sparse
        # product per resource
        self.w, self.a = node_loads(problem, power_w)
        self.limit_w = np.maximum(problem.node_limit_w, self.w)
        self.limit_a = np.maximum(problem.node_limit_a[:, None, :], self.a)
        # made once per problem (hold_minimums runs once per rounding, four times a re-plan
        # with the stable pass)
        self.paths = problem.node_paths
        # for move(), on Python floats: the paths as lists, each connector's node and currents
        self._path_lists = [path.tolist() for path in self.paths]
        self._node = problem.connector_node.tolist()
        self._amps = self.amps.tolist()

    def move(self, src: int, dst: int, t: int, d: float, apply: bool) -> bool:
        """Whether moving d W from connector src to dst in slot t keeps every limit (and do it
        when apply).

        On Python floats, node by node over the two paths (a handful of nodes): the same IEEE
        operations in the same order as on the arrays (+ d on dst's path, then - d on src's,
        the currents d * amps), so the same bits, without copying every node's loads of the
        slot for each try (hold_minimums tries every donor for every short car: this was
        ~18 of its ~25 ms a re-plan with the stable pass at N = 1 000, s35-replan)."""
        p_src = self._path_lists[self._node[src]]
        p_dst = self._path_lists[self._node[dst]]
        d = float(d)
        add = [d * amps for amps in self._amps[dst]]
        take = [d * amps for amps in self._amps[src]]
        w_t, a_t = self.w[:, t], self.a[:, :, t]
        limit_w, limit_a = self.limit_w[:, t], self.limit_a[:, :, t]
        changed = []
        for m in set(p_src).union(p_dst):
            in_dst, in_src = m in p_dst, m in p_src
            w = float(w_t[m])
            a = a_t[m].tolist()
            if in_dst:
                w = w + d
                a = [x + y for x, y in zip(a, add)]
            if in_src:
                w = w - d
                a = [x - y for x, y in zip(a, take)]
            if w > limit_w[m] or any(x > y for x, y in zip(a, limit_a[m].tolist())):
                return False
            changed.append((m, w, a))
        if apply:
            for m, w, a in changed:
                w_t[m] = w
                a_t[m] = a
        return True


    def lower(self, src: int, t: int, d: float) -> None:
        """Take d W off connector src in slot t (loads only fall: no limit to check)."""
        take = [float(d) * amps for amps in self._amps[src]]
        w_t, a_t = self.w[:, t], self.a[:, :, t]
        for m in self._path_lists[self._node[src]]:
            w_t[m] = float(w_t[m]) - float(d)
            a_t[m] = [x - y for x, y in zip(a_t[m].tolist(), take)]


def _later_pieces(problem: Problem, power_w: np.ndarray, loads: _Loads, i: int, j: int,
                  t: int, energy_wh: float) -> list | None:
    """[(slot, W taken from i, W given to j)] taking at least energy_wh of car i's energy after
    slot t (latest first; i left at 0 or at its minimum or more) and giving it to car j in the
    same slots (j left at 0 or at its minimum or more, under its maximum and every limit, never
    more than energy_wh in all); None when that is not possible.

    An entry of i below its minimum (the projection pauses it: its energy is lost to i either
    way) is taken whole, also when it is more than is left to take; what j cannot take of it
    is given to nobody (the top-up hands that room out after the rounding)."""
    wh_per_w, minimum, upper = problem.wh_per_w, problem.min_power_w, problem.upper_w
    left, budget, pieces = energy_wh, energy_wh, []
    for s in range(problem.n_slots - 1, t, -1):
        if left <= energy_wh * 1e-12:
            break
        xi, xj = power_w[i, s], power_w[j, s]
        if xi <= ZERO_W:
            continue
        want = left / wh_per_w[s]
        if xi < minimum[i] - ZERO_W and xi > want:
            give = min(xi, budget / wh_per_w[s], upper[j, s] - xj)
            if give <= ZERO_W or xj + give < minimum[j] - ZERO_W or \
                    not loads.move(i, j, s, give, apply=False):
                give = 0.0
            pieces.append((s, xi, give))
            left = 0.0
            break
        take = xi if xi <= want else min(want, xi - minimum[i])
        if take <= ZERO_W:
            continue
        if xj + take > upper[j, s] or (xj + take < minimum[j] - ZERO_W):
            continue
        if not loads.move(i, j, s, take, apply=False):
            continue
        pieces.append((s, take, take))
        left -= take * wh_per_w[s]
        budget -= take * wh_per_w[s]
    return pieces if left <= energy_wh * 1e-9 else None


def hold_minimums(problem: Problem, power_w: np.ndarray, paused_too: bool = False,
                  until: float | None = None) -> tuple[np.ndarray, int]:
    """(power_w with running cars held at their minimum in the kept slots, how many were held).

    The stable pass moves one vertex of the optimal face to another, so a reduction often lands
    on one car, which then sits between 0 and its minimum (often the cap's remainder in that
    slot); the projection pauses it and the top-up hands its room to others - a pause made by
    the re-plan alone. Here such a car (the previous plan ran it at its minimum or more in that
    slot) is raised to its minimum with power taken in the same slot from a car of the same
    (quantised) weight above its own minimum, when every node limit on the way still holds.
    When the raise would deliver more than the car's request (its whole request is planned),
    its own energy after this slot moves into it, and the donor takes that room in those later
    slots (a four-entry exchange). Either way every car's delivered energy stays within its
    request and the weighted energy is unchanged; only the lower levels (price, fairness,
    urgency) may move, as rounding moves them anyway. (One exception, where the rounding
    changes nothing: a later entry of the car below its minimum, which the projection pauses,
    is taken whole when more than must move, and what the donor cannot take of it is dropped;
    a car at a minimum that is also its maximum had no other way to pay: s37-pause.) A car that cannot be held in full is left
    as it was (for the projection).

    paused_too: also a car the plan leaves at 0 there (the portfolio guard, on a baseline it
    returns whole), always by the four-entry exchange: every car keeps the baseline's energy,
    so the result delivers exactly the baseline's weighted energy.

    until: a `time.perf_counter()` moment (the solve's deadline) after which no more cars are
    held - what is held so far stays (each exchange keeps every limit). Every donor is tried
    for every short car: at 1 000 cars under a cap halved by a DR event, 134 000 tries and
    15-45 s of CPU, most of them finding no later room (benchmarks/README.md, s30-dr)."""
    previous = problem.previous_w
    if previous is None:
        return power_w, 0
    slots = np.flatnonzero(np.isfinite(previous).any(axis=0))
    minimum = problem.min_power_w
    if slots.size == 0 or not (minimum > 0).any():
        return power_w, 0
    power_w = np.array(power_w, dtype=float)
    weight = quantised_weight(problem.weight)
    upper = problem.upper_w
    delivered = power_w @ problem.wh_per_w
    loads = None
    held = 0
    for t in slots:
        x = power_w[:, t]
        ran = np.isfinite(previous[:, t]) & (previous[:, t] >= minimum - ZERO_W) & \
            (previous[:, t] > 0)
        short = ran & ((x > ZERO_W) | paused_too) & (x < minimum - ZERO_W)
        if not short.any():
            continue
        loads = _Loads(problem, power_w) if loads is None else loads
        wh = problem.wh_per_w[t]
        for i in np.flatnonzero(short)[np.argsort((minimum - x)[short])]:
            if until is not None and time.perf_counter() >= until:
                return power_w, held
            need = minimum[i] - x[i]
            if need > upper[i, t] - x[i]:
                continue
            # Wh of its own later energy to move into this slot: what the raise would deliver
            # beyond its request; on a baseline (paused_too) all of it, so the donor gets back
            # what it gives now and every car keeps the baseline's energy (a donor that only
            # gave was often the car that leaves first, which the baseline served for that)
            shift = need * wh if paused_too else \
                max(delivered[i] + need * wh - problem.energy_wh[i], 0.0)
            surplus = np.where((weight == weight[i]) & (x > minimum + ZERO_W), x - minimum, 0.0)
            surplus[i] = 0.0
            for j in np.flatnonzero(surplus >= need)[np.argsort(-surplus[surplus >= need])]:
                if not loads.move(j, i, t, need, apply=False):
                    continue
                pieces = [] if shift <= 0 else _later_pieces(problem, power_w, loads, i, j, t,
                                                              min(shift, need * wh))
                if pieces is None:
                    continue
                loads.move(j, i, t, need, apply=True)
                power_w[j, t] -= need
                power_w[i, t] = minimum[i]
                for s, take, give in pieces:
                    loads.move(i, j, s, give, apply=True)
                    if take > give:
                        loads.lower(i, s, take - give)
                    power_w[i, s] = 0.0 if take >= power_w[i, s] else power_w[i, s] - take
                    power_w[j, s] += give
                taken_wh = sum(take * problem.wh_per_w[s] for s, take, _ in pieces)
                given_wh = sum(give * problem.wh_per_w[s] for s, _, give in pieces)
                delivered[i] += need * wh - taken_wh
                delivered[j] += given_wh - need * wh
                held += 1
                break
    return power_w, held
