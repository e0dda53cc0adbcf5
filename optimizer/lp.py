"""The charging LP, built vectorised with scipy.sparse and solved with HiGHS (highspy).

Variables (minimisation form, so the very same arrays can go to `scipy.optimize.linprog`):

    x[v]        power of connector x_connector[v] in slot x_slot[v] [W], one variable per (i, t)
                with upper_w[i, t] > 0 and energy_wh[i] > 0 (the sparse window), bounds
                [0, ub] where ub also folds in every single-connector cap (request / slot energy,
                the tightest ancestor power limit, the tightest ancestor phase-current limit)
    s[j, k]     segment k of the energy delivered to session seg_connector[j] [Wh],
                bounds [0, segment_wh]

Rows:

    A_ub x <= b_ub  node power:   sum_{i in subtree(m)} x[i, t]                 <= node_limit_w[m, t]
                    node current: sum_{i in subtree(m)} amps_per_w[i, ph] x[i, t] <= node_limit_a[m, t]
    A_eq     = b_eq energy:       sum_k s[j, k] - sum_t wh_per_w[t] x[j, t]      = 0

A node row is only written when it can bind: rows whose subtree's summed upper bounds already fit
the limit are dropped, and a phase row is dropped when another phase row of the same node
dominates it (a phase that carries no single-phase load sees only the three-phase share, which
every other phase sees too). Most of the speed comes from these rows never existing.

Objective (minimise): (slot_cost[t] - urgency_value[i, t]) * wh_per_w[t] * x  -  segment_value[j, k] * s
(see optimizer/objective.py for why the coefficients give the strict priorities).
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from functools import cached_property

import highspy
import numpy as np
import scipy.sparse as sp

from optimizer.check import node_loads
from optimizer.objective import Objective, energy_first_by_construction
from optimizer.problem import N_PHASES, Problem
from optimizer.schedule import SolverFailed


def _swallow_highs_banner() -> None:
    """HiGHS prints a copyright banner to the process's stdout (from C++, before any option can
    be set) the first time a Highs object is made. A service's stdout is not the place for it, so
    make that first object here, at import, with file descriptor 1 pointed at /dev/null."""
    import os
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


_swallow_highs_banner()

# Measured on the phase-aware instances (CPU seconds of the first solve, 3 seeds, see the report in
# optimizer/solve.py's docstring): dual simplex without presolve and with max-value scaling
# (strategy 4) took 0.13-0.17 s at N = 1000 against 0.26-0.31 s with the defaults, and 1.4-2.1 s
# against 2.8-3.7 s at N = 5000; IPM (1.2 s / 19 s) and primal simplex (1.7 s / 53 s) are far
# slower. Presolve finds little to remove here: the rows that cannot bind are never written.
HIGHS_OPTIONS = {"solver": "simplex", "simplex_strategy": 1, "presolve": "off",
                 "simplex_scale_strategy": 4}


@dataclass(frozen=True, eq=False)
class LPArrays:
    """The LP in minimisation form: min c @ z s.t. A_ub z <= b_ub, A_eq z = b_eq, lb <= z <= ub.

    The first n_x entries of z are the power variables x, the rest the segment variables s.
    """

    c: np.ndarray              # (n_var,)
    A: sp.csc_matrix           # (n_ub + n_eq, n_var): the A_ub rows first, then the A_eq rows
    n_ub: int
    b_ub: np.ndarray           # (n_ub,)
    b_eq: np.ndarray           # (n_eq,)
    lb: np.ndarray             # (n_var,)
    ub: np.ndarray             # (n_var,)
    x_connector: np.ndarray    # (n_x,) connector of each power variable
    x_slot: np.ndarray         # (n_x,) slot of each power variable
    var_of: np.ndarray         # (N, T) index of the power variable of (i, t), -1 where none
    seg_connector: np.ndarray  # (n_seg_sessions,) connector of each block of segment variables
    n_segments: int
    energy_c: np.ndarray       # (n_var,) the cost of weighted energy alone: -w on segments, 0 on x
    # What each node row limits (optimizer/warm.py maps a basis between two builds by these):
    # node, slot, and the phase (-1: the power row). None when not recorded.
    row_node: np.ndarray | None = None    # (n_ub,)
    row_slot: np.ndarray | None = None    # (n_ub,)
    row_phase: np.ndarray | None = None   # (n_ub,)

    @property
    def n_x(self) -> int:
        return int(self.x_connector.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return self.var_of.shape

    @cached_property
    def A_ub(self) -> sp.csr_matrix:  # noqa: N802 (linprog's names)
        return self.A[: self.n_ub].tocsr()

    @cached_property
    def A_eq(self) -> sp.csr_matrix:  # noqa: N802
        return self.A[self.n_ub:].tocsr()

    @property
    def bounds(self) -> np.ndarray:
        """(n_var, 2) bounds in linprog's format."""
        return np.column_stack([self.lb, self.ub])

    def to_power(self, z: np.ndarray) -> np.ndarray:
        """(N, T) power from a solution vector z (or just its first n_x entries)."""
        power_w = np.zeros(self.shape)
        power_w[self.x_connector, self.x_slot] = np.asarray(z)[: self.n_x]
        return power_w


_DEPTH_LEVELS: "weakref.WeakKeyDictionary[Problem, list]" = weakref.WeakKeyDictionary()


def _node_depths(problem: Problem) -> np.ndarray:
    ancestors = problem.ancestors  # row a has 1s on a's subtree; column sums = number of ancestors
    return np.asarray(ancestors.sum(axis=0)).ravel().astype(np.int64) - 1


def _depth_levels(problem: Problem) -> list:
    """[(nodes at depth d, their parents) for d = 1, 2, ...], computed once per problem (the
    baselines call path_min every slot)."""
    levels = _DEPTH_LEVELS.get(problem)
    if levels is None:
        depth = _node_depths(problem)
        levels = []
        for level in range(1, int(depth.max()) + 1):
            nodes = np.flatnonzero(depth == level)
            levels.append((nodes, problem.node_parent[nodes]))
        _DEPTH_LEVELS[problem] = levels
    return levels


def path_min(problem: Problem, node_values: np.ndarray) -> np.ndarray:
    """(M, T) the smallest of node_values[a, t] over a on the path from the root to each node."""
    out = np.array(node_values, dtype=float)
    for nodes, parents in _depth_levels(problem):
        out[nodes] = np.minimum(out[nodes], out[parents])
    return out


def tight_upper_w(problem: Problem, upper_w: np.ndarray) -> np.ndarray:
    """(N, T) upper_w further capped by what one connector alone may draw in each slot.

    The caps are the remaining request held over one slot, the tightest power limit above the
    connector, and the tightest phase-current limit above it (on its most loaded phase). They are
    implied by the rows, so the optimum does not change; they make more rows provably slack.
    """
    cap = np.minimum(np.asarray(upper_w, dtype=float),
                     problem.energy_wh[:, None] / problem.wh_per_w[None, :])
    node = problem.connector_node
    if np.isfinite(problem.node_limit_w).any():
        cap = np.minimum(cap, path_min(problem, problem.node_limit_w)[node])
    if problem.has_phase_limits:
        amps = problem.amps_per_w.max(axis=1)
        cap = np.minimum(cap, path_min(problem, problem.node_limit_a)[node] / amps[:, None])
    return np.maximum(cap, 0.0)


def _subtree_entries(problem: Problem, keep: np.ndarray, var_of: np.ndarray,
                     coef: np.ndarray | None):
    """COO entries (row, col, value) of one row per True (m, t) in keep: the subtree's variables."""
    node_conn = problem.node_connector
    m_r, t_r = np.nonzero(keep)
    counts = np.diff(node_conn.indptr)[m_r]
    total = int(counts.sum())
    row = np.repeat(np.arange(m_r.shape[0]), counts)
    block_start = np.repeat(np.cumsum(counts) - counts, counts)
    conn = node_conn.indices[np.repeat(node_conn.indptr[m_r], counts) + np.arange(total) - block_start]
    var = var_of[conn, np.repeat(t_r, counts)]
    value = np.ones(total) if coef is None else coef[conn]
    ok = (var >= 0) & (value > 0)
    return row[ok], var[ok], value[ok], m_r, t_r


def build_lp(problem: Problem, objective: Objective, upper_w: np.ndarray) -> LPArrays:
    """The LP of `problem` with power bounded by upper_w (N, T), in minimisation form."""
    n, t = problem.n_connectors, problem.n_slots
    upper_w = np.asarray(upper_w, dtype=float)
    if upper_w.shape != (n, t):
        raise ValueError(f"upper_w: shape {upper_w.shape} does not fit {(n, t)}")
    cap_w = tight_upper_w(problem, np.minimum(upper_w, problem.upper_w))
    has_var = (cap_w > 0) & (problem.energy_wh[:, None] > 0)
    x_connector, x_slot = np.nonzero(has_var)
    n_x = x_connector.shape[0]
    var_of = np.full((n, t), -1, dtype=np.int64)
    var_of[x_connector, x_slot] = np.arange(n_x)
    cap_w = np.where(has_var, cap_w, 0.0)

    rows, cols, vals, rhs, row_keys = [], [], [], [], []
    n_rows = 0
    # What each node would carry with every car at its cap: the power and the phase currents
    # in one sparse product (check.node_loads; the same sums to the bit as one per resource)
    most_w, most_a_by_phase = node_loads(problem, cap_w)
    # Node power rows that can bind.
    limit_w = problem.node_limit_w
    finite = np.isfinite(limit_w)
    if finite.any():
        keep = finite & (most_w > limit_w)
        r, c, v, m_r, t_r = _subtree_entries(problem, keep, var_of, None)
        rows.append(r + n_rows); cols.append(c); vals.append(v)
        rhs.append(limit_w[m_r, t_r])
        row_keys.append((m_r, t_r, np.full(m_r.shape[0], -1)))
        n_rows += m_r.shape[0]
    # Node phase-current rows that can bind and are not dominated by another phase's row.
    if problem.has_phase_limits:
        limit_a = problem.node_limit_a
        finite = np.isfinite(limit_a)
        # a connector loads a phase more than the others (single-phase, or a worst case
        # given per row: Problem.phase_a_per_w) where its current per W there is above its
        # smallest; the rest of its current is a balanced share that every phase sees
        amps = problem.amps_per_w
        singles_on = (amps > amps.min(axis=1, keepdims=True) * (1.0 + 1e-12)).astype(float)
        node_singles = problem.node_connector @ singles_on        # (M, 3) count per phase
        no_singles = node_singles.sum(axis=1) == 0
        for ph in range(N_PHASES):
            # Without single-phase load on ph, row ph equals the three-phase part of every row;
            # it is needed only when no phase has single-phase load (then phase 0 stands for all).
            needed = (node_singles[:, ph] > 0) | (no_singles if ph == 0 else False)
            coef = problem.amps_per_w[:, ph]
            keep = finite & needed[:, None] & (most_a_by_phase[:, ph] > limit_a)
            r, c, v, m_r, t_r = _subtree_entries(problem, keep, var_of, coef)
            rows.append(r + n_rows); cols.append(c); vals.append(v)
            rhs.append(limit_a[m_r, t_r])
            row_keys.append((m_r, t_r, np.full(m_r.shape[0], ph)))
            n_rows += m_r.shape[0]
    n_ub = n_rows

    # Energy rows: sum_k s[j, k] - sum_t wh_per_w[t] x[j, t] = 0, one per session with variables.
    k_seg = objective.n_segments
    seg_connector = np.unique(x_connector)
    session_row = np.full(n, -1, dtype=np.int64)
    session_row[seg_connector] = np.arange(seg_connector.shape[0])
    n_seg = seg_connector.shape[0] * k_seg
    rows.append(n_rows + session_row[x_connector]); cols.append(np.arange(n_x))
    vals.append(-problem.wh_per_w[x_slot])
    rows.append(n_rows + np.repeat(np.arange(seg_connector.shape[0]), k_seg))
    cols.append(n_x + np.arange(n_seg)); vals.append(np.ones(n_seg))
    n_eq = seg_connector.shape[0]
    n_rows += n_eq

    n_var = n_x + n_seg
    matrix = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                           shape=(n_rows, n_var))
    c = np.concatenate([(objective.slot_cost[x_slot]
                         - objective.urgency_value[x_connector, x_slot]) * problem.wh_per_w[x_slot],
                        -objective.segment_value[seg_connector].ravel()])
    lb = np.zeros(n_var)
    ub = np.concatenate([cap_w[x_connector, x_slot],
                         np.repeat(objective.segment_wh[seg_connector], k_seg)])
    b_ub = np.concatenate(rhs) if rhs else np.zeros(0)
    energy_c = np.concatenate([np.zeros(n_x), -np.repeat(objective.weight[seg_connector], k_seg)])
    keys = ([np.concatenate(part).astype(np.int64) for part in zip(*row_keys)] if row_keys
            else [np.zeros(0, dtype=np.int64)] * 3)
    return LPArrays(c=c, A=matrix, n_ub=n_ub, b_ub=b_ub, b_eq=np.zeros(n_eq), lb=lb, ub=ub,
                    x_connector=x_connector, x_slot=x_slot, var_of=var_of,
                    seg_connector=seg_connector, n_segments=k_seg, energy_c=energy_c,
                    row_node=keys[0], row_slot=keys[1], row_phase=keys[2])


def energy_tolerance(energy: float) -> float:
    """How far below the energy-only optimum the second stage may stay [weighted Wh]: above
    HiGHS's feasibility tolerance (1e-7 per row) so the held row is always feasible, far below
    anything a car would notice."""
    return 1e-9 * abs(energy) + 1e-6


def col_bounds(highs: highspy.Highs, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) bounds of these HiGHS columns, in their order. `getCols` reads only them
    (`getLp` copies the whole model, its matrix too: 0.9 ms against 0.04 ms CPU for 200 of
    28 000 columns at N = 1000)."""
    return _bounds(highs.getCols, cols, lambda got: got[3:5])


def row_bounds(highs: highspy.Highs, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) bounds of these HiGHS rows, in their order (`col_bounds`' twin)."""
    return _bounds(highs.getRows, rows, lambda got: got[2:4])


def _bounds(get, index: np.ndarray, pick) -> tuple[np.ndarray, np.ndarray]:
    index = np.asarray(index, dtype=np.int32)
    if index.size == 0:
        return np.zeros(0), np.zeros(0)
    wanted = np.unique(index)   # HiGHS takes a strictly increasing set
    got = get(int(wanted.size), wanted)
    if got[0] != highspy.HighsStatus.kOk:
        raise RuntimeError(f"HiGHS {get.__name__}: {got[0]}")
    lower, upper = pick(got)
    at = np.searchsorted(wanted, index)
    return np.asarray(lower)[at], np.asarray(upper)[at]


class HighsModel:
    """One LP loaded into HiGHS, re-solvable after pausing (connector, slot) pairs.

    Pausing only changes column bounds, so HiGHS re-solves from the previous basis (warm start).

    energy_first=True (limits where one Wh can make room for more or less than one Wh, see
    optimizer/objective.py) solves lexicographically, every stage warm from the last basis:
    1. the objective; 2. the weighted energy alone, from (1)'s basis: when (1) already has the
    most weighted energy, its basis is optimal here too (0 iterations, ~10 ms at N = 1000) and
    (1) is returned - or, with `certify_energy`, (2) is skipped when `energy_bound_wh` proves
    from (1)'s basis that no point has more (~1 ms); 3. otherwise the objective again, with a
    row holding the weighted energy at (2)'s optimum less `energy_tolerance`. The row is freed
    before the next solve (pausing may make that energy unreachable).
    """

    def __init__(self, arrays: LPArrays, options: dict | None = None,
                 energy_first: bool = False, loaded: tuple | None = None) -> None:
        self.arrays = arrays
        self.energy_first = energy_first
        self._energy_row: int | None = None  # index of the held-energy row, once added
        self._duals_of_objective = True      # HiGHS's current duals are the objective's
        self.restricted = None               # set by the stable pass, which changes the model
        self.face_basis = None               # ... with the basis it started from
        self.face_z: np.ndarray | None = None  # ... and that basis's point (HiGHS's order)
        self.restart = None                  # mark_restart: (basis, point, (columns, rows))
        self.z_highs: np.ndarray | None = None  # the last run's solution, HiGHS's column order
        self.first_options: dict = {}        # options for the next solve's first run only
        self.paused_cols: list = []          # HiGHS columns pause() fixed at 0
        self.raised_cols: list = []          # HiGHS columns raise_lower() gave a lower bound
        # prove energy first from the objective's basis (energy_bound_wh) before running HiGHS
        # on the weighted energy alone; False: always run it (tests compare the two)
        self.certify_energy = True
        if loaded is not None:
            # (highs, col, row): a HiGHS model already holding this LP (optimizer/warm.py), with
            # arrays' column j in HiGHS column col[j] and row i in HiGHS row row[i]; other
            # HiGHS columns are fixed at 0, other rows free
            self.highs, self._all, self._rows = loaded
            self._mapped = True
            return
        self._mapped = False
        self._rows = np.arange(arrays.A.shape[0])
        self.highs = highspy.Highs()
        self.highs.setOptionValue("output_flag", False)
        for name, value in {**HIGHS_OPTIONS, **(options or {})}.items():
            self.highs.setOptionValue(name, value)
        a = arrays.A
        n_rows = a.shape[0]
        row_lower = np.concatenate([np.full(arrays.n_ub, -np.inf), arrays.b_eq])
        row_upper = np.concatenate([arrays.b_ub, arrays.b_eq])
        status = self.highs.passModel(
            int(a.shape[1]), int(n_rows), int(a.nnz), int(highspy.MatrixFormat.kColwise),
            int(highspy.ObjSense.kMinimize), 0.0,
            arrays.c, arrays.lb, arrays.ub, row_lower, row_upper,
            a.indptr[:-1].astype(np.int32), a.indices.astype(np.int32), a.data.astype(np.float64),
            # The array overload of passModel needs an integrality vector; all continuous.
            np.zeros(a.shape[1], dtype=np.int32))
        if status == highspy.HighsStatus.kError:
            raise SolverFailed("HiGHS rejected the model")
        self._all = np.arange(arrays.c.shape[0], dtype=np.int32)

    def pause(self, connector: np.ndarray, slot: np.ndarray) -> int:
        """Fix power to 0 for these (connector, slot) pairs; returns how many variables changed."""
        var = self.arrays.var_of[connector, slot]
        var = self._all[np.unique(var[var >= 0])].astype(np.int32)
        self.paused_cols.append(var)
        if var.size:
            zeros = np.zeros(var.size)
            self.highs.changeColsBounds(int(var.size), var, zeros, zeros)
        return int(var.size)

    def unpause(self, since: int) -> None:
        """Take back the pauses made after the first `since` calls of pause(): their columns
        get their upper bounds from the arrays again."""
        if len(self.paused_cols) <= since:
            return
        var = np.concatenate(self.paused_cols[since:]).astype(np.int32)
        self.paused_cols = self.paused_cols[:since]
        if var.size:
            # HiGHS column -> the arrays' column (the kept model maps them: optimizer/warm.py)
            index = np.flatnonzero(np.isin(self._all, var))
            cols = self._all[index].astype(np.int32)
            lower, _ = col_bounds(self.highs, cols)
            self.highs.changeColsBounds(int(cols.size), cols, lower, self.arrays.ub[index])

    def raise_lower(self, connector: np.ndarray, slot: np.ndarray, lower_w: np.ndarray) -> None:
        """Give these (connector, slot) pairs' power a lower bound (stable.hold_running: a
        running car's minimum held in the kept slots); `reset_lower` takes them back to 0."""
        var = self.arrays.var_of[connector, slot]
        keep = var >= 0
        var = self._all[var[keep]].astype(np.int32)
        self.raised_cols.append(var)
        _, upper = col_bounds(self.highs, var)
        if var.size:
            self.highs.changeColsBounds(int(var.size), var, np.asarray(lower_w, float)[keep],
                                        upper)

    def mark_restart(self) -> None:
        """Remember the current optimal basis and its point as where a kept model's next
        re-plan starts (optimizer/warm.py, after a stable pass; `restart_point`). Called by
        solve._hold_running before the running cars' minimums become lower bounds: the held
        LP's optimal basis has every held column nonbasic at that bound, which the next LP
        resets to 0, so from it the next re-plan's first run started from a point with the
        held cars' power gone (400-650 primal iterations after one car arrived at 1 000
        connectors; 40-170 from this basis: benchmarks/README.md, "s36-replan")."""
        self.restart = (self.highs.getBasis(), self.z_highs,
                        (int(self.highs.getNumCol()), int(self.highs.getNumRow())))

    def restart_point(self):
        """(basis, point in HiGHS's column order) a kept model's next re-plan starts from after
        a stable pass: the marked one (`mark_restart`) when the model still has its columns
        and rows (no held-energy row added since), else the basis the pass started from."""
        if self.restart is not None and self.restart[2] == self.restricted:
            return self.restart[0], self.restart[1]
        return self.face_basis, self.face_z

    def reset_lower(self) -> None:
        for var in self.raised_cols:
            if var.size:
                _, upper = col_bounds(self.highs, var)
                self.highs.changeColsBounds(int(var.size), var, np.zeros(var.size), upper)
        self.raised_cols = []

    def _run(self, end: float | None, what: str) -> tuple[np.ndarray, float, int]:
        """One HiGHS run; (solution z, minimised objective, iterations)."""
        if end is not None:
            left = end - time.perf_counter()
            if left <= 0:
                raise SolverFailed(f"time limit reached before {what}")
            # HiGHS compares time_limit with the run time summed over every run of this object
            # (earlier rounds, earlier re-plans of a kept model: optimizer/warm.py)
            self.highs.setOptionValue("time_limit", float(left) + self.highs.getRunTime())
        else:  # no limit now, whatever an earlier solve of a kept model set
            self.highs.setOptionValue("time_limit", highspy.kHighsInf)
        self.highs.run()
        model_status = self.highs.getModelStatus()
        if model_status == highspy.HighsModelStatus.kUnknown:
            # the dual simplex can end without a verdict on a badly scaled objective (the
            # energy-first weights; a 6-car, 3-slot case in tests/test_optimizer_energy_first):
            # once more with the primal simplex before anything falls back to a baseline
            self.highs.setOptionValue("simplex_strategy", 4)
            self.highs.clearSolver()   # from scratch: not the basis it ended on
            try:
                self.highs.run()
            finally:
                self.highs.setOptionValue("simplex_strategy",
                                          HIGHS_OPTIONS["simplex_strategy"])
            model_status = self.highs.getModelStatus()
        if model_status == highspy.HighsModelStatus.kTimeLimit:
            raise SolverFailed(f"HiGHS hit the time limit in {what}")
        if model_status != highspy.HighsModelStatus.kOptimal:
            status_text = self.highs.modelStatusToString(model_status)
            raise SolverFailed(f"HiGHS did not find an optimum of {what}: {status_text}")
        info = self.highs.getInfo()
        z = self.z_highs = np.asarray(self.highs.getSolution().col_value)
        if self._mapped:  # HiGHS's column order -> the arrays' order
            z = z[self._all]
        return z, float(info.objective_function_value), int(info.simplex_iteration_count)

    def _hold_energy(self, lower: float) -> None:
        if self._energy_row is None:
            seg = self._all[self.arrays.n_x:]
            self.highs.addRow(lower, highspy.kHighsInf, int(seg.size), seg,
                              -self.arrays.energy_c[self.arrays.n_x:])
            self._energy_row = int(self.highs.getNumRow()) - 1
        else:
            self.highs.changeRowBounds(self._energy_row, lower, highspy.kHighsInf)

    def solve(self, time_limit_s: float | None = None) -> tuple[np.ndarray, dict]:
        if time_limit_s is not None and time_limit_s <= 0:
            raise SolverFailed("time limit reached before the solve started")
        started = time.perf_counter()
        end = None if time_limit_s is None else started + time_limit_s
        arrays = self.arrays
        if self._energy_row is not None:
            self.highs.changeRowBounds(self._energy_row, -highspy.kHighsInf, highspy.kHighsInf)
        for name, value in self.first_options.items():
            self.highs.setOptionValue(name, value)
        try:
            z, value, iterations = self._run(end, "the objective")
        finally:
            for name in self.first_options:
                self.highs.setOptionValue(name, HIGHS_OPTIONS[name])
            self.first_options = {}
        self._duals_of_objective = True
        energy_first = "by construction"
        if self.energy_first:
            # einsum, not `@`: a dot product this long (29 000 columns at N = 1 000) is
            # OpenBLAS's threaded ddot, whose helper thread then spun 15-30 ms of CPU after
            # every solve (benchmarks/README.md, s33-warm); its value depended on OpenBLAS's
            # thread count anyway
            most_wh = -float(np.einsum("i,i->", arrays.energy_c, z))
            energy_first = "verified"
            bound_wh = self.energy_bound_wh() if self.certify_energy else None
            if bound_wh is not None and bound_wh <= most_wh + energy_tolerance(most_wh):
                # no schedule delivers more weighted energy (by more than the tolerance the
                # HiGHS run below allows): proved from this basis, without that run
                best_wh = most_wh
                energy_first = "certified"
            else:
                self.highs.changeColsCost(int(self._all.size), self._all, arrays.energy_c)
                try:
                    _, energy_value, more = self._run(end, "the weighted energy alone")
                    self._duals_of_objective = False   # HiGHS now holds that solve's duals
                finally:
                    self.highs.changeColsCost(int(self._all.size), self._all, arrays.c)
                iterations += more
                best_wh = -energy_value
            if best_wh > most_wh + energy_tolerance(best_wh):
                self._hold_energy(best_wh - energy_tolerance(best_wh))
                z, value, more = self._run(end, "the objective at the most weighted energy")
                self._duals_of_objective = True
                iterations += more
                energy_first = "held"
        info = {"solve_s": time.perf_counter() - started, "status": "Optimal",
                "objective": -value, "iterations": iterations, "energy_first": energy_first,
                "n_vars": int(arrays.c.shape[0]), "n_rows": int(arrays.A.shape[0]),
                "nnz": int(arrays.A.nnz)}
        return arrays.to_power(z), info


    def energy_bound_wh(self) -> float | None:
        """An upper bound on the weighted energy (-energy_c @ z) of every point of this LP, read
        from HiGHS's current basis without a run; None when there is no basis to read.

        Weak duality: for any row prices y, energy_c @ z = d @ z + y @ (A z) with
        d = energy_c - A^T y, so over the LP energy_c @ z >= sum_j min(d_j lb_j, d_j ub_j)
        + sum_i min(y_i L_i, y_i U_i) - valid for every y whose sign fits the row's finite
        bounds (y <= 0 on the A z <= b rows; clipped so) and for any relaxation of the column
        bounds. y solves B^T y = energy_c of the basic variables, so when the objective's
        optimal basis is also optimal for the weighted energy alone (the usual case: the
        HiGHS run this replaces then took 0 iterations) the bound is that optimum itself, up to
        rounding (within 1e-7 Wh measured at N = 100-10 000). Bounds used: the arrays' with
        pause() and raise_lower() read back from HiGHS; the held-energy row is free when this
        is called, and HiGHS's columns and rows outside the arrays (optimizer/warm.py) are
        fixed at 0 and free."""
        arrays = self.arrays
        status, basic = self.highs.getBasicVariables()
        if status != highspy.HighsStatus.kOk or basic.size != self.highs.getNumRow():
            return None
        cost = np.zeros(int(self.highs.getNumCol()))
        cost[self._all] = arrays.energy_c
        rhs = np.where(basic >= 0, cost[np.maximum(basic, 0)], 0.0)
        status, y_highs = self.highs.getBasisTransposeSolve(rhs)
        if status != highspy.HighsStatus.kOk:
            return None
        y = np.asarray(y_highs, dtype=float)[self._rows]
        n_ub = arrays.n_ub
        y[:n_ub] = np.minimum(y[:n_ub], 0.0)
        d = arrays.energy_c - arrays.A.T @ y
        lower, upper = arrays.lb, arrays.ub
        changed = [c for c in (*self.paused_cols, *self.raised_cols) if c.size]
        if changed:
            # HiGHS column -> arrays column, then those columns' bounds as HiGHS has them
            cols = np.unique(np.concatenate(changed)).astype(np.int32)
            index = np.full(int(self.highs.getNumCol()), -1, dtype=np.int64)
            index[self._all] = np.arange(self._all.size)
            low, up = col_bounds(self.highs, cols)
            ok = index[cols] >= 0
            lower, upper = lower.copy(), upper.copy()
            lower[index[cols[ok]]], upper[index[cols[ok]]] = low[ok], up[ok]
        if not (np.isfinite(lower).all() and np.isfinite(upper).all()):
            return None
        least = (float(np.where(d > 0.0, d * lower, d * upper).sum())
                 + float(np.einsum("i,i->", y[:n_ub], arrays.b_ub))
                 + float(np.einsum("i,i->", y[n_ub:], arrays.b_eq)))
        return -least if np.isfinite(least) else None

    def stabilise(self, targets, time_limit_s: float | None = None) -> tuple[np.ndarray, dict]:
        """Among the optima of the last solve, the one closest to the previous allocation
        (optimizer/stable.py); targets = stable.stable_targets(...). Leaves the model restricted
        to that optimal face: call it once, after the last solve."""
        from optimizer import stable

        started = time.perf_counter()
        end = None if time_limit_s is None else started + time_limit_s
        variables, previous_w, weight = targets
        iterations = 0
        if not self._duals_of_objective:
            # the last run was the weighted-energy check: its duals describe the optima of
            # energy alone, a larger face than the objective's. The objective again, warm from
            # a basis that is already optimal for it (0 iterations), gives its own duals.
            _, _, iterations = self._run(end, "the objective before the stable pass")
            self._duals_of_objective = True
        # (columns, rows) before the pass: optimizer/warm.py deletes what it adds, and puts
        # back the optimal basis from before it (deleting the pass's basic columns leaves no
        # basis: the next primal simplex started from the slack basis, 2x a cold solve)
        self.restricted = (int(self.highs.getNumCol()), int(self.highs.getNumRow()))
        self.face_basis = self.highs.getBasis()   # a copy, held in C++ (~20 us at N = 1000)
        self.face_z = self.z_highs
        stable.restrict_to_optimal_face(self.highs)
        stable.add_deviation(self.highs, self._all[variables], previous_w, weight)
        flipped = stable.start_dual_feasible(self.highs, self.arrays.A, self._all,
                                             np.asarray(self._rows), self.z_highs)
        z, deviation, more = self._run(end, "the plan closest to the previous one")
        return self.arrays.to_power(z), {"solve_s": time.perf_counter() - started,
                                         "iterations": iterations + more,
                                         "deviation_wh": deviation, "flipped": flipped}


def solve_lp(problem: Problem, objective: Objective, upper_w: np.ndarray,
             time_limit_s: float | None = None) -> tuple[np.ndarray, dict]:
    """Backend entry point: the optimal (N, T) power under upper_w, and timings/diagnostics."""
    started = time.perf_counter()
    arrays = build_lp(problem, objective, upper_w)
    model = HighsModel(arrays, energy_first=not energy_first_by_construction(problem))
    build_s = time.perf_counter() - started
    if time_limit_s is not None:
        time_limit_s = time_limit_s - build_s
    power_w, info = model.solve(time_limit_s)
    info["build_s"] = build_s
    return np.clip(power_w, 0.0, None), info
