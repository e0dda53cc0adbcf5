"""Warm re-plans: keep the HiGHS model of the last solve and change it into the next one.

Why. A re-plan after one car arrives differs from the last plan's LP in a few columns (the new
car's power in each slot of its window, its segments), a row or two (its energy row, a node row
that can now bind) and in the costs (the urgency ranks move with every new deadline). Built from
scratch, HiGHS starts from the slack basis: at 1 000 phase-aware connectors about 3 700 dual
simplex iterations. Kept, the model still holds the last optimal basis and its factorisation;
HiGHS adds the new columns at their lower bound (0: no power) and the new rows basic, and the
re-solve starts one car away from the optimum, and the primal simplex only has to improve the
last solution (benchmarks/README.md, "Speed (s17-speed)", has what it costs). The primal
simplex from the kept basis was also fast when only the cars' own columns and energy rows no
longer fit (a car left; a minute passed: the meters moved and the first slot is shorter), but
slow when the last solution breaks a limit of the new LP (a cap or a DR event below it: 5-15x a
cold solve; the dual simplex from the kept basis was no faster than cold), so then the model is
built from scratch ("Warm re-plans in the controller (s17-warmwire)").

Exact. The re-solved model is the new problem's LP, column for column and row for row: every
coefficient is set from `lp.build_lp` of the new problem (costs and bounds of every column, bounds
of every row, the new columns' and rows' entries). What is left over from the last problem is
neutral: a column the new LP lacks is fixed at 0 with cost 0, a row it lacks is freed (no
bounds). So HiGHS solves the same LP as a cold start and stops at an optimum of it; only which of
several optima it returns may differ (tests/test_optimizer_warm.py compares the objective and the
weighted energy with a cold solve on random instances).

What is kept from one problem to the next is keyed by the caller's connector ids (`ids`: one
integer per connector of the problem, e.g. the session's id; default: the connector's index), a
power column by (id, slot), a segment column by (id, k), a node row by (node, slot, phase), an
energy row by id. The stored entries of a kept column are reused, so a kept id must hang under
the same node with the same phases and voltage, and the number of slots and the tree must be the
same; otherwise (or once more than half the columns are left over) the model is built from
scratch. A slot whose length changed has the energy-row entries of its kept columns set anew.
An id that left and comes back gets new columns (its old ones stay fixed at 0: the car may be
another one). After a stable pass (optimizer/stable.py: the optimal face fixed, deviation
columns and rows added) the pass's columns and rows are deleted, an optimal basis from before
the pass is put back (the unheld optimum's when running cars' minimums were held:
`HighsModel.mark_restart`), and every cost and bound is set anew; the held-energy row of a
lexicographic solve (optimizer/lp.py) is deleted too.
"""

from __future__ import annotations

import highspy
import numpy as np
import scipy.sparse as sp

from optimizer.lp import LPArrays, HighsModel
from optimizer.problem import Problem

REBUILD_DEAD_SHARE = 0.5   # rebuild once this share of HiGHS columns is left over
SLOT_SPAN = 1 << 20        # slot ids are below this (keys: id * SLOT_SPAN + slot id)


def _col_keys(arrays: LPArrays, ids: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """(n_var,) int64 key of every column: power (id, slot id) even, segment (id, k) odd."""
    k = arrays.n_segments
    x = (ids[arrays.x_connector] * SLOT_SPAN + slots[arrays.x_slot]) * 2
    seg = (np.repeat(ids[arrays.seg_connector], k) * k
           + np.tile(np.arange(k), arrays.seg_connector.size)) * 2 + 1
    return np.concatenate([x, seg]).astype(np.int64)


def _row_keys(arrays: LPArrays, ids: np.ndarray, n_nodes: int, slots: np.ndarray) -> np.ndarray:
    """(n_rows,) int64 key of every row: node rows (node, slot id, phase) even, energy rows odd."""
    node = ((arrays.row_phase + 1) * n_nodes + arrays.row_node) * SLOT_SPAN + slots[arrays.row_slot]
    return np.concatenate([node * 2, ids[arrays.seg_connector] * 2 + 1]).astype(np.int64)


def _lookup(keys: np.ndarray, sorted_keys: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Index in the original array of each key, -1 where absent."""
    if sorted_keys.size == 0:
        return np.full(keys.shape, -1, dtype=np.int64)
    pos = np.searchsorted(sorted_keys, keys)
    pos = np.minimum(pos, sorted_keys.size - 1)
    return np.where(sorted_keys[pos] == keys, order[pos], -1)


class WarmStart:
    """Carries one HiGHS model from a solve to the next (`optimizer.solve(problem, warm=...)`).

    Set `ids` before each solve when connectors come and go (one integer per connector of that
    problem, stable across re-plans, below 2**42); None means the connector's index. Set
    `slot_ids` when the time grid moves (one integer per slot in [0, SLOT_SPAN), the same for the
    same slot from one re-plan to the next, e.g. numbered by the slot's end): slots may then come
    and go and change length; None means the slot's index (the number of slots must then stay
    the same). `last` says how the last model was made: "cold" (built from scratch) or "warm"
    (changed from the one before).
    """

    def __init__(self) -> None:
        self.ids: np.ndarray | None = None
        self.slot_ids: np.ndarray | None = None
        self.last: str | None = None
        # change the kept model also when the last solution no longer fits (dual simplex from
        # the kept basis; measured slower than a cold build, kept for tests and measurements)
        self.infeasible_warm = False
        self._model: HighsModel | None = None
        self._problem: Problem | None = None
        self._ids: np.ndarray | None = None
        self._col_keys = None   # (sorted keys, HiGHS column) of live columns
        self._row_keys = None   # (sorted keys, HiGHS row) of live rows

    def model(self, problem: Problem, arrays: LPArrays, energy_first: bool) -> HighsModel:
        """A HighsModel of `arrays` (the LP of `problem`), changed from the last one if it can."""
        ids = (np.arange(problem.n_connectors, dtype=np.int64) if self.ids is None
               else np.asarray(self.ids, dtype=np.int64))
        if ids.shape != (problem.n_connectors,) or np.unique(ids).size != ids.size:
            raise ValueError("WarmStart.ids: one distinct integer per connector")
        slots = (np.arange(problem.n_slots, dtype=np.int64) if self.slot_ids is None
                 else np.asarray(self.slot_ids, dtype=np.int64))
        if (slots.shape != (problem.n_slots,) or np.unique(slots).size != slots.size
                or slots.min() < 0 or slots.max() >= SLOT_SPAN):
            raise ValueError(f"WarmStart.slot_ids: one distinct integer in [0, {SLOT_SPAN}) "
                             "per slot")
        self._new_slots = slots
        if not self._can_update(problem, ids):
            return self._cold(problem, arrays, energy_first, ids)
        try:
            model = self._update(problem, arrays, energy_first, ids)
        except _Rebuild:
            model = None
        if model is None:
            return self._cold(problem, arrays, energy_first, ids)
        self.last = "warm"
        return model

    # --- from scratch ----------------------------------------------------------------------------
    def _cold(self, problem, arrays, energy_first, ids) -> HighsModel:
        model = HighsModel(arrays, energy_first=energy_first)
        n_var, n_rows = arrays.c.shape[0], arrays.A.shape[0]
        lower, upper = _row_bounds(arrays)
        slots = self._new_slots
        self._remember(problem, ids, model, _col_keys(arrays, ids, slots), np.arange(n_var),
                       _row_keys(arrays, ids, problem.n_nodes, slots), np.arange(n_rows),
                       (arrays.c, arrays.lb, arrays.ub), (lower, upper))
        self.last = "cold"
        return model

    def _remember(self, problem, ids, model, col_keys, col_at, row_keys, row_at, cols,
                  rows) -> None:
        order = np.argsort(col_keys, kind="stable")
        self._col_keys = (col_keys[order], np.asarray(col_at)[order])
        order = np.argsort(row_keys, kind="stable")
        self._row_keys = (row_keys[order], np.asarray(row_at)[order])
        self._model, self._problem, self._ids = model, problem, ids
        self._slots = self._new_slots
        self._cols, self._rows = cols, rows  # (cost, lower, upper), (lower, upper) in HiGHS

    # --- changed from the last model ------------------------------------------------------------
    def _can_update(self, problem: Problem, ids: np.ndarray) -> bool:
        last, model = self._problem, self._model
        if last is None or model is None or model.z_highs is None:
            return False
        # (slot lengths may differ: a re-plan a minute later has a shorter first slot; the
        # energy-row entries of the kept columns are changed in _update; with slot_ids the
        # slots may come and go too: a new edge, a slot boundary passed)
        if ((self.slot_ids is None and last.n_slots != problem.n_slots)
                or not np.array_equal(last.node_parent, problem.node_parent)):
            return False
        if np.setdiff1d(self._slots, self._new_slots).size:
            # a slot passed (a slot boundary, an edge): the energy the last plan put there is
            # gone, and the primal simplex from the kept basis took 11 591 iterations where a
            # cold solve took 12 673, at twice its CPU (N = 1 000, benchmarks/README.md)
            return False
        # a kept id's stored column entries must still be right: same node, phases, voltage
        common, old_at, new_at = np.intersect1d(self._ids, ids, return_indices=True)
        return bool(np.array_equal(last.connector_node[old_at], problem.connector_node[new_at])
                    and np.array_equal(last.amps_per_w[old_at], problem.amps_per_w[new_at]))

    def _update(self, problem, arrays, energy_first, ids) -> HighsModel | None:
        old = self._model
        highs = old.highs
        old_cost, old_lower, old_upper = (np.array(a) for a in self._cols)
        for var in old.paused_cols:  # bounds pause() changed: push them again
            old_upper[var] = np.nan
        for var in old.raised_cols:  # ... and raise_lower() (stable.hold_running)
            old_lower[var] = np.nan
        old_row_lower, old_row_upper = self._rows
        start_z = old.z_highs   # the point of the basis the next run starts from
        if old.restricted is not None:
            # The stable pass fixed the optimal face (bounds of many columns and rows), set its
            # own costs and added deviation columns and rows: those go, the rest is pushed anew.
            n_cols, n_rows = old.restricted
            extra = np.arange(n_cols, int(highs.getNumCol()), dtype=np.int32)
            if extra.size:
                _ok(highs.deleteCols(int(extra.size), extra))
            extra = np.arange(n_rows, int(highs.getNumRow()), dtype=np.int32)
            if extra.size:
                _ok(highs.deleteRows(int(extra.size), extra))
            basis, start_z = old.restart_point()
            if basis is not None:
                # an optimal basis from before the pass: without it HiGHS had none left and
                # the controller's warm re-plans (a stable pass every time) took 2x a cold
                # solve. The unheld optimum's when the pass ran on the held LP
                # (HighsModel.mark_restart): the held LP's put the held cars' power to 0 here
                _ok(highs.setBasis(basis))
            old_cost, old_lower = np.full(old_cost.size, np.nan), np.full(old_cost.size, np.nan)
            old_row_lower = np.full(old_row_lower.size, np.nan)
        if old._energy_row is not None:
            # the held-energy row of the last problem sums its segments only: it goes
            # (the last row once the stable pass's are gone: added after the update)
            _ok(highs.deleteRows(1, np.array([old._energy_row], dtype=np.int32)))
        n_old_cols, n_old_rows = old_cost.size, old_row_lower.size

        slots = self._new_slots
        col_keys = _col_keys(arrays, ids, slots)
        row_keys = _row_keys(arrays, ids, problem.n_nodes, slots)
        col = _lookup(col_keys, *self._col_keys)
        new_cols = np.flatnonzero(col < 0)
        n_cols = n_old_cols + new_cols.size
        if n_cols > arrays.c.shape[0] / (1.0 - REBUILD_DEAD_SHARE):
            return None
        col[new_cols] = n_old_cols + np.arange(new_cols.size)
        row = _lookup(row_keys, *self._row_keys)
        new_rows = np.flatnonzero(row < 0)
        row[new_rows] = n_old_rows + np.arange(new_rows.size)

        # What every HiGHS column and row must hold now: the new LP's where it has them,
        # neutral elsewhere (a column fixed at 0 with cost 0, a free row).
        cost, lower, upper = np.zeros(n_cols), np.zeros(n_cols), np.zeros(n_cols)
        cost[col], lower[col], upper[col] = arrays.c, arrays.lb, arrays.ub
        row_lower = np.full(n_old_rows + new_rows.size, -highspy.kHighsInf)
        row_upper = np.full(n_old_rows + new_rows.size, highspy.kHighsInf)
        new_lower, new_upper = _row_bounds(arrays)
        row_lower[row], row_upper[row] = new_lower, new_upper

        # The kept basis: new columns at 0, new rows basic. When the last solution is still
        # feasible (a car came, prices moved) the primal simplex only has to improve it: a car
        # arriving at 1 000 connectors took 103-163 iterations instead of 3 100-3 700. When it is
        # not (a car that was charging left, a limit dropped) the dual simplex from the kept
        # basis took as long as a cold solve or 2-3x longer (benchmarks/README.md, "Speed
        # (s17-speed)"), so the model is built from scratch unless `infeasible_warm` asks.
        last = np.concatenate([start_z[:n_old_cols], np.zeros(new_cols.size)])
        if _limits_hold(arrays, last, col, new_upper):
            # Also when only the cars' own columns and energy rows no longer fit (a car left,
            # time passed: the meters moved and the first slot is shorter) the primal simplex
            # from the kept basis was fast: 504-586 iterations instead of 3 144-3 605 cold when
            # a car leaves, 803 instead of 8 766 a minute later (N = 1 000; benchmarks/README.md,
            # "Warm re-plans in the controller"). Not when a limit dropped below the last plan:
            # 7 737-14 809 iterations, 1.2-3.5 s; then the model is built from scratch.
            first_options = {"simplex_strategy": 4}
        elif self.infeasible_warm:
            first_options = {}
        else:
            return None

        # Only what changed goes to HiGHS (each call costs about a microsecond per entry).
        changed = np.flatnonzero(cost[:n_old_cols] != old_cost).astype(np.int32)
        if changed.size:
            _ok(highs.changeColsCost(int(changed.size), changed, cost[changed]))
        changed = np.flatnonzero((lower[:n_old_cols] != old_lower)
                                 | (upper[:n_old_cols] != old_upper)).astype(np.int32)
        if changed.size:
            _ok(highs.changeColsBounds(int(changed.size), changed, lower[changed], upper[changed]))
        changed = np.flatnonzero((row_lower[:n_old_rows] != old_row_lower)
                                 | (row_upper[:n_old_rows] != old_row_upper)).astype(np.int32)
        if changed.size:
            _ok(highs.changeRowsBounds(int(changed.size), changed, row_lower[changed],
                                       row_upper[changed]))
        _change_slot_lengths(highs, (self._slots, self._problem.slot_s), (slots, problem),
                             arrays, col, row, new_cols)
        # New columns, with their entries in rows HiGHS already has ...
        if new_cols.size:
            block = arrays.A[:, new_cols].tocoo()
            in_old = row[block.row] < n_old_rows
            entries = sp.csc_matrix(
                (block.data[in_old], (row[block.row[in_old]], block.col[in_old])),
                shape=(n_old_rows, new_cols.size))
            at = col[new_cols]
            _ok(highs.addCols(int(new_cols.size), cost[at], lower[at], upper[at],
                              int(entries.nnz), entries.indptr[:-1].astype(np.int32),
                              entries.indices.astype(np.int32), entries.data.astype(np.float64)))
        # ... then new rows, with their entries in every column (old and new).
        if new_rows.size:
            block = arrays.A[new_rows].tocsr()
            block = sp.csr_matrix((block.data, col[block.indices], block.indptr),
                                  shape=(new_rows.size, n_cols))
            block.sort_indices()
            at = row[new_rows]
            _ok(highs.addRows(int(new_rows.size), row_lower[at], row_upper[at], int(block.nnz),
                              block.indptr[:-1].astype(np.int32), block.indices.astype(np.int32),
                              block.data.astype(np.float64)))

        model = HighsModel(arrays, energy_first=energy_first,
                           loaded=(highs, col.astype(np.int32), row.astype(np.int64)))
        model.first_options = first_options
        self._remember(problem, ids, model, col_keys, col, row_keys, row, (cost, lower, upper),
                       (row_lower, row_upper))
        return model


def _ok(status) -> None:
    """A HiGHS call that changes the model failed: the kept model is not the new LP, so the
    caller builds one from scratch."""
    if status == highspy.HighsStatus.kError:
        raise _Rebuild


class _Rebuild(Exception):
    pass


def _row_bounds(arrays: LPArrays) -> tuple[np.ndarray, np.ndarray]:
    lower = np.concatenate([np.full(arrays.n_ub, -highspy.kHighsInf), arrays.b_eq])
    upper = np.concatenate([arrays.b_ub, arrays.b_eq])
    return lower, upper


def _limits_hold(arrays, z_highs, col, row_upper, tol: float = 1e-7) -> bool:
    """Whether the last solution z_highs (HiGHS's column order) keeps every node row (the
    limits) of the new LP; its own columns' bounds and energy rows may no longer fit."""
    activity = arrays.A[: arrays.n_ub] @ z_highs[col]
    return bool(np.all(activity <= row_upper[: arrays.n_ub] + tol))


def _change_slot_lengths(highs, last: tuple, new: tuple, arrays: LPArrays,
                         col: np.ndarray, row: np.ndarray, new_cols: np.ndarray) -> None:
    """A kept power column's energy-row entry is -wh_per_w of its slot: set it where the slot's
    length changed (a few per kept connector at most: one HiGHS call each). last, new: (slot
    ids, slot lengths [s]) of the last problem, (slot ids, problem) of this one."""
    (last_slots, last_slot_s), (slots, problem) = last, new
    order = np.argsort(last_slots)
    at = _lookup(slots, last_slots[order], order)
    changed = np.flatnonzero((at >= 0) & (last_slot_s[np.maximum(at, 0)] != problem.slot_s))
    if changed.size == 0:
        return
    kept = np.ones(arrays.c.shape[0], dtype=bool)
    kept[new_cols] = False
    var = np.flatnonzero(kept[: arrays.n_x] & np.isin(arrays.x_slot, changed))
    session = np.searchsorted(arrays.seg_connector, arrays.x_connector[var])
    energy_row = row[arrays.n_ub + session]
    value = -problem.wh_per_w[arrays.x_slot[var]]
    for r, c, v in zip(energy_row.tolist(), col[var].tolist(), value.tolist()):
        _ok(highs.changeCoeff(r, c, v))
